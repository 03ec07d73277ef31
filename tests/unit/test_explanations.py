"""Explanations in the handlers, without TorchServe: word and cell occlusion on small models whose answers are
known, and the batch flow that mixes explanations, predictions and describe requests."""

from __future__ import annotations

import base64
import io
import json
import zlib

import pytest
import torch
from PIL import Image

from contract.serving import ImageServing, TextServing
from contract.wire import CARD_FIELD
from handlers.cell_occlusion import CELLS, occluded, overlay_png
from handlers.image_handler import ImageClassifier
from handlers.linear import LinearTextModel
from handlers.text_handler import TextClassifier
from handlers.text_normalise import NORMALISERS
from handlers.word_occlusion import Word, spans, spread, without, word_weights, words_of


def test_words_keep_offsets_into_the_text_and_skip_markup() -> None:
    text = "Great film!<br /><br />Truly  moving."
    words = words_of(text)
    assert [w.text for w in words] == ["Great", "film!", "Truly", "moving."]
    assert all(text[w.start : w.end] == w.text for w in words)
    assert without(text, [words[1], words[3]]) == "Great <br /><br />Truly  "


def test_spans_respect_the_budget_and_keep_neighbours_together() -> None:
    assert spans([], 4) == []
    assert spans([0, 1, 2], 4) == [[0], [1], [2]]
    groups = spans(list(range(10)), 4)
    assert len(groups) <= 4
    assert [i for group in groups for i in group] == list(range(10))
    weights = spread(torch.tensor([0.3, -0.2]), [[0, 1, 2], [4]], 6)
    assert weights.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.0, -0.2, 0.0])


def test_member_shares_add_up_to_the_weight() -> None:
    words = [Word(0, 4, "good"), Word(5, 8, "bad")]
    entries = word_weights(words, {"encoder": torch.tensor([0.1, -0.05]), "linear": torch.tensor([0.2, -0.3])})
    assert entries[0] == {
        "start": 0,
        "end": 4,
        "word": "good",
        "weight": pytest.approx(0.3),
        "members": {"encoder": 0.1, "linear": 0.2},
    }
    assert word_weights(words, {"encoder": torch.tensor([0.1, 0.2])})[1].get("members") is None


