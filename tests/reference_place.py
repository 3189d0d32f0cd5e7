"""Rule 1 of ALIGNMENT.md for ``reference.py``: where each token lies in the text (the Rust side
is rust/place.rs; its module docs give the rule and the reasons). Offsets are a hint, the span
follows the token's own bytes; ``reference_lag.py`` models offsets that lag behind dropped
characters."""

from __future__ import annotations

import unicodedata

from reference_lag import (
    advance_chars,
    chars_between,
    composes,
    confirms_lag,
    dropped,
    lag_chars,
    spells,
    starts_dropped,
)
from reference_text import SKIP_LIMIT, WHITE_SPACE, Side, Text, droppable, match_at

INF = float("inf")


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def place(t: Text, side: Side) -> tuple[list[tuple[int, int]], list[bool]]:
    """Rule 1 (and rule 4's position of special tokens): the byte span of every token, and
    which tokens may not pair."""
    spans: list[tuple[int, int]] = []
    unpairable = [False] * len(side.ids)
    pos = 0  # where the previous token ended; no token starts before it
    carried = 0  # the last lag confirmed: later tokens lag as much (reference_lag.py)
    spilled = None  # a token reported on a dropped character after a normalized one
    prev_case3 = False  # whether the last text token was placed by case 3
    byte_offsets = [(t.char_start[cs], t.char_start[ce]) for cs, ce in side.offsets]
    tb = side.token_bytes or [None] * len(side.ids)
    for i, ((lo, hi), special) in enumerate(zip(byte_offsets, side.special, strict=False)):
        if special:
            # a special token with no text (added by a post-processor) sits where the text so far
            # ends; one that occurs in the text covers it
            start = max(lo, pos)
            span = (start, max(hi, start)) if lo < hi else (pos, pos)
            carried = 0 if lo < hi else carried  # the text after it has its own lag
        else:
            own = tb[i]
            found = find(t, pos, lo, hi, own) if own is not None else None
            # a piece of the characters of a previous token of case 3 found wholly past them
            # is not it
            prev = prev_token(side.special, i)
            piece = (
                prev is not None
                and prev_case3
                and max(lo, byte_offsets[prev][0]) < min(hi, byte_offsets[prev][1])
            )
            if found is not None and lo < hi and found[0] >= hi and piece:
                found = None
            prev_case3 = found is None
            if found is not None:
                span = found
            else:
                # the bytes are not in the text (a normalizer changed it, or they are unknown):
                # from pos to where the next token starts, at least to the end of its offsets
                nxt = next_token(byte_offsets, side.special, i)
                prev = prev_token(side.special, i)
                overlaps = [
                    k is not None and max(lo, byte_offsets[k][0]) < min(hi, byte_offsets[k][1])
                    for k in (prev, nxt)
                ]
                shared = any(overlaps)
                # pieces of one character have no lag; a dummy-prefix space placed empty just
                # before shares no characters with this token
                prefix = prev is not None and spans[prev] == (pos, pos) and tb[prev] == b" "
                if shared and (not prefix or overlaps[1]):
                    lag = 0
                else:

                    def holds(n, i=i):
                        return confirms_lag(t, byte_offsets, side.special, tb, side.dropped, i, n)

                    found_lag = lag_chars(t, lo, hi, pos, own, side.dropped, holds)
                    lag = carried = carried if found_lag is None else found_lag
                nb = None if nxt is None else tb[nxt]
                end = normalized_end(t, lo, hi, pos, byte_offsets, side.special, nxt, nb, lag)
                span = (pos, end)
                # bytes that spell something, on a span of droppable characters only: lagging
                # offsets left it on dropped text, which it does not stand for
                try:
                    dropped_only = all(map(droppable, t.raw[span[0] : span[1]].decode("utf-8")))
                except UnicodeDecodeError:
                    dropped_only = False
                # a byte piece (not UTF-8 on its own) not found where it belongs cannot stand
                # for the whole characters of its span
                piece = own is not None and not _is_utf8(own)
                spelled = own is not None and spells(own)
                part = spilled == i
                spilled = spills_onto_dropped(t, byte_offsets, side.special, tb, i, lag)
                # after a character the normalizer is known to drop, the span rests on a
                # guessed lag: no pair
                known = side.dropped
                after_dropped = known is not None and any(
                    c in known for b, (_, c) in t.starting_at.items() if b < end
                )
                # right before a combining mark (canonical reordering may have moved one of its
                # marks past it)
                mark = t.starting_at.get(end, (0, "a"))[1]
                unpairable[i] = (
                    shared
                    or (spelled and dropped_only)
                    or piece
                    or part
                    or spilled is not None
                    or after_dropped
                    or unicodedata.combining(mark) > 0
                )
        spans.append(span)
        pos = span[1]
    return spans, unpairable


