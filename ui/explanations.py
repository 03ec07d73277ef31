"""What the Explain toggle adds to an answer: the text's words shaded by their weight with each blend member's
answer, or the photo's heat map. Both come from the gateway's `/explain` routes (occlusion: a word's or a grid
cell's weight is how much the predicted label's probability drops without it)."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

import pandas as pd
import streamlit as st

SUPPORTS = (22, 163, 74)  # green: the word raises the predicted label's probability
AGAINST = (220, 38, 38)  # red: the word lowers it
STRONGEST = 0.7  # background opacity of the heaviest word: the text on it stays readable
# IMDb reviews carry `<br />` tags: markup between words, shown as the line break it stands for
_MARKUP = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _between(piece: str) -> str:
    """Text between two words (whitespace, markup), escaped, with its `<br />` tags as line breaks."""
    return "<br>".join(html.escape(part) for part in _MARKUP.split(piece))


def _shaded(word: dict[str, Any], text: str, scale: float) -> str:
    weight = word["weight"]
    supports = weight >= 0
    red, green, blue = SUPPORTS if supports else AGAINST
    shares = "".join(f" · {name} {share:+.4f}" for name, share in word.get("members", {}).items())
    return (
        f'<span class="word {"supports" if supports else "against"}" '
        f'title="weight {weight:+.4f}{html.escape(shares)}" '
        f'style="background-color: rgba({red}, {green}, {blue}, {STRONGEST * abs(weight) / scale:.3f}); '
        f'border-radius: 0.25em; padding: 0.1em 0">{html.escape(text[word["start"] : word["end"]])}</span>'
    )


def shaded_html(text: str, words: list[dict[str, Any]]) -> str:
    """`text` as HTML, each word of the explanation (`text[start:end]`) on a background whose colour says which
    way its weight points and whose opacity is its share of the largest |weight|; every character is escaped."""
    scale = max((abs(word["weight"]) for word in words), default=0.0) or 1.0
    pieces, at = [], 0
    for word in words:
        pieces += [_between(text[at : word["start"]]), _shaded(word, text, scale)]
        at = word["end"]
    pieces.append(_between(text[at:]))
    return f'<div class="explained-text" style="white-space: pre-wrap; line-height: 1.9">{"".join(pieces)}</div>'


def show_words(text: str, explanation: dict[str, Any]) -> None:
    """The shaded text, what a shade means, and what each blended member answered on its own."""
    target = explanation["target"]
    st.html(shaded_html(text, explanation["words"]))
    grouped = explanation.get("encoder_words_per_pass", 1)
    together = (
        f" The encoder left out {grouped} neighbouring words at a time: they share its part." if grouped > 1 else ""
    )
    st.caption(
        f"A word's weight is how much the probability of {target} drops when the word is removed: green words "
        f"support {target}, red words argue against it, and the darker the shade, the larger the effect. "
        f"Hover over a word for its weight.{together}"
    )
    members = explanation.get("members", {})
    if members:
        rows = [
            {"member": name, "blend weight": m.get("blend_weight"), "label": m.get("label"), "score": m.get("score")}
            for name, m in members.items()
        ]
        st.table(pd.DataFrame(rows), hide_index=True, width="content")


def show_overlay(explanation: dict[str, Any], label: str) -> None:
    """The heat map painted over the crop the model classified (asked for with `overlay=true`)."""
    overlay = explanation.get("overlay_png_base64")
    if overlay:
        st.image(base64.b64decode(overlay), caption="What the model looked at", width="stretch")
    size = explanation.get("input_size")
    st.caption(
        f"Red cells support {label}, blue cells argue against it: a cell's weight is how much the probability of "
        f"{label} drops when the cell is greyed out. The grid covers the centre crop the model classifies"
        + (f", {size} pixels square." if size else ".")
    )
