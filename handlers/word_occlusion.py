"""Which words carried a text's verdict: leave-one-word-out occlusion of the served model, split by member.

Why occlusion: it asks the model that answered (the served runtime, int8 or not, the blend, the head+tail
truncation) what happens without each word, so a word's weight is an effect that can be checked, not a
gradient of some other model. Removing the top-weighted words is exactly what the deletion test in
`bench.faithfulness` does to score it.

Cost, measured on 2 cores with the int8 MiniLM: one encoder pass of a 128-token review takes about 15 ms and
the linear member re-scores a text in well under a millisecond. So the linear member is occluded word by word
(its weights are exact), and the encoder only for the words whose removal changes what it reads (words outside
the head+tail window change nothing there: their encoder share is exactly 0). When more than
`ENCODER_PASSES` words change its input, neighbouring words are occluded together and share their span's
effect equally: a 200-word review then costs about 40 encoder passes (~0.6 s) instead of 80.

A word here is a whitespace-separated piece of the request text (IMDb's `<br />` tags are markup, not words),
with character offsets into the text exactly as the caller sent it; removing it means deleting those
characters and classifying the rest through the whole pipeline (tweet normalisation included).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from handlers.linear import blank_markup

# Most encoder passes one explanation may take (see the module docstring for the cost).
ENCODER_PASSES = 40
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Word:
    start: int
    end: int
    text: str


def words_of(text: str) -> list[Word]:
    """The words of a text, with offsets into it (its markup is not words)."""
    return [Word(m.start(), m.end(), m.group()) for m in _WORD.finditer(blank_markup(text))]


def without(text: str, removed: Sequence[Word]) -> str:
    """`text` with the characters of the `removed` words deleted (the whitespace around them is kept)."""
    pieces, at = [], 0
    for word in sorted(removed, key=lambda w: w.start):
        pieces.append(text[at : word.start])
        at = word.end
    pieces.append(text[at:])
    return "".join(pieces)


def spans(indices: Sequence[int], budget: int) -> list[list[int]]:
    """`indices` cut into at most `budget` runs of neighbours (one index each when they fit)."""
    if not indices:
        return []
    size = math.ceil(len(indices) / budget)
    return [list(indices[i : i + size]) for i in range(0, len(indices), size)]


def spread(drops: torch.Tensor, groups: Sequence[Sequence[int]], count: int) -> torch.Tensor:
    """Per-word weights from per-span drops: each span's drop shared equally by its words, 0 elsewhere."""
    weights = torch.zeros(count)
    for drop, group in zip(drops.tolist(), groups, strict=True):
        weights[list(group)] = drop / len(group)
    return weights


def word_weights(words: Sequence[Word], members: dict[str, torch.Tensor]) -> list[dict[str, object]]:
    """One entry per word: its offsets, text, total weight and (for a blend) each member's share of it."""
    total = sum(members.values(), torch.zeros(len(words)))
    entries: list[dict[str, object]] = []
    for i, word in enumerate(words):
        entry: dict[str, object] = {
            "start": word.start,
            "end": word.end,
            "word": word.text,
            "weight": round(float(total[i]), 5),
        }
        if len(members) > 1:
            entry["members"] = {name: round(float(share[i]), 5) for name, share in members.items()}
        entries.append(entry)
    return entries
