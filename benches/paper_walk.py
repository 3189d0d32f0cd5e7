"""The paper's token alignment walk (DSKD.md, "The paper's alignment walk"), re-implemented cleanly
as the baseline for ``bench_coverage.py``. Not used by the library.

Both sides' tokens as vocabulary strings (``id_to_token`` / ``convert_ids_to_tokens``) with every
``Ġ`` and ``▁`` deleted; two cursors and two histories (the text consumed so far on each side):

- histories equal and token i == token j (or both are their side's EOS): pair (i, j), consume both;
- teacher history longer: consume student token j;
- teacher history shorter: consume teacher token i;
- equal length, different text: consume both.

It compares *spellings*, so it is only right while both vocabularies spell the text the same way:
after ``Ċ`` (byte-level newline) meets ``<0x0A>`` (SentencePiece byte fallback), or ``Ã©`` meets
``é``, the histories differ for good and no further pair is found; and where they differ in
spelling but not in length, equal-looking tokens can pair at different places in the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["clean_tokens", "paper_walk"]

_MARKERS = str.maketrans("", "", "\u0120\u2581")  # Ġ and ▁


def clean_tokens(ids: Sequence[int], id_to_token: Callable[[int], str | None]) -> list[str]:
    """Token strings as the walk sees them: vocabulary spelling with ``Ġ`` and ``▁`` deleted."""
    return [(id_to_token(int(i)) or "").translate(_MARKERS) for i in ids]


def paper_walk(
    teacher: Sequence[str],
    student: Sequence[str],
    teacher_eos: int | None = None,
    student_eos: int | None = None,
) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` the paper's walk records for two cleaned token string sequences.
    ``*_eos`` is the index of that side's EOS token, if the sequence ends with one."""
    pairs: list[tuple[int, int]] = []
    t_hist, s_hist = "", ""
    i, j, n, m = 0, 0, len(teacher), len(student)
    while i < n and j < m:
        ti, sj = teacher[i], student[j]
        if t_hist == s_hist and (ti == sj or (i == teacher_eos and j == student_eos)):
            pairs.append((i, j))
            t_hist += ti
            s_hist += sj
            i += 1
            j += 1
        elif len(t_hist) > len(s_hist):
            s_hist += sj
            j += 1
        elif len(t_hist) < len(s_hist):
            t_hist += ti
            i += 1
        else:
            t_hist += ti
            s_hist += sj
            i += 1
            j += 1
    return pairs


def _demo() -> None:
    # The worked example of ALIGNMENT.md: pairs my, is, a, good, !
    t = "my| boy| fr|ie|nd| is| a| good| peop|le|!".replace(" ", "\u0120").split("|")
    s = "my| boyfri|end| is| a| good| people|!".replace(" ", "\u2581").split("|")
    tc, sc = [x.translate(_MARKERS) for x in t], [x.translate(_MARKERS) for x in s]
    assert paper_walk(tc, sc) == [(0, 0), (5, 3), (6, 4), (7, 5), (10, 7)], paper_walk(tc, sc)
    print("worked example ok:", paper_walk(tc, sc))


if __name__ == "__main__":
    _demo()
