"""Pieces of the image recipe: augmentation views, flip test-time augmentation, early stopping."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image
from torch import nn

from contract.serving import ImageServing
from handlers.image_handler import ImageClassifier
from handlers.image_ops import random_crop_box, random_view
from modelops.train.image import BestOnDev


@pytest.mark.parametrize(("width", "height"), [(640, 480), (100, 900), (1, 1)])
def test_random_crops_stay_inside_the_image_and_are_seeded(width: int, height: int) -> None:
    boxes = [random_crop_box(width, height, random.Random(7)) for _ in range(2)]
    assert boxes[0] == boxes[1]
    left, top, right, bottom = boxes[0]
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height


def test_random_view_is_a_normalised_square_of_the_model_size() -> None:
    view = random_view(Image.new("RGB", (320, 200), (255, 0, 0)), 64, random.Random(1))
    assert tuple(view.shape) == (3, 64, 64)
    assert view.min().item() >= -1.0
    assert view.max().item() <= 1.0


def _classifier(tta_flip: bool) -> ImageClassifier:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    classifier = ImageClassifier()
    classifier.config = ImageServing(
        task="t",
        kind="image",
        model_name="t",
        labels=tuple(f"c{i}" for i in range(5)),
        architecture="efficientnet-lite0",
        image_size=64,
        resize_to=72,
        tta_flip=tta_flip,
    )
    classifier.model = EfficientNet.from_name("efficientnet-lite0", num_classes=5).eval()
    return classifier


def test_flip_tta_answers_the_same_for_a_photo_and_its_mirror() -> None:
    photo = torch.randn(3, 64, 64)
    with_tta = _classifier(tta_flip=True)
    assert torch.allclose(
        torch.tensor(with_tta.infer([photo, photo.flip(-1)])[0]),
        torch.tensor(with_tta.infer([photo.flip(-1), photo])[0]),
        atol=1e-5,
    )
    without = _classifier(tta_flip=False)
    rows = without.infer([photo, photo.flip(-1)])
    assert len(rows) == 2
    assert sum(rows[0]) == pytest.approx(1.0, abs=1e-4)


def test_best_on_dev_stops_after_patience_and_restores_the_best_weights() -> None:
    layer = nn.Linear(2, 2)
    stopper = BestOnDev(patience=2)
    stopper.update(0.5, [layer], 1)
    best = layer.weight.detach().clone()
    for epoch, accuracy in ((2, 0.4), (3, 0.5)):
        with torch.no_grad():
            layer.weight.add_(1.0)
        stopper.update(accuracy, [layer], epoch)
    assert stopper.stop
    assert (stopper.best, stopper.best_epoch) == (0.5, 1)
    stopper.restore([layer])
    assert torch.equal(layer.weight, best)
    assert not BestOnDev(patience=None).stop
