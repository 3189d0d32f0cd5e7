//! Rules 2-6 of ALIGNMENT.md on placed spans: canonical keys, exact pairs (one linear merge),
//! special-token pairs, chunks and coverage.
//!
//! Keys are non-decreasing along a sequence (spans never overlap and a key lies inside its span),
//! so equal keys meet in a single merge; ties (two empty keys at one place) pair first with first.
//! Special tokens are not in chunks (chunk id -1): they carry no text, and a chunk is text.

use crate::span::{canonical_key, Span};

/// One side of an alignment problem, already placed on the text.
pub struct Placed<'a> {
    pub spans: &'a [Span],
    pub special: &'a [bool],
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

/// Keys of the non-special tokens, with their token index.
fn text_keys(text: &str, side: &Placed) -> Vec<(Span, usize)> {
    // Sized up front: a filtered iterator would grow the vector by doubling (perf: benches/align.rs).
    let mut out = Vec::with_capacity(side.spans.len());
    for (i, (&span, &sp)) in side.spans.iter().zip(side.special).enumerate() {
        if !sp {
            out.push((canonical_key(text, span), i));
        }
    }
    out
}

fn key_order(a: Span, b: Span) -> std::cmp::Ordering {
    (a.start, a.end).cmp(&(b.start, b.end))
}

/// Rule 3: the linear merge over canonical keys. Returns positions in `tk` and `sk`.
fn text_pairs(tk: &[(Span, usize)], sk: &[(Span, usize)]) -> Vec<(usize, usize)> {
    // Branch-free steps (equal/less/greater are unpredictable on real text): the slot at `len` is
    // written every step and kept only on a match; `len <= min(i, j)` keeps it inside `out`.
    let (mut i, mut j, mut len) = (0, 0, 0);
    let mut out = vec![(0, 0); tk.len().min(sk.len())];
    while i < tk.len() && j < sk.len() {
        let (a, b) = (tk[i].0, sk[j].0);
        let ord = key_order(a, b);
        out[len] = (i, j);
        len += usize::from(ord.is_eq());
        i += usize::from(ord.is_le());
        j += usize::from(ord.is_ge());
    }
    out.truncate(len);
    out
}

