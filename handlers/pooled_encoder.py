"""A frozen sentence encoder with a linear head: the encoder member of a text task trained by a heads recipe.

Why not a fine-tuned encoder: a few hundred labelled texts cannot pay for fine-tuning and for choosing its
settings by cross-validation on 2 cores, while a frozen sentence encoder's embeddings are computed once and
every setting of a logistic regression on them is cross-validated in seconds. The embedding is what the
encoder was trained to produce as a sentence vector (all-MiniLM-L6-v2: the mean of its token states over the
attention mask, L2-normalised), so the head reads the representation the encoder's authors tuned.

Training (`modelops.train.heads`) embeds with `embed` and fits the head; serving runs the same module whole,
in torch or exported to ONNX, and gets class logits like a fine-tuned sequence classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch

HEAD_FILE = "encoder_head.safetensors"


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The L2-normalised mean of each text's token states over its attention mask."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp_min(1.0)
    return torch.nn.functional.normalize(summed / counts, dim=-1)


class PooledClassifier(torch.nn.Module):
    """`forward(input_ids, attention_mask)` -> class logits from the frozen encoder's pooled embedding."""

    def __init__(self, encoder: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pooled(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))

    @classmethod
    def load(cls, model_dir: Path) -> PooledClassifier:
        """The encoder saved by transformers' `save_pretrained` and the head beside it."""
        from safetensors.torch import load_file
        from transformers import AutoModel  # only here: ONNX workers never import it

        head = load_file(str(model_dir / HEAD_FILE))
        return cls(AutoModel.from_pretrained(model_dir), head["weight"], head["bias"]).eval()


def save_head(folder: Path, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """The head's (labels, dimensions) weight and (labels,) bias, beside the encoder in `folder`."""
    from safetensors.torch import save_file

    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(folder / HEAD_FILE))
