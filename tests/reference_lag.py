"""Offsets that lag behind dropped characters, for ``reference.py`` (rule 1, case 3; the Rust
side is rust/place_lag.rs). Kept apart so reference.py reads as the contract and this file as
the one tokenizer quirk it models: t5-small (precompiled normalizer) drops characters such as
``\\x08`` at the start of a text and then reports every later token that many characters early.

Every function takes byte positions into ``t.raw`` (``reference_text.Text``); a position that is not
a character boundary counts as "no characters here", as in the core.
"""

from __future__ import annotations

from reference_text import SKIP_LIMIT, WHITE_SPACE, droppable, match_at

LAG_TRIES = 4  # lags tried, from the largest down
CONFIRM_TOKENS = 32  # later text tokens looked at to confirm a lag


def chars_between(t, a: int, b: int) -> str | None:
    """The characters of bytes [a, b), or None when either end is not a character boundary."""
    if a > b or a not in t.boundaries or b not in t.boundaries:
        return None
    return t.raw[a:b].decode("utf-8")


def all_whitespace(b: bytes) -> bool:
    """Bytes that are valid UTF-8 made only of White_Space characters."""
    try:
        return all(c in WHITE_SPACE for c in b.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def dropped(ch: str) -> bool:
    return droppable(ch) and ch not in WHITE_SPACE


def may_drop(ch: str, known: str | None) -> bool:
    """Whether the normalizer may have dropped ``ch``: the side's own answer for characters
    that are not whitespace, where known (Side.dropped), else ``droppable``."""
    return ch in known if known is not None and ch not in WHITE_SPACE else droppable(ch)


# Characters that compose with the one before them: combining marks of the common blocks, kana
# voicing marks, Hangul medial and final jamo (rust/place_lag.rs `composes`).
COMPOSING = [
    (0x300, 0x36F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F),
    (0x3099, 0x309A), (0x1161, 0x11C2),
]  # fmt: skip


def composes(ch: str) -> bool:
    """A character that a token reported on the one before it may stand for too (NFC)."""
    return any(a <= ord(ch) <= b for a, b in COMPOSING)


def spells(b: bytes) -> bool:
    """Bytes that spell something: a character neither droppable nor U+FFFD."""
    return any(not droppable(c) and c != "\ufffd" for c in b.decode("utf-8", "replace"))


def starts_dropped(b: bytes) -> bool:
    """Bytes (less one leading space) that start with a droppable character."""
    s = (b[1:] if b.startswith(b" ") else b).decode("utf-8", "replace")
    return bool(s) and droppable(s[0])


def advance_chars(t, at: int, n: int) -> int:
    """``at`` moved on by ``n`` characters (at most to the end; ``at`` itself when it is not a
    character boundary or ``n`` is 0)."""
    rest = chars_between(t, at, len(t.raw)) if at <= len(t.raw) else None
    if rest is None or n == 0:
        return at
    if n >= len(rest):
        return len(t.raw)
    return at + len(rest[:n].encode("utf-8"))


def lag_chars(t, bs: int, be: int, pos: int, own: bytes | None, known, holds) -> int | None:
    """How many characters the offsets of a case-3 token lag, where it shows: its reported
    characters start with a dropped one while its bytes are unknown or spell something that does
    not start with one; then the largest lag (of the last LAG_TRIES, from the dropped run that
    starts at ``max(bs, pos)``) that ``holds`` confirms. Reported on whitespace after ``pos``:
    at most as many as the dropped characters between. None: no sign here. Dropped: see
    ``may_drop`` (``known``)."""
    first = chars_between(t, bs, be)
    if not first or (own is not None and not (spells(own) and not starts_dropped(own))):
        return None
    if first[0] in WHITE_SPACE and pos < bs:
        # reported on whitespace after dropped characters: as many as were dropped, at most
        before = chars_between(t, pos, bs) if bs - pos <= SKIP_LIMIT else None
        n = sum(may_drop(c, known) for c in before or "")
        return next((lag for lag in list(range(n, 0, -1))[:LAG_TRIES] if holds(lag)), None)
    if not may_drop(first[0], known):  # whitespace too: t5-small drops a leading \x0b
        return None
    start = max(bs, pos)
    q, limit = start, start + SKIP_LIMIT
    while q < limit and q in t.starting_at and may_drop(t.starting_at[q][1], known):
        q = t.starting_at[q][0]

    def count(b: int) -> int:
        a = min(bs, b)
        s = chars_between(t, a, b)
        return len(s) if s is not None and b - a <= SKIP_LIMIT else 0

    most, least = count(q), count(start)
    for lag in list(range(most, least, -1))[:LAG_TRIES]:
        if holds(lag):
            return lag
    return None


def confirms_lag(t, byte_offsets, special, token_bytes, known, i: int, lag: int) -> bool:
    """Whether the text tokens after ``i`` lag by ``lag`` characters: the first whose own bytes
    lie at its reported start or a few characters on (but not ``lag`` on) says no, one whose
    bytes lie ``lag`` characters on (but at no smaller lag) says yes. Undecided after
    CONFIRM_TOKENS tokens, the text must hold ``lag`` kept characters (not whitespace, not
    ``composes``, not dropped by the normalizer where ``known``, else droppable only after an
    ``<unk>``; within SKIP_LIMIT bytes) after the last token's reported end."""

    def lies_at(p: int, b: bytes) -> bool:
        end = match_at(t, p, b)
        return end is not None and end > p

    later = [k for k in range(i + 1, len(byte_offsets)) if not special[k]][:CONFIRM_TOKENS]
    for k in later:
        b = token_bytes[k] if token_bytes is not None else None
        # whitespace-only bytes (a lone dummy-prefix space) lie at any space: no evidence
        if b is None or all_whitespace(b):
            continue
        s = byte_offsets[k][0]
        smaller = [0, *range(max(lag - LAG_TRIES, 1), lag)]
        fits_smaller = any(lies_at(advance_chars(t, s, n), b) for n in smaller)
        fits = lies_at(advance_chars(t, s, lag), b)
        if fits_smaller and not fits:
            return False
        if fits and not fits_smaller:
            return True
    last = next((k for k in range(len(byte_offsets) - 1, -1, -1) if not special[k]), None)
    at = 0 if last is None else byte_offsets[last][1]
    rest = chars_between(t, at, len(t.raw)) or ""
    kept, offset = 0, 0
    for ch in rest:
        if offset >= SKIP_LIMIT:
            break
        # unknown normalizer: a droppable character there is kept text only for an <unk>
        unknown = last is not None and (token_bytes is None or token_bytes[last] is None)
        if known is not None:
            kept += ch not in WHITE_SPACE and not composes(ch) and ch not in known
        else:
            kept += ch not in WHITE_SPACE and not composes(ch) and (unknown or not droppable(ch))
        offset += len(ch.encode("utf-8"))
    return kept >= lag