class WordEncoder:
    """One token per word; the encoder reads the first `max_length` (head_tokens = max_length: no tail)."""

    def token_ids(self, texts: list[str], max_length: int, head_tokens: int | None) -> list[list[int]]:
        return [[zlib.crc32(w.encode()) for w in t.split()][:max_length] for t in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [(w.start, w.end) for w in words_of(text)]


class CountingText(TextClassifier):
    """A text classifier whose encoder says `pos` with the number of "good" among the first 6 words, and whose
    linear member (a real `LinearTextModel`) weighs "great" and "awful"."""

    def __init__(self, linear_weight: float) -> None:
        super().__init__()
        self.config = TextServing(
            task="t",
            kind="text",
            model_name="t",
            labels=("neg", "pos"),
            max_chars=1000,
            max_length=6,
            head_tokens=6,
            linear_weight=linear_weight,
        )
        self.model_info = {"name": "t", "version": "1"}
        self.normalise = NORMALISERS["none"]
        self.encoder = WordEncoder()  # type: ignore[assignment]
        weight = torch.zeros(256, 2)
        for term, sign in (("great", 1.0), ("awful", -1.0)):
            weight[zlib.crc32(term.encode()) & 255] = torch.tensor([-sign, sign])
        self.linear = LinearTextModel(bits=8, ngrams=1, weight=weight, bias=torch.zeros(2)) if linear_weight else None
        self.passes = 0

    def encoder_probabilities(self, texts: list[str]) -> torch.Tensor:
        self.passes += len(texts)
        goods = torch.tensor([float(t.split()[:6].count("good")) for t in texts])
        return torch.stack([1 - torch.sigmoid(goods - 0.5), torch.sigmoid(goods - 0.5)], dim=1)


def test_text_explanation_finds_the_words_each_member_reads() -> None:
    handler = CountingText(linear_weight=0.5)
    text = "good plot and a great cast , but one scene was awful"
    answer = handler.explain(text, {})
    assert answer["label"] == "pos"
    assert list(answer["scores"].values()) == pytest.approx(handler.infer([text])[0], abs=1e-4)
    weights = {w["word"]: w for w in answer["explanation"]["words"]}
    # "good" is read by the encoder only, "great" by the linear member only
    assert weights["good"]["members"]["encoder"] > 0
    assert weights["good"]["members"]["linear"] == 0
    assert weights["great"]["members"]["linear"] > 0
    assert weights["awful"]["weight"] < 0  # it argues against "pos"
    # "awful" is past the encoder's 6-word window: removing it changes nothing the encoder reads
    assert weights["awful"]["members"]["encoder"] == 0
    top = max(answer["explanation"]["words"], key=lambda w: w["weight"])
    assert top["word"] in ("good", "great")
    for entry in answer["explanation"]["words"]:
        assert entry["weight"] == pytest.approx(sum(entry["members"].values()), abs=2e-5)
    assert set(answer["explanation"]["members"]) == {"encoder", "linear"}
    assert answer["explanation"]["members"]["linear"]["blend_weight"] == 0.5


def test_removing_the_top_words_lowers_the_label_more_than_removing_others() -> None:
    handler = CountingText(linear_weight=0.5)
    text = "good good and a great cast with nothing awful in it"
    answer = handler.explain(text, {})
    words = words_of(text)
    ranked = sorted(range(len(words)), key=lambda i: -answer["explanation"]["words"][i]["weight"])
    top = without(text, [words[i] for i in ranked[:2]])
    bottom = without(text, [words[i] for i in ranked[-2:]])
    assert handler.infer([top])[0][1] < handler.infer([bottom])[0][1]


def test_encoder_passes_are_capped_by_grouping_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers.text_handler as text_handler

    monkeypatch.setattr(text_handler, "ENCODER_PASSES", 2)
    handler = CountingText(linear_weight=0.0)
    answer = handler.explain("good good good good good good", {})
    assert handler.passes == 1 + 2  # the text itself, then two spans of three words
    assert answer["explanation"]["encoder_words_per_pass"] == 3
    assert "members" not in answer["explanation"]["words"][0]


class HeaderContext:
    """TorchServe's Context as the handler sees it: per-request headers, per-slot statuses."""

    def __init__(self, headers: list[dict[str, str]]) -> None:
        self.headers = headers
        self.statuses: dict[int, int] = {}

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return self.headers[idx]

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.statuses[idx] = code


def test_one_batch_answers_explanations_and_predictions_each_as_asked() -> None:
    handler = CountingText(linear_weight=0.5)
    rows = [{"body": {"text": "good film"}}, {"body": {"text": "great"}}, {"body": {"text": ""}}]
    context = HeaderContext([{"explain": "True", "X-Request-ID": "a"}, {"X-Request-ID": "b"}, {"explain": "True"}])
    first, second, third = handler.handle(rows, context)
    assert first["explanation"]["target"] == first["label"]
    assert first["model"] == {"name": "t", "version": "1"}
    assert "explanation" not in second
    assert second["label"] == "pos"
    assert third["error"]["code"] == "invalid_request"
    assert context.statuses == {2: 400}


def test_a_describe_request_gets_the_loaded_card() -> None:
    handler = CountingText(linear_weight=0.0)
    handler.card = {"version": "1", "validation": {"accuracy": 0.9}, "best_dev_accuracy": None}
    (answer,) = handler.handle([{"body": b""}], HeaderContext([{"describe": "True"}]))
    assert json.loads(answer[CARD_FIELD]) == handler.card  # as text, so TorchServe keeps the null field


def test_occluded_copies_grey_out_one_cell_each() -> None:
    pixels = torch.ones(3, 14, 14)
    copies = occluded(pixels, 7)
    assert copies.shape == (49, 3, 14, 14)
    assert (copies[8, :, 2:4, 2:4] == 0).all()  # row 1, column 1
    assert int((copies[8] == 0).sum()) == 3 * 4


class CornerImages(ImageClassifier):
    """An image model that says label 1 in proportion to the brightness of the top-left corner."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ImageServing(
            task="p",
            kind="image",
            model_name="p",
            labels=("other", "corner"),
            architecture="-",
            image_size=224,
            resize_to=256,
        )

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        corner = batch[:, :, :32, :32].mean(dim=(1, 2, 3))
        p = torch.sigmoid(4 * corner)
        return torch.stack([1 - p, p], dim=1)


def test_image_explanation_points_at_the_region_the_model_reads() -> None:
    handler = CornerImages()
    answer = handler.explain(torch.ones(3, 224, 224), {"x-explain-overlay": "true"})
    grid = torch.tensor(answer["explanation"]["grid"])
    assert answer["label"] == "corner"
    assert grid.shape == (CELLS, CELLS)
    assert int(grid.argmax()) == 0
    assert grid[0, 0] > 0
    assert grid.flatten()[1:].abs().max() == 0  # cells outside the corner change nothing
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["explanation"]["overlay_png_base64"])))
    assert overlay.size == (224, 224)
    assert "overlay_png_base64" not in handler.explain(torch.ones(3, 224, 224), {})["explanation"]


def test_overlay_paints_supporting_cells_red() -> None:
    grid = torch.zeros(7, 7)
    grid[0, 0] = 1.0
    png = Image.open(io.BytesIO(base64.b64decode(overlay_png(torch.zeros(3, 70, 70), grid)))).convert("RGB")
    red, green, _blue = png.getpixel((5, 5))
    assert red > 150
    assert green < 120
    assert png.getpixel((60, 60)) == (127, 127, 127)