/// Rule 4: special tokens at the same byte offset pair up in order.
fn special_pairs(t: &Placed, s: &Placed) -> Vec<(usize, usize)> {
    let list = |p: &Placed| -> Vec<(usize, usize)> {
        (0..p.spans.len())
            .filter(|&i| p.special[i])
            .map(|i| (p.spans[i].start, i))
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

/// Rule 5: the finest split of both sides into consecutive groups that cover the same text.
/// The cut before text token `k` is the closed byte interval from the previous key's end (0 for
/// the first token) to this key's start (open-ended after the last token): whitespace and bytes
/// the tokenizer dropped between keys belong to it. A chunk ends where a teacher cut meets a
/// student cut. At a chunk's start: an exact pair is a chunk of its own (so every pair is a 1x1
/// chunk); a token whose key lies wholly in the other side's cut (a dummy-prefix `▁`, a lone space
/// token, text the other side dropped) is a chunk with no tokens on the other side; otherwise the
/// chunk takes one token of each side and grows on the side whose next cut lies wholly before the
/// other side's, until the two meet. `pairs` are the text pairs as positions in `tk`/`sk`.
fn chunks(
    tk: &[(Span, usize)],
    sk: &[(Span, usize)],
    pairs: &[(usize, usize)],
    nt: usize,
    ns: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut tc = vec![-1i64; nt];
    let mut sc = vec![-1i64; ns];
    let cut = |k: &[(Span, usize)], i: usize| -> (usize, usize) {
        let lo = if i == 0 { 0 } else { k[i - 1].0.end };
        (lo, k.get(i).map_or(usize::MAX, |n| n.0.start))
    };
    let meet = |a: (usize, usize), b: (usize, usize)| a.0.max(b.0) <= a.1.min(b.1);
    let (n, m) = (tk.len(), sk.len());
    let (mut i, mut j, mut p, mut chunk) = (0usize, 0usize, 0usize, 0i64);
    while i < n || j < m {
        while p < pairs.len() && pairs[p].0 < i {
            p += 1;
        }
        if i < n && j < m && pairs.get(p) == Some(&(i, j)) {
            tc[tk[i].1] = chunk;
            sc[sk[j].1] = chunk;
            i += 1;
            j += 1;
        } else if j < m && meet(cut(tk, i), cut(sk, j + 1)) {
            sc[sk[j].1] = chunk;
            j += 1;
        } else if i < n && meet(cut(tk, i + 1), cut(sk, j)) {
            tc[tk[i].1] = chunk;
            i += 1;
        } else if i < n && j < m {
            // The chunk holds a token of each side and grows until the cuts meet. (Both sides
            // always have a token here: a side at its end has an open-ended cut, which meets
            // the other side's next cut, handled above.)
            tc[tk[i].1] = chunk;
            sc[sk[j].1] = chunk;
            i += 1;
            j += 1;
            loop {
                let (a, b) = (cut(tk, i), cut(sk, j));
                if meet(a, b) {
                    break;
                }
                if a.1 < b.0 && i < n {
                    tc[tk[i].1] = chunk;
                    i += 1;
                } else if j < m {
                    sc[sk[j].1] = chunk;
                    j += 1;
                } else {
                    break;
                }
            }
        } else {
            // Unreachable (see above); still keep every text token in a chunk.
            for &(_, t) in &tk[i.min(n)..] {
                tc[t] = chunk;
            }
            for &(_, s) in &sk[j.min(m)..] {
                sc[s] = chunk;
            }
            break;
        }
        chunk += 1;
    }
    (tc, sc)
}

/// Aligns two placed token sequences of the same text.
pub fn align(text: &str, teacher: &Placed, student: &Placed) -> AlignOut {
    let tk = text_keys(text, teacher);
    let sk = text_keys(text, student);
    let tp = text_pairs(&tk, &sk);
    let n_text_pairs = tp.len();
    let (teacher_chunks, student_chunks) =
        chunks(&tk, &sk, &tp, teacher.spans.len(), student.spans.len());
    let tp = tp.iter().map(|&(i, j)| (tk[i].1, sk[j].1)).collect();
    let pairs = merge_pairs(tp, special_pairs(teacher, student));
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
        let (tsp, ssp) = (vec![false; ts.len()], vec![false; ss.len()]);
        let out = align(
            &text,
            &Placed {
                spans: &ts,
                special: &tsp,
            },
            &Placed {
                spans: &ss,
                special: &ssp,
            },
        );
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
        let (tsp, ssp) = ([false; 3], [false; 4]);
        let t = Placed {
            spans: &ts,
            special: &tsp,
        };
        let s = Placed {
            spans: &ss,
            special: &ssp,
        };
        let out = align(text, &t, &s);
        assert_eq!(out.pairs, vec![(0, 0), (1, 1), (2, 3)]);
        assert_eq!(out.teacher_chunks, vec![0, 1, 3]);
        assert_eq!(out.student_chunks, vec![0, 1, 2, 3]);
        // Llama-2 on "日": `▁`=(0,0) then `日`; a one-token teacher.
        let ss = [Span::new(0, 0), Span::new(0, 3)];
        let ts = [Span::new(0, 3)];
        let out = align(
            "日",
            &Placed {
                spans: &ts,
                special: &[false],
            },
            &Placed {
                spans: &ss,
                special: &[false, false],
            },
        );
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
            },
            &Placed {
                spans: &ss,
                special: &[false, true],
            },
        );
        assert_eq!(out.pairs, vec![(1, 0), (2, 1)]);
        assert_eq!(out.teacher_chunks, vec![-1, 0, -1]);
    }
}
