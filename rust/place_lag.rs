//! Offsets that lag behind dropped characters (rule 1, case 3 of [`super`]): how far a token's
//! offsets lag, whether the tokens after it confirm that lag, and the part of a normalized
//! character reported on a dropped character after it. Split from `place.rs` to keep
//! one job per file; the placement itself stays there.

use super::{droppable, match_at, spells, SKIP_LIMIT};
use crate::drops::Drops;

/// How many characters the offsets of token `i` (case 3, not sharing characters) lag behind the
/// text, where it shows (`None`: no sign here). The `tokenizers` crate reports every token of
/// t5-small (precompiled normalizer) that many characters early when the text *starts* with
/// characters the normalizer drops (`\x08`; dropped characters later in the text shift nothing).
/// The sign: its reported characters start with a droppable one (whitespace too: t5-small drops
/// a leading `\x0b`; a space kept as `▁` gives no lag that the tokens after confirm) while its
/// bytes are unknown or spell something that starts otherwise (an `<unk>` or `▁fi` does not
/// stand for a `\x08`): then the droppable characters from there on are what was dropped
/// ("\x08你好" with `<unk>` reported on "\x08你"), if `holds` confirms it (see [`confirms_lag`]:
/// t5-small keeps a `\x00` as an `<unk>` with right offsets). Or its reported characters start
/// with whitespace after `pos`, past droppable characters: at most as many as those (the spaces
/// of "\x08   你好" hide the sign above).
/// A token that merely starts before `pos` is no sign: the previous token may have overrun (BERT's
/// `##i` for "í" found at the next word's "i"). Lags past [`SKIP_LIMIT`] bytes count as none,
/// keeping the work per token bounded. Where the tokenizer's own normalizer says which
/// characters it drops (`drops`), only those count as dropped.
pub(super) fn lag_chars(
    text: &str,
    (bs, be): (usize, usize),
    pos: usize,
    (own, drops): (Option<&[u8]>, Drops),
    holds: impl Fn(usize) -> bool,
) -> Option<usize> {
    let chars = |q: usize| match text.get(bs.min(q)..q) {
        Some(s) if q - bs.min(q) <= SKIP_LIMIT => s.chars().count(),
        _ => 0,
    };
    let first = text.get(bs..be).and_then(|r| r.chars().next());
    let stands_for_other = own.is_none_or(|b| spells(b) && !starts_dropped(b));
    if first.is_some_and(char::is_whitespace) && stands_for_other && pos < bs {
        // Reported on whitespace after dropped characters (t5-small on "\x08   你好": `<unk>`
        // reported on " 你" for "你好"): as many as were dropped before it, at most.
        let before = text
            .get(pos..bs)
            .filter(|s| s.len() <= SKIP_LIMIT)
            .unwrap_or("");
        let n = before.chars().filter(|&c| drops.may_drop(c)).count();
        return (1..=n).rev().take(LAG_TRIES).find(|&l| holds(l));
    }
    // (Whitespace counts as dropped too: t5-small drops a leading `\x0b` but not a space, and a
    // lag that the tokens after do not confirm is not taken.)
    if first.is_some_and(|c| drops.may_drop(c)) && stands_for_other {
        let mut q = bs.max(pos);
        let limit = q.saturating_add(SKIP_LIMIT);
        while let Some(c) = text.get(q..).and_then(|r| r.chars().next()) {
            if !drops.may_drop(c) || q >= limit {
                break;
            }
            q += c.len_utf8();
        }
        // Not every droppable character was dropped (t5-small drops `\x08`, keeps `\x00` in an
        // `<unk>`): the largest lag that holds, of the last few.
        let (most, least) = (chars(q), chars(bs.max(pos)));
        return (least + 1..=most).rev().take(LAG_TRIES).find(|&l| holds(l));
    }
    None
}

/// How many lags [`lag_chars`] tries, from the largest down (bounds the work per token).
const LAG_TRIES: usize = 4;

/// How many later tokens [`confirms_lag`] looks at (bounds the work per token).
const CONFIRM_TOKENS: usize = 32;

