//! Rules 3 and 5 of ALIGNMENT.md: exact pairs and chunks, from both sides' canonical keys.
//!
//! Keys are non-decreasing along a sequence (spans never overlap and a key lies inside its span).
//! When no key repeats, the pairs are the chunk starts with equal keys and one walk yields both
//! ([`walk_equal`]); when one does (two empty keys at one place), a merge pairs ties first with
//! first and the walk uses its pairs ([`walk_merged`]).

use crate::keys::{Key, Keys};

/// Chunk ids per text-token position of each side, and the pairs (text-token positions).
pub type Walked = (Vec<i64>, Vec<i64>, Vec<(usize, usize)>);

/// Rule 3: the linear merge over canonical keys. Returns positions in `tk` and `sk`. Only needed
/// when a key repeats (ties pair first with first); otherwise pairs are exactly the positions of
/// equal keys and the chunk walk finds them (see [`walk`]). An unpairable token (`place.rs`) is
/// passed over, so the next token with the same key (if any) pairs instead.
fn text_pairs(
    tk: &[Key],
    sk: &[Key],
    t_ok: impl Fn(usize) -> bool,
    s_ok: impl Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < tk.len() && j < sk.len() {
        match tk[i].cmp(&sk[j]) {
            std::cmp::Ordering::Equal => {
                let (a, b) = (t_ok(i), s_ok(j));
                if a && b {
                    out.push((i, j));
                }
                i += usize::from(!a || b);
                j += usize::from(!b || a);
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    out
}

/// Rule 5: the finest split of both sides into consecutive groups that cover the same text.
///
/// Rule 5's "every 1x1 chunk of text tokens is a pair" holds as: a 1x1 chunk of text tokens is
/// a pair exactly when the two keys are equal and both tokens may pair. Two 1x1 chunks are not
/// pairs: whitespace-only tokens of different lengths that end where the other side's cut is
/// (`"      C"`: 5 spaces + ` C` against 6 spaces + `C`; they stand for different text, and a
/// whitespace-only key is its raw span), and an unpairable token (`place.rs`) alone against one
/// token of the other side.
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
/// come out of the same single pass: the fast path of `align::align`.
fn walk(
    tk: &mut Keys,
    sk: &mut Keys,
    mut is_pair: impl FnMut(&mut Keys, &mut Keys, usize, usize) -> bool,
) -> Walked {
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
        // When both tokens could stand alone (equal empty keys), an unpairable teacher token goes
        // first, so the tokens behind it with the same key still meet as a pair.
        if meet(tk.cut(i), sk.cut(j + 1)) && (tk.pairable(i) || !meet(tk.cut(i + 1), sk.cut(j))) {
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

/// The walk when no key repeats: pairs are the chunk starts with equal keys (and, where a side
/// has unpairable tokens, both tokens pairable: a separate instance, so the common case pays
/// nothing for it).
pub fn walk_equal(tk: &mut Keys, sk: &mut Keys) -> Walked {
    let lazy = tk.index.is_none() && sk.index.is_none();
    // Equal raw spans have equal keys; the end markers never equal anything.
    let equal = move |t: &mut Keys, s: &mut Keys, i: usize, j: usize| {
        (lazy && i < t.len() && j < s.len() && t.spans[i].packed() == s.spans[j].packed())
            || t.get(i + 1) == s.get(j + 1)
    };
    if tk.has_blocked() || sk.has_blocked() {
        walk(tk, sk, |t, s, i, j| {
            equal(t, s, i, j) && t.pairable(i) && s.pairable(j)
        })
    } else {
        walk(tk, sk, equal)
    }
}

/// The walk when a key repeats: pairs come from the merge (ties first with first).
pub fn walk_merged(tk: &mut Keys, sk: &mut Keys) -> Walked {
    let (t_all, s_all) = (tk.all().to_vec(), sk.all().to_vec());
    let tp = text_pairs(&t_all, &s_all, |p| tk.pairable(p), |p| sk.pairable(p));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::Placed;
    use crate::keys::{STUDENT_HIGH, TEACHER_HIGH};
    use crate::span::Span;

    /// Random tokenizations of a random text: each side cuts at random character boundaries,
    /// with zero-width tokens sprinkled in (twice at one offset now and then, so keys repeat).
    fn random_case(seed: u64) -> (String, Vec<Span>, Vec<Span>, Vec<bool>) {
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
        // Now and then a few unpairable student tokens.
        let blocked = if next(4) == 0 {
            (0..s.len()).map(|_| next(3) == 0).collect()
        } else {
            vec![]
        };
        (text, t, s, blocked)
    }

    #[test]
    fn equal_key_walk_finds_the_merge_pairs() {
        // The fast path (pairs = chunk starts with equal keys) against the merge's pairs, on
        // every random case whose keys do not repeat; cases with repeats must take the merge.
        let (mut fast, mut merged) = (0, 0);
        for seed in 0..20_000u64 {
            let (text, ts, ss, blocked) = random_case(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let (tsp, ssp) = (vec![false; ts.len()], vec![false; ss.len()]);
            let t = Placed {
                spans: &ts,
                special: &tsp,
                unpairable: &[],
            };
            let s = Placed {
                spans: &ss,
                special: &ssp,
                unpairable: &blocked,
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
}
