"""The executable spec: ALIGNMENT.md in plain Python, written for reading, not for speed.

Inputs per side are what any tokenizer can give (token ids, character offsets ``[start, end)``,
special mask, and the bytes each token stands for, ``None`` where unknown); the output holds
everything the Rust core returns, so tests compare the two token for token. Choices the contract
leaves open follow the module docs of ``rust/span.rs`` and ``rust/align.rs``:

- placement (``reference_place.py``, mirroring rust/place.rs; the revised rule 1 of issue 10:
  offsets are a hint, the span follows the bytes): a token's own bytes are matched where the
  previous token ended, or after characters a normalizer may drop (at most 256 bytes on),
  reaching its reported start; else at its reported start, running past its characters only
  over whitespace; a leading space the text does not have stands for no bytes; otherwise (bytes
  not in the text) the token spans from where the previous token ended to where the next one
  starts (less whitespace before it), at least to the end of its offsets (its next neighbour's
  start moved on by as many characters as the offsets lag behind dropped characters:
  reference_lag.py), and is unpairable when its characters overlap a neighbour's, or a part of
  it is reported on a dropped character after it;
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

from reference_place import place
from reference_text import WHITE_SPACE, Side, Text  # noqa: F401  (Side: re-exported)

INF = float("inf")


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
