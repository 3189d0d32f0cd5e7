"""The executable spec: ALIGNMENT.md in plain Python, written for reading, not for speed.

Inputs per side are what any tokenizer can give (token ids, character offsets ``[start, end)``,
special mask, and the bytes each token stands for, ``None`` where unknown); the output holds
everything the Rust core returns, so tests compare the two token for token. Choices the contract
leaves open follow the module docs of ``rust/span.rs`` and ``rust/align.rs``:

- placement (rust/place.rs, the revised rule 1 of issue 10: offsets are a hint, the span follows
  the bytes): a token's own bytes are matched where the previous token ended, or after
  characters a normalizer may drop (at most 256 bytes on), reaching its reported start; else at
  its reported start, running past its characters only over whitespace; a leading space the text
  does not have stands for no bytes; otherwise (bytes not in the text) the token spans from where
  the previous token ended to where the next one starts (less whitespace before it), at least to
  the end of its offsets (its next neighbour's start moved on by as many characters as the
  offsets lag behind dropped characters: reference_lag.py), and is unpairable when its
  characters overlap a neighbour's, or a part of it is reported on a dropped character after it;
- pairs: equal keys of pairable tokens pair first with first; special tokens pair by byte
  offset, in order, and a special pair that would break the monotone order of the text pairs is
  dropped;
- chunks: the finest split of both sides into consecutive groups covering the same text (cuts
  are byte intervals of whitespace/untokenized bytes between keys); an exact pair is a chunk of
  its own, and a token lying wholly in the other side's cut is a chunk without tokens on the other
  side; special tokens have chunk -1;
- coverage is 1.0 for a side without text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reference_lag import advance_chars, confirms_lag, lag_chars, spells, spills_onto_dropped

# The Unicode White_Space property (not str.isspace, which also counts U+001C-001F).
WHITE_SPACE = frozenset(
    [chr(c) for c in range(0x09, 0x0E)]
    + [" ", "\x85", "\xa0", "\u1680"]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
)

INF = float("inf")


@dataclass
class Side:
    """One tokenization of the text, as the aligner's input."""

    ids: list[int]
    offsets: list[tuple[int, int]]  # characters
    special: list[bool]
    token_bytes: list[bytes | None] | None = None


@dataclass
class RefAlignment:
    teacher_spans: list[tuple[int, int]]
    student_spans: list[tuple[int, int]]
    teacher_keys: list[tuple[int, int] | None]  # None for special tokens
    student_keys: list[tuple[int, int] | None]
    pairs: list[tuple[int, int]]
    teacher_chunks: list[int]
    student_chunks: list[int]
    teacher_text_tokens: int
    student_text_tokens: int
    aligned: int
    text_pairs: list[tuple[int, int]] = field(default_factory=list)
    teacher_unpairable: list[bool] = field(default_factory=list)
    student_unpairable: list[bool] = field(default_factory=list)

    @property
    def teacher_coverage(self) -> float:
        return 1.0 if self.teacher_text_tokens == 0 else self.aligned / self.teacher_text_tokens

    @property
    def student_coverage(self) -> float:
        return 1.0 if self.student_text_tokens == 0 else self.aligned / self.student_text_tokens


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


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def droppable(ch: str) -> bool:
    c = ord(ch)
    return (
        ch in WHITE_SPACE
        or c < 0x20
        or 0x7F <= c <= 0x9F
        or any(a <= c <= b for a, b in DROPPABLE_RANGES)
    )