def next_token(byte_offsets, special, i: int) -> int | None:
    """The next token that occupies text: non-special, or a special written in the text."""
    for k in range(i + 1, len(byte_offsets)):
        if not special[k] or byte_offsets[k][0] < byte_offsets[k][1]:
            return k
    return None


def prev_token(special, i: int) -> int | None:
    return next((k for k in range(i - 1, -1, -1) if not special[k]), None)


def normalized_end(t: Text, lo, hi, pos, byte_offsets, special, nxt, nb, lag: int) -> int:
    """To where the next token starts (less whitespace just before it), at least to ``hi``:
    where its own bytes ``nb`` are found from ``max(hi, pos)`` on, passing only over its reported
    characters and droppable non-whitespace ones (at most SKIP_LIMIT bytes), else its reported
    start moved on by ``lag`` characters (reference_lag.py)."""
    floor = max(hi, pos)
    end = len(t.raw) if nxt is None else advance_chars(t, byte_offsets[nxt][0], lag)
    if nxt is not None and nb is not None:
        # (by as much again as this token's own offsets lag behind pos, or by the lag)
        reach = byte_offsets[nxt][1] + max(0, pos - lo)
        at, reach = floor, max(reach, advance_chars(t, byte_offsets[nxt][1], lag))
        # a droppable character that a later token is reported on was kept: the search stops
        after = next_token(byte_offsets, special, nxt)
        kept_from = INF if after is None else byte_offsets[after][0]
        if after is not None:
            kept_from = max(advance_chars(t, kept_from, lag), kept_from + max(0, pos - lo))
        skipped = False
        while at <= min(floor + SKIP_LIMIT, len(t.raw)):
            m = match_at(t, at, nb)
            ks, ke = byte_offsets[nxt]
            # the match must reach into the next token's reported characters (an earlier copy
            # wholly before them is not it) and start within them, unless they are empty or a
            # dropped character was passed
            within = at < reach or ks == ke or skipped
            if within and m is not None and m > at and (m > ks or (ks == ke and m >= ks)):
                end = at
                break
            ch = t.starting_at.get(at, (0, ""))[1]
            if at in t.starting_at and (at < reach or (dropped(ch) and at < kept_from)):
                skipped = skipped or dropped(ch)
                at = t.starting_at[at][0]
            elif at not in t.starting_at and at < reach:
                at += 1
            else:
                break
    while end > floor and end in t.ending_at:
        begin, ch = t.ending_at[end]
        if ch not in WHITE_SPACE or begin < floor:
            break
        end = begin
    return max(end, floor)


def find(t: Text, pos: int, lo: int, hi: int, own: bytes) -> tuple[int, int] | None:
    """The token's bytes where the previous token ended or after characters a normalizer may
    drop (reaching its reported start), else at its reported start (running past its
    characters only over whitespace); None when they are not in the text."""
    at = pos
    while True:
        end = match_at(t, at, own)
        # a match cutting a character must overlap the token's reported characters
        if end is not None and (end >= lo or end == at):
            whole = at in t.boundaries and end in t.boundaries
            # offsets lag after dropped text; after skipped text they must reach past pos
            reaches = at == pos or hi > pos or lo == hi
            if reaches and (whole or at < hi or lo == hi or at > pos):
                return (at, end)
        if at not in t.starting_at or at >= pos + SKIP_LIMIT:
            break
        nxt, ch = t.starting_at[at]
        if not droppable(ch):
            break
        at = nxt
    start = max(lo, pos)
    if start > at:
        end = match_at(t, start, own)
        if end is not None and (end <= hi or t.is_whitespace(max(hi, start), end)):
            return (start, end)
    return None


def spills_onto_dropped(t, byte_offsets, special, token_bytes, i: int, lag: int) -> int | None:
    """The next text token when it starts right where case-3 token ``i``'s reported characters
    end, is reported on dropped characters only, and its bytes are unknown or do not stand for
    dropped characters: t5-small reports the second part of an NFKC expansion there ("ﬁ\\x08":
    `f` on "ﬁ", `i` on the `\\x08`). Both tokens are then unpairable."""
    k = next_token(byte_offsets, special, i)
    if k is None or special[k] or byte_offsets[k][0] != byte_offsets[i][1]:
        return None
    # where its reported characters really are: as far on as the offsets lag
    ks, ke = (advance_chars(t, x, lag) for x in byte_offsets[k])
    chars = chars_between(t, ks, ke)
    own = token_bytes[k] if token_bytes is not None else None
    other = own is None or (spells(own) and not starts_dropped(own))
    # or on characters that compose with it (the <unk> for "Ž́" of "Ǆ" + U+0301 on the U+0301),
    # unless its own bytes lie there
    lies_there = own is not None and match_at(t, ks, own) is not None
    # from an absorbed character on (its range already moved on by the lag)
    absorbed = chars and (dropped(chars[0]) or composes(chars[0]))
    return k if absorbed and other and not lies_there else None
