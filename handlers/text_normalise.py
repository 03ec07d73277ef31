"""Text clean-up applied before either member of a text blend sees the text, in training and in the handler.

Tweets (`normalise = "tweet"` in the catalog) arrive with the public dataset's quirks and with parts that
identify nothing about the event: every link is a unique `t.co` URL, every @mention a different account.
Normalising them makes near-duplicate tweets identical (so duplicates with conflicting labels are found
before the split) and lets both members learn "has a link" instead of memorising link ids. The function is
idempotent, so text that was already normalised comes out unchanged.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

# The dataset's encoding damage: UTF-8 punctuation that went through a wrong code page and lost bytes on the
# way. Each sequence stands for one character (seen 294 times for the ellipsis in 6,113 tweets).
_MOJIBAKE = {
    "\x89Û_": "…",
    "\x89Ûª": "'",
    "\x89Û÷": "'",
    "\x89ÛÏ": '"',
    "\x89Û\x9d": '"',
    "\x89ÛÒ": "-",
    "\x89ÛÓ": "-",
    "åÊ": " ",
    "Ì©": "é",
}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in _MOJIBAKE))
# What is left of a damaged sequence once the known ones are replaced (a lone lead byte and its follower).
_DAMAGE_RE = re.compile(r"\x89Û.?|[åÌ][_¨]")
_URL_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"@\w+")
_HASHTAG_RE = re.compile(r"#(\w+)")
_CAMEL_RE = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SPACES_RE = re.compile(r"\s+")

URL = "http"
MENTION = "@user"


def _hashtag(match: re.Match[str]) -> str:
    """`#OtleyHour` -> `Otley Hour`: the words of a camel-case tag, without the `#`."""
    return _CAMEL_RE.sub(" ", match.group(1))


def _unescape(text: str) -> str:
    """HTML entities decoded until none is left (the data holds doubly escaped ones such as `&amp;amp;`)."""
    while (decoded := html.unescape(text)) != text:
        text = decoded
    return text


def normalise_tweet(text: str) -> str:
    """Repair the known mojibake, unescape HTML entities, links and @mentions to placeholders, split `#` tags."""
    text = _MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text)
    text = _DAMAGE_RE.sub(" ", text)
    text = _unescape(text)
    text = _URL_RE.sub(URL, text)
    text = _MENTION_RE.sub(lambda m: m.group(0) if m.group(0) == MENTION else MENTION, text)
    text = _HASHTAG_RE.sub(_hashtag, text)
    return _SPACES_RE.sub(" ", text).strip()


def _unchanged(text: str) -> str:
    return text


NORMALISERS: dict[str, Callable[[str], str]] = {"none": _unchanged, "tweet": normalise_tweet}
