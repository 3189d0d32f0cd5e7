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
    side.spans
        .iter()
        .zip(side.special)
        .enumerate()
        .filter(|(_, (_, &sp))| !sp)
        .map(|(i, (&span, _))| (canonical_key(text, span), i))
        .collect()
}

fn key_order(a: Span, b: Span) -> std::cmp::Ordering {
    (a.start, a.end).cmp(&(b.start, b.end))
}

/// Rule 3: the linear merge over canonical keys.
fn text_pairs(tk: &[(Span, usize)], sk: &[(Span, usize)]) -> Vec<(usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(tk.len().min(sk.len()));
    while i < tk.len() && j < sk.len() {
        match key_order(tk[i].0, sk[j].0) {
            std::cmp::Ordering::Equal => {
                out.push((tk[i].1, sk[j].1));
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
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

/// Rule 5: a chunk closes where the teacher's and the student's cuts meet. The cut after a text
/// token is the closed byte interval from its key's end to the next key's start (open-ended after
/// the last token); whitespace and untokenized bytes between keys belong to the cut.
fn chunks(
    tk: &[(Span, usize)],
    sk: &[(Span, usize)],
    nt: usize,
    ns: usize,
) -> (Vec<i64>, Vec<i64>) {
    let mut tc = vec![-1i64; nt];
    let mut sc = vec![-1i64; ns];
    let cut = |k: &[(Span, usize)], i: usize| -> (usize, usize) {
        let hi = k.get(i + 1).map_or(usize::MAX, |n| n.0.start);
        (k[i].0.end, hi)
    };
    let (mut i, mut j, mut chunk) = (0usize, 0usize, 0i64);
    while i < tk.len() && j < sk.len() {
        let (a, b) = cut(tk, i);
        let (c, d) = cut(sk, j);
        if a.max(c) <= b.min(d) {
            tc[tk[i].1] = chunk;
            sc[sk[j].1] = chunk;
            i += 1;
            j += 1;
            chunk += 1;
        } else if b < c {
            tc[tk[i].1] = chunk;
            i += 1;
        } else {
            sc[sk[j].1] = chunk;
            j += 1;
        }
    }
    // One side ran out of text (the other kept tokens the first dropped): one last chunk.
    for &(_, t) in &tk[i..] {
        tc[t] = chunk;
    }
    for &(_, s) in &sk[j..] {
        sc[s] = chunk;
    }
    (tc, sc)
}

/// Aligns two placed token sequences of the same text.
pub fn align(text: &str, teacher: &Placed, student: &Placed) -> AlignOut {
    let tk = text_keys(text, teacher);
    let sk = text_keys(text, student);
    let tp = text_pairs(&tk, &sk);
    let n_text_pairs = tp.len();
    let pairs = merge_pairs(tp, special_pairs(teacher, student));
    let (teacher_chunks, student_chunks) =
        chunks(&tk, &sk, teacher.spans.len(), student.spans.len());
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
