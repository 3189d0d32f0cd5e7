//! Rules 3-6 of ALIGNMENT.md on placed spans: exact pairs, special-token pairs, chunks and
//! coverage (rule 2, canonical keys, is in `keys.rs`).
//!
//! Keys are non-decreasing along a sequence (spans never overlap and a key lies inside its span).
//! When no key repeats, the pairs are the chunk starts with equal keys and one walk yields both
//! (`walk`); when one does (two empty keys at one place), a merge pairs ties first with first
//! and the walk uses its pairs. Special tokens are not in chunks (chunk id -1): they carry no text,
//! and a chunk is text.

use crate::keys::{Key, Keys, STUDENT_HIGH, TEACHER_HIGH};
use crate::span::Span;

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

/// Rule 3: the linear merge over canonical keys. Returns positions in `tk` and `sk`. Only needed
/// when a key repeats (ties pair first with first); otherwise pairs are exactly the positions of
/// equal keys and the chunk walk finds them (see [`walk`]).
fn text_pairs(tk: &[Key], sk: &[Key]) -> Vec<(usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < tk.len() && j < sk.len() {
        match tk[i].cmp(&sk[j]) {
            std::cmp::Ordering::Equal => {
                out.push((i, j));
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

/// Rule 5: the finest split of both sides into consecutive groups that cover the same text.
/// The cut before text token `k` is the closed byte interval from the previous key's end (0 for
/// the first token) to this key's start (open-ended after the last token): whitespace and bytes
/// the tokenizer dropped between keys belong to it. A chunk ends where a teacher cut meets a
/// student cut. At a chunk's start: an exact pair is a chunk of its own (so every pair is a 1x1
/// chunk); a token whose key lies wholly in the other side's cut (a dummy-prefix `▁`, a lone space
/// token, text the other side dropped) is a chunk with no tokens on the other side; otherwise the
/// chunk takes one token of each side and grows on the side whose next cut lies wholly before the
/// other side's, until the two meet.
///
/// `tk`/`sk` are the two sides' keys ([`Keys`]); `is_pair(tk, sk, i, j)` says whether the chunk
/// start `(i, j)` (text-token positions) is an exact pair, for `i <= n`, `j <= m`. Returns chunk ids
/// per position and the pairs the walk met. When no key repeats on either side, the walk meets
/// every pair of equal keys (a pair's cuts both hold its key's start, and no step can pass one
/// side over it while the other side is short of it), so `is_pair` can be key equality and pairs
/// come out of the same single pass: the fast path of [`align`].
fn walk(
    tk: &mut Keys,
    sk: &mut Keys,
    mut is_pair: impl FnMut(&mut Keys, &mut Keys, usize, usize) -> bool,
) -> (Vec<i64>, Vec<i64>, Vec<(usize, usize)>) {
    let (n, m) = (tk.len(), sk.len());
    // One spare slot per side: the growing step below writes before it knows which side moves.
    let (mut tc, mut sc) = (vec![0i64; n + 1], vec![0i64; m + 1]);
    let mut pairs = Vec::with_capacity(n.min(m));
    let (mut i, mut j, mut chunk) = (0, 0, 0i64);
    loop {
        // Runs of exact pairs are most of real text: one predicted branch per pair.
        while is_pair(tk, sk, i, j) {
            tc[i] = chunk;
            sc[j] = chunk;
            pairs.push((i, j));
            (i, j, chunk) = (i + 1, j + 1, chunk + 1);
        }
        if i == n && j == m {
            break;
        }
        if meet(tk.cut(i), sk.cut(j + 1)) {
            // Student token j lies in the teacher's cut: a chunk without teacher tokens. (At
            // j == m the cut after the end marker starts past the text and meets nothing.)
            sc[j] = chunk;
            j += 1;
        } else if meet(tk.cut(i + 1), sk.cut(j)) {
            tc[i] = chunk;
            i += 1;
        } else {
            // A token of each side, then grow until the cuts meet. Each step writes the chunk to
            // both current tokens and moves one side (the one whose cut lies wholly before the
            // other's), without a branch: which side moves is data, and a token not moved now is
            // written again when it is. A side at its end has an open-ended cut, which never lies
            // before the other's, so neither index passes its end.
            tc[i] = chunk;
            sc[j] = chunk;
            (i, j) = (i + 1, j + 1);
            loop {
                let (a, b) = (tk.cut(i), sk.cut(j));
                if meet(a, b) {
                    break;
                }
                tc[i] = chunk;
                sc[j] = chunk;
                let teacher_moves = usize::from(a.1 < b.0);
                i += teacher_moves;
                j += 1 - teacher_moves;
            }
        }
        chunk += 1;
    }
    tc.truncate(n);
    sc.truncate(m);
    (tc, sc, pairs)
}

#[inline(always)]
fn meet(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0.max(b.0) <= a.1.min(b.1)
}

/// The walk when no key repeats: pairs are the chunk starts with equal keys.
fn walk_equal(tk: &mut Keys, sk: &mut Keys) -> (Vec<i64>, Vec<i64>, Vec<(usize, usize)>) {
    let lazy = tk.index.is_none() && sk.index.is_none();
    walk(tk, sk, |t, s, i, j| {
        // Equal raw spans have equal keys; the end markers never equal anything.
        (lazy && i < t.len() && j < s.len() && t.spans[i].packed() == s.spans[j].packed())
            || t.get(i + 1) == s.get(j + 1)
    })
}

/// The walk when a key repeats: pairs come from the merge (ties first with first).
fn walk_merged(tk: &mut Keys, sk: &mut Keys) -> (Vec<i64>, Vec<i64>, Vec<(usize, usize)>) {
    let tp = text_pairs(tk.all(), sk.all());
    let mut next = 0;
    let (tc, sc, _) = walk(tk, sk, |_, _, i, j| {
        // Pairs increase on both sides: one passed on either side is never met again.
        while next < tp.len() && (tp[next].0 < i || tp[next].1 < j) {
            next += 1;
        }
        tp.get(next) == Some(&(i, j))
    });
    (tc, sc, tp)
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

    /// Random tokenizations of a random text: each side cuts at random character boundaries,
    /// with zero-width tokens sprinkled in (twice at one offset now and then, so keys repeat).
    fn random_case(seed: u64) -> (String, Vec<Span>, Vec<Span>) {
        let mut state = seed | 1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let alphabet = [" ", "  ", "\n", "a", "bc", "é", "日", "\u{3000}", "\t"];
        let text: String = (0..next(12))
            .map(|_| alphabet[next(alphabet.len() as u64) as usize])
            .collect();
        let bounds: Vec<usize> = text.char_indices().map(|(b, _)| b).skip(1).collect();
        let mut side = || {
            let mut spans = vec![];
            let mut start = 0;
            for &b in bounds.iter().chain([text.len()].iter()) {
                for _ in 0..[0, 0, 0, 1, 2][next(5) as usize] {
                    spans.push(Span::new(start, start));
                }
                if b == text.len() || next(3) == 0 {
                    spans.push(Span::new(start, b));
                    start = b;
                }
            }
            spans
        };
        let (t, s) = (side(), side());
        (text, t, s)
    }

    #[test]
    fn equal_key_walk_finds_the_merge_pairs() {
        // The fast path (pairs = chunk starts with equal keys) against the merge's pairs, on
        // every random case whose keys do not repeat; cases with repeats must take the merge.
        let (mut fast, mut merged) = (0, 0);
        for seed in 0..20_000u64 {
            let (text, ts, ss) = random_case(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let (tsp, ssp) = (vec![false; ts.len()], vec![false; ss.len()]);
            let t = Placed {
                spans: &ts,
                special: &tsp,
            };
            let s = Placed {
                spans: &ss,
                special: &ssp,
            };
            let (mut tk, mut sk) = (
                Keys::new(&text, &t, TEACHER_HIGH),
                Keys::new(&text, &s, STUDENT_HIGH),
            );
            let want = walk_merged(&mut tk, &mut sk);
            if !(tk.unique && sk.unique) {
                merged += 1;
                continue;
            }
            fast += 1;
            let (mut tk, mut sk) = (
                Keys::new(&text, &t, TEACHER_HIGH),
                Keys::new(&text, &s, STUDENT_HIGH),
            );
            assert_eq!(walk_equal(&mut tk, &mut sk), want, "{text:?} {ts:?} {ss:?}");
        }
        assert!(fast > 1000 && merged > 1000, "{fast} {merged}");
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