def place(t: Text, side: Side) -> tuple[list[tuple[int, int]], list[bool]]:
    """Rule 1 (and rule 4's position of special tokens): the byte span of every token, and
    which tokens may not pair."""
    spans: list[tuple[int, int]] = []
    unpairable = [False] * len(side.ids)
    pos = 0  # where the previous token ended; no token starts before it
    carried = 0  # the last lag confirmed: later tokens lag as much (reference_lag.py)
    spilled = None  # a token reported on a dropped character after a normalized one
    byte_offsets = [(t.char_start[cs], t.char_start[ce]) for cs, ce in side.offsets]
    tb = side.token_bytes or [None] * len(side.ids)
    for i, ((lo, hi), special) in enumerate(zip(byte_offsets, side.special, strict=False)):
        if special:
            # a special token with no text (added by a post-processor) sits where the text so far
            # ends; one that occurs in the text covers it
            start = max(lo, pos)
            span = (start, max(hi, start)) if lo < hi else (pos, pos)
        else:
            own = tb[i]
            found = find(t, pos, lo, hi, own) if own is not None else None
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
                        return confirms_lag(t, byte_offsets, side.special, tb, i, n)

                    found_lag = lag_chars(t, lo, hi, pos, own, holds)
                    lag = carried = carried if found_lag is None else found_lag
                nb = None if nxt is None else tb[nxt]
                span = (pos, normalized_end(t, lo, hi, pos, byte_offsets, nxt, nb, lag))
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
                spilled = spills_onto_dropped(t, byte_offsets, side.special, tb, i)
                unpairable[i] = (
                    shared or (spelled and dropped_only) or piece or part or spilled is not None
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


def normalized_end(t: Text, lo: int, hi: int, pos: int, byte_offsets, nxt, nb, lag: int) -> int:
    """To where the next token starts (less whitespace just before it), at least to ``hi``:
    where its own bytes ``nb`` are found from ``max(hi, pos)`` on, passing only over its reported
    characters and droppable ones (at most SKIP_LIMIT bytes), else its reported start moved on
    by ``lag`` characters (reference_lag.py)."""
    floor = max(hi, pos)
    end = len(t.raw) if nxt is None else advance_chars(t, byte_offsets[nxt][0], lag)
    if nxt is not None and nb is not None:
        # (by as much again as this token's own offsets lag behind pos, or by the lag)
        reach = byte_offsets[nxt][1] + max(0, pos - lo)
        at, reach = floor, max(reach, advance_chars(t, byte_offsets[nxt][1], lag))
        while at <= min(floor + SKIP_LIMIT, len(t.raw)):
            m = match_at(t, at, nb)
            ks, ke = byte_offsets[nxt]
            # the match must reach into the next token's reported characters: an earlier copy
            # wholly before them is not it
            if m is not None and m > at and (m > ks or (ks == ke and m >= ks)):
                end = at
                break
            if at in t.starting_at and (at < reach or droppable(t.starting_at[at][1])):
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


def match_at(t: Text, at: int, own: bytes) -> int | None:
    """End of ``own`` found at ``at``, fully or without a leading (dummy-prefix) space."""
    for b in (own, own[1:] if own.startswith(b" ") else None):
        if b is not None and t.raw[at : at + len(b)] == b and at + len(b) <= len(t.raw):
            return at + len(b)
    return None


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
            # offsets lag after dropped text, when they reach it
            if whole or at < hi or lo == hi or (at > pos and hi > pos):
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


def canonical_key(t: Text, span: tuple[int, int]) -> tuple[int, int]:
    """Rule 2: the span without leading/trailing whole White_Space characters; a span that is
    only whitespace (or empty) keeps its raw range."""
    s, e = span
    while s < e and s in t.starting_at:
        end, ch = t.starting_at[s]
        if end > e or ch not in WHITE_SPACE:
            break
        s = end
    while e > s and e in t.ending_at:
        begin, ch = t.ending_at[e]
        if begin < s or ch not in WHITE_SPACE:
            break
        e = begin
    return span if s == e else (s, e)


def text_pairs(tkeys: list[tuple], skeys: list[tuple]) -> list[tuple[int, int]]:
    """Rule 3: tokens with equal keys pair up (the k-th of a key on one side with the k-th of the
    same key on the other). ``*keys`` are (key, token index) of the text tokens."""
    waiting: dict[tuple[int, int], list[int]] = {}
    for key, j in skeys:
        waiting.setdefault(key, []).append(j)
    pairs = []
    for key, i in tkeys:
        if waiting.get(key):
            pairs.append((i, waiting[key].pop(0)))
    return sorted(pairs)


def special_pairs(
    tspans, tspecial, sspans, sspecial, text_pairs_: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Rule 4: specials at the same byte offset pair in order; a pair that would cross a text
    pair is dropped."""
    waiting: dict[int, list[int]] = {}
    for j, (span, sp) in enumerate(zip(sspans, sspecial, strict=False)):
        if sp:
            waiting.setdefault(span[0], []).append(j)
    out = []
    for i, (span, sp) in enumerate(zip(tspans, tspecial, strict=False)):
        if sp and waiting.get(span[0]):
            j = waiting[span[0]].pop(0)
            crosses = any((a < i) != (b < j) for a, b in text_pairs_)
            if not crosses:
                out.append((i, j))
    return out


def chunks(tkeys: list[tuple], skeys: list[tuple], pairs: set, nt: int, ns: int, tblocked):
    """Rule 5, see the module doc. Returns chunk ids per token (-1 for special tokens)."""
    tc, sc = [-1] * nt, [-1] * ns
    n, m = len(tkeys), len(skeys)

    def cut(keys, k):
        """Byte positions where a boundary before text token k may sit."""
        lo = keys[k - 1][0][1] if k > 0 else 0
        hi = keys[k][0][0] if k < len(keys) else INF
        return (lo, hi)

    def meet(a, b):
        return max(a[0], b[0]) <= min(a[1], b[1])

    i = j = chunk = 0
    while i < n or j < m:  # a chunk starts where cut(tkeys, i) meets cut(skeys, j)
        if i < n and j < m and (tkeys[i][1], skeys[j][1]) in pairs:
            tc[tkeys[i][1]] = sc[skeys[j][1]] = chunk
            i, j = i + 1, j + 1
        elif (
            j < m
            and meet(cut(tkeys, i), cut(skeys, j + 1))
            # an unpairable teacher token that could stand alone too goes first
            and not (i < n and tblocked[tkeys[i][1]] and meet(cut(tkeys, i + 1), cut(skeys, j)))
        ):
            sc[skeys[j][1]] = chunk  # student token inside the teacher's gap: alone
            j += 1
        elif i < n and meet(cut(tkeys, i + 1), cut(skeys, j)):
            tc[tkeys[i][1]] = chunk  # teacher token inside the student's gap: alone
            i += 1
        else:
            tc[tkeys[i][1]] = sc[skeys[j][1]] = chunk
            i, j = i + 1, j + 1
            while not meet(cut(tkeys, i), cut(skeys, j)):
                if cut(tkeys, i)[1] < cut(skeys, j)[0]:
                    tc[tkeys[i][1]] = chunk
                    i += 1
                else:
                    sc[skeys[j][1]] = chunk
                    j += 1
        chunk += 1
    return tc, sc


def align_reference(text: str, teacher: Side, student: Side) -> RefAlignment:
    """ALIGNMENT.md rules 1-6 on one text."""
    for side in (teacher, student):
        n = len(side.ids)
        assert len(side.offsets) == n and len(side.special) == n
        assert side.token_bytes is None or len(side.token_bytes) == n
    t = Text(text)
    (tspans, tblocked), (sspans, sblocked) = place(t, teacher), place(t, student)
    tkeys = [
        None if sp else canonical_key(t, s) for s, sp in zip(tspans, teacher.special, strict=False)
    ]
    skeys = [
        None if sp else canonical_key(t, s) for s, sp in zip(sspans, student.special, strict=False)
    ]
    tk = [(k, i) for i, k in enumerate(tkeys) if k is not None]
    sk = [(k, j) for j, k in enumerate(skeys) if k is not None]
    tp = text_pairs(
        [(k, i) for k, i in tk if not tblocked[i]], [(k, j) for k, j in sk if not sblocked[j]]
    )
    sp = special_pairs(tspans, teacher.special, sspans, student.special, tp)
    tc, sc = chunks(tk, sk, set(tp), len(tspans), len(sspans), tblocked)
    return RefAlignment(
        teacher_spans=tspans,
        student_spans=sspans,
        teacher_keys=tkeys,
        student_keys=skeys,
        pairs=sorted(tp + sp),
        teacher_chunks=tc,
        student_chunks=sc,
        teacher_text_tokens=len(tk),
        student_text_tokens=len(sk),
        aligned=len(tp),
        text_pairs=tp,
        teacher_unpairable=tblocked,
        student_unpairable=sblocked,
    )
