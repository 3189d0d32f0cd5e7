//! ALIGNMENT.md on placed spans: one text's alignment (rules 3-6), with special-token pairs
//! (rule 4) and coverage (rule 6) here; canonical keys (rule 2) are in `canonical.rs` and
//! `keys.rs`, exact pairs and chunks (rules 3 and 5) in `walk.rs`. Special tokens are not in
//! chunks (chunk id -1): they carry no text, and a chunk is text.

use crate::keys::{Keys, STUDENT_HIGH, TEACHER_HIGH};
use crate::span::Span;
use crate::walk::{walk_equal, walk_merged};

/// One side of an alignment problem, already placed on the text.
pub struct Placed<'a> {
    pub spans: &'a [Span],
    pub special: &'a [bool],
    /// Tokens that take part in chunks but never in pairs (`place.rs`); empty when none.
    pub unpairable: &'a [bool],
}

/// Everything the Python `Alignment` exposes besides ids and spans.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlignOut {
    /// (teacher index, student index), strictly increasing on both sides.
    pub pairs: Vec<(usize, usize)>,
    pub teacher_chunks: Vec<i64>,
    pub student_chunks: Vec<i64>,
    pub teacher_text_tokens: usize,
    pub student_text_tokens: usize,
    pub teacher_aligned: usize,
    pub student_aligned: usize,
}

