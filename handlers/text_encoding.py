"""Turn texts into encoder inputs within a token budget, the same way in training and serving.

Head+tail truncation: a long movie review states its verdict at the start and, even more often, at the end;
keeping the first `head_tokens` and the last tokens of the budget beat head-only by 1.3-1.7 points in
`BASELINES.md`. Without `head_tokens` a text is cut at the end as usual.

The encoder drives the model's fast tokenizer (`tokenizer.json`) through the `tokenizers` library directly:
transformers' wrapper gives the same ids and padding (tests/unit/test_text_encoding.py compares them on real
texts), but importing it costs each TorchServe worker about 31 MB more (288 vs 319 MB measured with the
sentiment archive's tokenizer and ONNX model loaded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import torch
from tokenizers import Tokenizer

T = TypeVar("T")


def window(seq: list[T], max_length: int, head_tokens: int | None) -> list[T]:
    """What the encoder keeps of a text's tokens (or anything per token): all of them if they fit, else the first
    `head_tokens` and the rest of `max_length` from the end; without `head_tokens`, the first `max_length - 1`
    and the closing special token, as the tokenizer's own truncation keeps them."""
    if len(seq) <= max_length:
        return seq
    head = max_length - 1 if head_tokens is None else head_tokens
    return seq[:head] + seq[len(seq) - (max_length - head) :]


class TextEncoder:
    def __init__(self, tokenizer: Tokenizer, pad_id: int) -> None:
        # a copy: truncation is switched per call here and must not leak into a caller's tokenizer
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.pad_id = pad_id

    @classmethod
    def load(cls, model_dir: Path) -> TextEncoder:
        """From a folder written by transformers' `save_pretrained` (the trained model, an archive)."""
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        pad_id = tokenizer.token_to_id(config["pad_token"])
        if pad_id is None:
            raise ValueError(f"{model_dir}: the pad token {config['pad_token']!r} is not in tokenizer.json")
        return cls(tokenizer, pad_id)

    def token_ids(self, texts: list[str], max_length: int, head_tokens: int | None) -> list[list[int]]:
        """Each text's token ids including the special tokens, at most `max_length` long.

        With `head_tokens`, a longer text keeps its first `head_tokens` ids (the leading special token counts)
        and its last `max_length - head_tokens` (the closing special token counts), so any tokenizer's own
        special tokens stay where it put them.
        """
        if head_tokens is None:
            self.tokenizer.enable_truncation(max_length)
            return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        self.tokenizer.no_truncation()
        return [window(encoding.ids, max_length, head_tokens) for encoding in self.tokenizer.encode_batch(texts)]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span in `text` of each of its tokens, untruncated; special tokens have empty spans."""
        self.tokenizer.no_truncation()
        return [(start, end) for start, end in self.tokenizer.encode(text).offsets]

    def encode(self, texts: list[str], max_length: int, head_tokens: int | None) -> dict[str, torch.Tensor]:
        """`input_ids` and `attention_mask` for one batch, padded on the right to its longest text (short tweets
        stay cheap)."""
        ids = self.token_ids(texts, max_length, head_tokens)
        longest = max((len(seq) for seq in ids), default=0)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), longest), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
