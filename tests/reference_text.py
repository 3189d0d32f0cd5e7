"""The inputs of ``reference.py``: one tokenization of a text (``Side``), the text's bytes and
characters (``Text``), and the character classes rule 1 uses (White_Space, droppable)."""

from __future__ import annotations

from dataclasses import dataclass

# The Unicode White_Space property (not str.isspace, which also counts U+001C-001F).
WHITE_SPACE = frozenset(
    [chr(c) for c in range(0x09, 0x0E)]
    + [" ", "\x85", "\xa0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)


@dataclass
class Side:
    """One tokenization of the text, as the aligner's input."""

    ids: list[int]
    offsets: list[tuple[int, int]]  # characters
    special: list[bool]
    token_bytes: list[bytes | None] | None = None
    # the non-whitespace droppable characters its normalizer drops, where known (rust/drops.rs)
    dropped: str | None = None


class Text:
    """The text's UTF-8 bytes and where its characters start and end."""

    def __init__(self, text: str):
        self.raw = text.encode("utf-8")
        self.char_start = [0]  # char_start[c] = byte where character c starts; last = len(raw)
        self.starting_at: dict[int, tuple[int, str]] = {}  # byte -> (end byte, char)
        self.ending_at: dict[int, tuple[int, str]] = {}  # byte -> (start byte, char)
        for ch in text:
            s = self.char_start[-1]
            e = s + len(ch.encode("utf-8"))
            self.char_start.append(e)
            self.starting_at[s] = (e, ch)
            self.ending_at[e] = (s, ch)
        self.boundaries = set(self.char_start)

    def is_whitespace(self, start: int, end: int) -> bool:
        """True when bytes [start, end) are whole characters, all White_Space."""
        try:
            piece = self.raw[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return False
        return all(c in WHITE_SPACE for c in piece)


# Characters a normalizer may drop without a trace (rust/place.rs `droppable`): White_Space,
# controls, format characters and other default ignorables, U+FFFD.
DROPPABLE_RANGES = [
    (0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C), (0x180B, 0x180F), (0x200B, 0x200F),
    (0x202A, 0x202E), (0x2060, 0x206F), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFD),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
]  # fmt: skip
SKIP_LIMIT = 256  # bytes past where the previous token ended


def droppable(ch: str) -> bool:
    c = ord(ch)
    return (
        ch in WHITE_SPACE
        or c < 0x20
        or 0x7F <= c <= 0x9F
        or any(a <= c <= b for a, b in DROPPABLE_RANGES)
    )


def match_at(t: Text, at: int, own: bytes) -> int | None:
    """End of ``own`` found at ``at``, fully or without a leading (dummy-prefix) space."""
    for b in (own, own[1:] if own.startswith(b" ") else None):
        if b is not None and t.raw[at : at + len(b)] == b and at + len(b) <= len(t.raw):
            return at + len(b)
    return None