/// Whether the offsets of the tokens after `i` lag by `lag` characters: decided by the first one
/// whose own bytes lie at its reported start or a few characters less on, but not `lag`
/// characters on (no), or the other way round (yes); looking at most [`CONFIRM_TOKENS`] tokens
/// ahead. Undecided, the text must hold `lag` characters that are kept (not whitespace, not
/// [`composes`], and see [`Drops::kept_after`]) after the last token's reported end.
pub(super) fn confirms_lag<'b>(
    text: &str,
    (offsets, special): (&[(usize, usize)], &[bool]),
    (token_bytes, drops): (&impl Fn(usize) -> Option<&'b [u8]>, Drops),
    i: usize,
    lag: usize,
) -> bool {
    let t = text.as_bytes();
    let lies_at = |p: usize, b: &[u8]| match_at(t, p, b).is_some_and(|end| end > p);
    let later = (i + 1..offsets.len()).filter(|&k| !special[k]);
    for k in later.take(CONFIRM_TOKENS) {
        // Whitespace-only bytes (a `▁`) lie at any space of the text: no evidence either way.
        let Some(b) = token_bytes(k).filter(|b| !super::all_whitespace(b)) else {
            continue;
        };
        let s = offsets[k].0;
        // A smaller lag that fits says no (t5-small composing NFD "U" + U+0308 after a dropped
        // `\x08` and a kept `\x00`: `n` lies one character on, not two).
        let mut smaller = std::iter::once(0).chain(lag.saturating_sub(LAG_TRIES).max(1)..lag);
        let fits_smaller = smaller.any(|l| lies_at(advance_chars(text, s, l), b));
        match (fits_smaller, lies_at(advance_chars(text, s, lag), b)) {
            (true, false) => return false,
            (false, true) => return true,
            _ => {}
        }
    }
    let last = (0..offsets.len()).rev().find(|&k| !special[k]);
    let rest = text.get(last.map_or(0, |k| offsets[k].1)..).unwrap_or("");
    let rest = rest.char_indices().take_while(|&(k, _)| k < SKIP_LIMIT);
    // Without the normalizer's answer, a droppable character left there is kept text only for
    // an `<unk>` (t5-small keeps a `\x00` as one); after a token of known bytes it was dropped.
    let unknown = last.is_some_and(|k| token_bytes(k).is_none());
    let kept = |c: char| !composes(c) && drops.kept_after(c, unknown);
    rest.filter(|&(_, c)| kept(c)).count() >= lag
}

/// Characters that compose with the one before them (combining marks of the common blocks, kana
/// voicing marks, Hangul medial and final jamo). A token reported on the base character alone
/// may stand for them too (t5-small's NFC `é` reported on the "e" of "e" + U+0301), so text
/// left after the last token's reported end is no evidence of a lag when it is only these
/// (t5-small's `<unk>` for a kept `\x00` before that "e" + U+0301 took the "e" otherwise).
fn composes(c: char) -> bool {
    matches!(c,
        '\u{300}'..='\u{36F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}' | '\u{3099}'..='\u{309A}'
        | '\u{1161}'..='\u{11C2}')
}

/// The next text token when token `i` (case 3: its bytes are not in the text) is followed, right
/// where its reported characters end, by a text token reported from a dropped character on
/// (droppable, not whitespace) whose bytes are unknown or do not stand for dropped characters
/// (an `<unk>` for "Ž{" of "Ǆ\x1f{" reported on "\x1f{", where token `i` has no lag).
/// t5-small reports the second part of an NFKC expansion on a dropped character after it
/// ("ﬁ\x08": `f` on "ﬁ", `i` on the `\x08`; "Ǆ\x08": `▁D` on "Ǆ", an `<unk>` for `Ž` on the
/// `\x08`), so token `i` stands for only part of its characters and the next one for none of
/// the `\x08`: both are unpairable, like pieces of one character whose offsets overlap. (A
/// legitimate `<unk>` for a kept `\x00` there costs a pair, never makes a wrong one.) The same on
/// characters that [`composes`] ("Ǆ" + U+0301: the `<unk>` for "Ž́" reported on the U+0301),
/// unless the next token's own bytes lie there (a real U+0301 token).
pub(super) fn spills_onto_dropped<'b>(
    text: &str,
    offsets: &[(usize, usize)],
    special: &[bool],
    token_bytes: &impl Fn(usize) -> Option<&'b [u8]>,
    i: usize,
    lag: usize,
) -> Option<usize> {
    let k = super::next_token(offsets, special, i).filter(|&k| !special[k])?;
    // Where the next token's reported characters really are: as far on as the offsets lag
    // (t5-small on "\x08Ǆ\x08": the `<unk>` for `Ž`, reported on "Ǆ", is on the last `\x08`).
    let (ks, ke) = (
        advance_chars(text, offsets[k].0, lag),
        advance_chars(text, offsets[k].1, lag),
    );
    let chars = text
        .get(ks..ke)
        .filter(|s| offsets[k].0 == offsets[i].1 && !s.is_empty())?;
    let absorbed = |c: char| (droppable(c) && !c.is_whitespace()) || composes(c);
    let own = token_bytes(k);
    let stands_for_other = own.is_none_or(|b| spells(b) && !starts_dropped(b));
    let lies_there = own.is_some_and(|b| match_at(text.as_bytes(), ks, b).is_some());
    // From an absorbed character on, with more text after it or not (t5-small on "\x08Ǆ\x08Å":
    // `ŽÅ` reported on "Ǆ\x08", one character early, so on "\x08Å").
    let first = chars.chars().next().is_some_and(absorbed);
    (first && stands_for_other && !lies_there).then_some(k)
}

/// Whether bytes (less a leading space) start with a droppable character.
fn starts_dropped(b: &[u8]) -> bool {
    let b = b.strip_prefix(b" ").unwrap_or(b);
    String::from_utf8_lossy(b)
        .chars()
        .next()
        .is_some_and(droppable)
}

/// `at` moved on by `n` characters (at most to the end of the text; `at` itself when it is not a
/// character boundary).
pub(super) fn advance_chars(text: &str, at: usize, n: usize) -> usize {
    match text.get(at..) {
        Some(rest) if n > 0 => rest
            .char_indices()
            .nth(n)
            .map_or(text.len(), |(k, _)| at + k),
        _ => at,
    }
}
