"""Turn texts into encoder inputs within a token budget, the same way in training and serving.

Head+tail truncation: a long movie review states its verdict at the start and, even more often, at the end;
keeping the first `head_tokens` and the last tokens of the budget beat head-only by 1.3-1.7 points in
`BASELINES.md`. Without `head_tokens` a text is cut at the end as usual.
"""

from __future__ import annotations

from typing import Any


def token_ids(tokenizer: Any, texts: list[str], max_length: int, head_tokens: int | None) -> list[list[int]]:
    """Each text's token ids including the special tokens, at most `max_length` long.

    With `head_tokens`, a longer text keeps its first `head_tokens` ids (the leading special token counts) and
    its last `max_length - head_tokens` (the closing special token counts), so any tokenizer's own special
    tokens stay where it put them.
    """
    if head_tokens is None:
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    tail = max_length - head_tokens
    ids = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    return [seq if len(seq) <= max_length else seq[:head_tokens] + seq[len(seq) - tail :] for seq in ids]


def encode_batch(tokenizer: Any, texts: list[str], max_length: int, head_tokens: int | None) -> dict[str, Any]:
    """Padded tensors for one batch, padded to its longest text (short tweets stay cheap)."""
    ids = token_ids(tokenizer, texts, max_length, head_tokens)
    return tokenizer.pad({"input_ids": ids}, padding="longest", return_tensors="pt")