/// Rule 4: special tokens at the same byte offset pair up in order.
fn special_pairs(t: &Placed, s: &Placed) -> Vec<(usize, usize)> {
    let list = |p: &Placed| -> Vec<(usize, usize)> {
        (0..p.spans.len())
            .filter(|&i| p.special[i])
            .map(|i| (p.spans[i].start(), i))
            .collect()
    };
    let (ts, ss) = (list(t), list(s));
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < ts.len() && j < ss.len() {
        match ts[i].0.cmp(&ss[j].0) {
            std::cmp::Ordering::Equal => {
                out.push((ts[i].1, ss[j].1));
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    out
}

/// Merges text and special pairs by teacher index. A special pair that would break the student
/// order (a special on one side before, on the other side after an empty-key text token at the
/// same offset) is dropped: text pairs win, the result stays a monotone matching.
fn merge_pairs(text: Vec<(usize, usize)>, special: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    if special.is_empty() {
        return text;
    }
    let mut out = Vec::with_capacity(text.len() + special.len());
    let mut k = 0;
    for (ti, sj) in text {
        while k < special.len() && special[k].0 < ti {
            let (a, b) = special[k];
            if b < sj && out.last().is_none_or(|&(_, pb)| pb < b) {
                out.push((a, b));
            }
            k += 1;
        }
        out.push((ti, sj));
    }
    for &(a, b) in &special[k..] {
        if out.last().is_none_or(|&(_, pb)| pb < b) {
            out.push((a, b));
        }
    }
    out
}

/// Aligns two placed token sequences of the same text (at most `span::MAX_TEXT_BYTES`).
pub fn align(text: &str, teacher: &Placed, student: &Placed) -> AlignOut {
    let mut tk = Keys::new(text, teacher, TEACHER_HIGH);
    let mut sk = Keys::new(text, student, STUDENT_HIGH);
    let (tc, sc, tp) = if tk.unique && sk.unique {
        walk_equal(&mut tk, &mut sk)
    } else {
        walk_merged(&mut tk, &mut sk)
    };
    let n_text_pairs = tp.len();
    let (teacher_chunks, student_chunks) = (
        spread(tc, tk.index.as_deref(), teacher.spans.len()),
        spread(sc, sk.index.as_deref(), student.spans.len()),
    );
    let pairs = if tk.index.is_none() && sk.index.is_none() {
        tp
    } else {
        let at = |index: &Option<Vec<usize>>, k: usize| index.as_ref().map_or(k, |x| x[k]);
        let tp = tp
            .iter()
            .map(|&(i, j)| (at(&tk.index, i), at(&sk.index, j)))
            .collect();
        merge_pairs(tp, special_pairs(teacher, student))
    };
    AlignOut {
        pairs,
        teacher_chunks,
        student_chunks,
        teacher_text_tokens: tk.len(),
        student_text_tokens: sk.len(),
        teacher_aligned: n_text_pairs,
        student_aligned: n_text_pairs,
    }
}

/// Chunk ids by text-token position to chunk ids by token (-1 for special tokens).
fn spread(chunks: Vec<i64>, index: Option<&[usize]>, n: usize) -> Vec<i64> {
    let Some(index) = index else { return chunks };
    let mut out = vec![-1i64; n];
    for (&c, &t) in chunks.iter().zip(index) {
        out[t] = c;
    }
    out
}

/// Rule 6: aligned text tokens over text tokens; 1.0 for a side without text tokens (nothing is
/// left unaligned). Counts travel with it so callers can pool coverage over a corpus.
pub fn coverage(aligned: usize, total: usize) -> f64 {
    if total == 0 {
        1.0
    } else {
        aligned as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aligns two sides without special tokens.
    fn align_plain(text: &str, ts: &[Span], ss: &[Span]) -> AlignOut {
        let (tsp, ssp) = (vec![false; ts.len()], vec![false; ss.len()]);
        let side = |spans, special| Placed {
            spans,
            special,
            unpairable: &[],
        };
        align(text, &side(ts, &tsp), &side(ss, &ssp))
    }

    /// Spans from a list of token strings laid end to end.
    fn lay(tokens: &[&str]) -> (String, Vec<Span>) {
        let mut text = String::new();
        let mut spans = vec![];
        for t in tokens {
            spans.push(Span::new(text.len(), text.len() + t.len()));
            text.push_str(t);
        }
        (text, spans)
    }

    #[test]
    fn worked_example() {
        let (text, ts) = lay(&[
            "my", " boy", "fr", "ie", "nd", " is", " a", " good", " peop", "le", "!",
        ]);
        let (text2, ss) = lay(&["my", " boyfri", "end", " is", " a", " good", " people", "!"]);
        assert_eq!(text, text2);
        let out = align_plain(&text, &ts, &ss);
        assert_eq!(out.pairs, vec![(0, 0), (5, 3), (6, 4), (7, 5), (10, 7)]);
        assert_eq!(out.teacher_chunks, vec![0, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6]);
        assert_eq!(out.student_chunks, vec![0, 1, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn lone_space_and_dummy_prefix_are_chunks_of_their_own() {
        // "x = 1": GPT-2 `x|Ġ=|Ġ1`, Llama-2 `▁x|▁=|▁|1` (spans after placement; `▁x` has no
        // space in the text, so it stands for `x`). The pair `Ġ1`/`1` must be a 1x1 chunk.
        let text = "x = 1";
        let ts = [Span::new(0, 1), Span::new(1, 3), Span::new(3, 5)];
        let ss = [
            Span::new(0, 1),
            Span::new(1, 3),
            Span::new(3, 4),
            Span::new(4, 5),
        ];
        let out = align_plain(text, &ts, &ss);
        assert_eq!(out.pairs, vec![(0, 0), (1, 1), (2, 3)]);
        assert_eq!(out.teacher_chunks, vec![0, 1, 3]);
        assert_eq!(out.student_chunks, vec![0, 1, 2, 3]);
        // Llama-2 on "日": `▁`=(0,0) then `日`; a one-token teacher.
        let ss = [Span::new(0, 0), Span::new(0, 3)];
        let ts = [Span::new(0, 3)];
        let out = align_plain("日", &ts, &ss);
        assert_eq!(out.pairs, vec![(0, 1)]);
        assert_eq!(out.teacher_chunks, vec![1]);
        assert_eq!(out.student_chunks, vec![0, 1]);
    }

    #[test]
    fn specials_pair_by_offset_in_order() {
        let text = "ab";
        let ts = [Span::new(0, 0), Span::new(0, 2), Span::new(2, 2)];
        let ss = [Span::new(0, 2), Span::new(2, 2)];
        let out = align(
            text,
            &Placed {
                spans: &ts,
                special: &[true, false, true],
                unpairable: &[],
            },
            &Placed {
                spans: &ss,
                special: &[false, true],
                unpairable: &[],
            },
        );
        assert_eq!(out.pairs, vec![(1, 0), (2, 1)]);
        assert_eq!(out.teacher_chunks, vec![-1, 0, -1]);
    }
}
