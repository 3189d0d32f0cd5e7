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
    // Branch-free fill of a vector sized up front (perf: benches/align.rs): the slot at `n` is
    // written for every token and kept only for text tokens.
    let mut out = vec![(Span::default(), 0usize); side.spans.len()];
    let mut n = 0;
    for (i, (&span, &sp)) in side.spans.iter().zip(side.special).enumerate() {
        out[n] = (canonical_key(text, span), i);
        n += usize::from(!sp);
    }
    out.truncate(n);
    out
}

/// Rule 3: the linear merge over canonical keys. Returns positions in `tk` and `sk`.
fn text_pairs(tk: &[(Span, usize)], sk: &[(Span, usize)]) -> Vec<(usize, usize)> {
    // Keys compare as one u128 (start, end). The "equal" branch is taken for most tokens of
    // real text, so a predicted branch lets the CPU run ahead of the key loads; a branch-free
    // step measured slower (every step waits for the previous step's loads).
    let pack = |k: Span| ((k.start as u128) << 64) | k.end as u128;
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(tk.len().min(sk.len()));
    while i < tk.len() && j < sk.len() {
        let (a, b) = (pack(tk[i].0), pack(sk[j].0));
        if a == b {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if a < b {
            i += 1;
        } else {
            j += 1;
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
    let mut w = ChunkWalk {
        tk,
        sk,
        tc: vec![-1i64; nt],
        sc: vec![-1i64; ns],
        i: 0,
        j: 0,
        chunk: 0,
    };
    // Pairs are chunks of their own and most tokens of real text are in pairs, so the walk goes
    // pair to pair and only runs the general step on the (few) tokens between two pairs.
    for &(pi, pj) in pairs {
        while (w.i < pi || w.j < pj) && w.i <= pi && w.j <= pj {
            w.step();
        }
        if w.i == pi && w.j == pj {
            w.tc[tk[pi].1] = w.chunk;
            w.sc[sk[pj].1] = w.chunk;
            w.chunk += 1;
            w.i += 1;
            w.j += 1;
        }
    }
    while w.i < tk.len() || w.j < sk.len() {
        w.step();
    }
    (w.tc, w.sc)
}

/// State of the chunk walk over the text keys of both sides.
struct ChunkWalk<'a> {
    tk: &'a [(Span, usize)],
    sk: &'a [(Span, usize)],
    tc: Vec<i64>,
    sc: Vec<i64>,
    i: usize,
    j: usize,
    chunk: i64,
}

/// The cut before key `i`: from the previous key's end (0 at the start) to key `i`'s start
/// (open-ended after the last key).
fn cut(k: &[(Span, usize)], i: usize) -> (usize, usize) {
    let lo = if i == 0 { 0 } else { k[i - 1].0.end };
    (lo, k.get(i).map_or(usize::MAX, |n| n.0.start))
}

fn meet(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0.max(b.0) <= a.1.min(b.1)
}

impl ChunkWalk<'_> {
    /// One chunk that is not an exact pair, starting at (i, j).
    fn step(&mut self) {
        let (tk, sk) = (self.tk, self.sk);
        let (n, m) = (tk.len(), sk.len());
        let (i, j, chunk) = (self.i, self.j, self.chunk);
        if j < m && meet(cut(tk, i), cut(sk, j + 1)) {
            // Student token j lies in the teacher's cut: a chunk without teacher tokens.
            self.sc[sk[j].1] = chunk;
            self.j += 1;
        } else if i < n && meet(cut(tk, i + 1), cut(sk, j)) {
            self.tc[tk[i].1] = chunk;
            self.i += 1;
        } else if i < n && j < m {
            // A token of each side, then grow until the cuts meet. (A side at its end has an
            // open-ended cut, which meets the other side's next cut, handled above.)
            self.tc[tk[i].1] = chunk;
            self.sc[sk[j].1] = chunk;
            let (mut i, mut j) = (i + 1, j + 1);
            loop {
                let (a, b) = (cut(tk, i), cut(sk, j));
                if meet(a, b) {
                    break;
                }
                if a.1 < b.0 && i < n {
                    self.tc[tk[i].1] = chunk;
                    i += 1;
                } else if j < m {
                    self.sc[sk[j].1] = chunk;
                    j += 1;
                } else {
                    break;
                }
            }
            self.i = i;
            self.j = j;
        } else {
            // Unreachable (see above); still keep every text token in a chunk.
            for &(_, t) in &tk[i.min(n)..] {
                self.tc[t] = chunk;
            }
            for &(_, s) in &sk[j.min(m)..] {
                self.sc[s] = chunk;
            }
            self.i = n;
            self.j = m;
        }
        self.chunk += 1;
    }
}

/// Aligns two placed token sequences of the same text.
pub fn align(text: &str, teacher: &Placed, student: &Placed) -> AlignOut {
    let tk = text_keys(text, teacher);
    let sk = text_keys(text, student);
    let tp = text_pairs(&tk, &sk);
    let n_text_pairs = tp.len();
    let (teacher_chunks, student_chunks) =
        chunks(&tk, &sk, &tp, teacher.spans.len(), student.spans.len());
    // Key positions are token indices unless a side has special tokens.
    let (t_plain, s_plain) = (
        tk.len() == teacher.spans.len(),
        sk.len() == student.spans.len(),
    );
    let pairs = if t_plain && s_plain {
        tp
    } else {
        let tp = tp.iter().map(|&(i, j)| (tk[i].1, sk[j].1)).collect();
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
