//! Rule 1 of ALIGNMENT.md (revised, issue 10): where each token lies in the text. Offsets are a
//! hint; the span follows the token's own bytes.
//!
//! Tokens are placed left to right; `pos` is where the previous token ended and no token starts
//! before it. For a non-special token with known bytes `b`:
//! 1. **Its bytes where the previous token ended.** `b` is searched at `pos`, then after each
//!    character a tokenizer may drop (White_Space, controls, format characters and other default
//!    ignorables, U+FFFD; [`droppable`]), at most [`SKIP_LIMIT`] bytes past `pos`. A leading space the text does not have (SentencePiece dummy prefix,
//!    `add_prefix_space`) stands for no bytes: `b` without it is tried at each place too. A
//!    non-empty match must reach the token's reported start (an earlier copy of the same bytes,
//!    wholly before the offsets, is not this token), and a match that cuts a character must
//!    overlap the token's reported characters when found right at `pos` (byte-level pieces do; a
//!    normalizer's byte piece can equal a text byte just past them by chance: NFD's U+0323 lead
//!    byte `CC` before a text U+0301); after skipped characters the offsets lag and do not count. This covers *trimmed offsets* (GPT-NeoX `ĠĊĊ` reported as
//!    "\n\n", a four-space token as empty: the match at `pos` covers the dropped space), byte
//!    pieces of one character (each piece follows the previous one), and *offsets shifted by
//!    dropped characters* (t5-small drops `\x08` and reports every later token one character
//!    early: `▁L` in "\x08Lll" is found after the `\x08`).
//! 2. **The offsets' start** (`max(start, pos)`): full bytes or dummy-prefixed bytes there, the match
//!    running past the character range only over whitespace (the pre-issue-10 rule; reached when
//!    a normalizer dropped characters that [`droppable`] does not list, e.g. combining marks
//!    removed by accent stripping).
//! 3. **Otherwise the bytes are not in the text** (a normalizer changed it: lowercasing, accent
//!    stripping, NFC/NFD/NFKC, `[UNK]`, or no bytes known): the token stands for the original text
//!    from `pos` to where the next token starts (where its own bytes are found after this token's
//!    offsets, else its reported start moved on by as many characters as this token's offsets
//!    lag (`lag_chars`); less whitespace just before it, which a space-led neighbour or nobody
//!    owns), and at least to the end of its own offsets.
//!    Qwen's NFC `é` for "e" + U+0301 reported on the "e" alone thus spans both code points and
//!    never pairs with a plain `e` of the other side.
//!
//! **Unpairable tokens** take part in chunks (rule 5), never in pairs. Six kinds, all of case 3:
//! - a token whose character range overlaps its neighbour's: a normalizer made several tokens out
//!   of the same original characters (NFD "é" -> `e` + U+0301, NFKC "ﬁ" -> `f` + `i...`, byte
//!   pieces of a composed character), so none of them stands for a whole piece of the original
//!   text, and whichever got the characters' span would pair with the other side's token for the
//!   whole character;
//! - a token whose bytes spell something but whose span holds only droppable characters: its
//!   offsets lag behind dropped text and the next token's bytes, found right after, leave it
//!   there (a `▁fi` reported on a `\x08` before an `x`); it does not stand for the `\x08`;
//! - a byte piece (bytes that are not UTF-8 on their own): its span holds whole characters
//!   (falcon drops `\x05` and the lead byte `F2` of U+80000, and reports the first `80` piece
//!   on the `\x05`: it paired with the other side's `\x05`).
//! - the two parts of a normalized character whose second part is reported on a dropped
//!   character after it (t5-small's NFKC "ﬁ\x08": `f` on "ﬁ", `i` on the `\x08`;
//!   `spills_onto_dropped`): the first does not stand for all of "ﬁ", the second for none of it.
//! - a token of case 3 right before a combining mark (canonical reordering may have moved one of
//!   its marks past it: [`crate::marks`]);
//! - with the side's normalizer known ([`crate::drops`]), any token of case 3 that ends after a
//!   character it drops: its span rests on a lag inferred from the text ("\x08שלוםﬁ\x08":
//!   nothing after t5-small's `f` says it lags by the leading `\x08`).
//!
//! Rejected: trusting the offsets (the issue-10 bugs); searching the token's bytes anywhere ahead
//! (a normalized token's bytes can occur later in the text; and the search must stay bounded,
//! see [`SKIP_LIMIT`]); switching `trim_offsets` off inside the core (fixes only the core's own
//! tokenization, not offsets users hand to `align_encodings`, and not normalizers).

use crate::drops::Drops;
use crate::marks::is_combining_mark;
use crate::span::Span;
use lag::{advance_chars, confirms_lag, lag_chars, spills_onto_dropped};

// Offsets that lag behind characters a normalizer dropped (t5-small): detection and checks.
#[path = "place_lag.rs"]
mod lag;

/// How far (bytes past where the previous token ended) the search of rule 1 skips droppable
/// characters. Bounds the work per token, so a run of millions of spaces stays linear.
pub const SKIP_LIMIT: usize = 256;

/// A placed side: one span per token, and which tokens may not pair (empty: all may).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Placement {
    pub spans: Vec<Span>,
    pub unpairable: Vec<bool>,
}

/// Characters a tokenizer's normalizer may drop without a trace in its tokens: White_Space
/// (Unicode property, `char::is_whitespace`), controls (Cc), format characters and the other
/// default ignorables a normalizer removes (soft hyphen, zero-width and bidi marks, word joiners,
/// variation selectors, BOM, tags), and U+FFFD (BERT's `clean_text`).
pub fn droppable(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c,
            '\u{AD}' | '\u{34F}' | '\u{61C}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFD}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// True when `bytes` is valid UTF-8 made only of White_Space characters.
fn all_whitespace(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.chars().all(char::is_whitespace),
        Err(_) => false,
    }
}

/// Places every token on the text (rule 1, see the module docs). `offsets` are byte ranges already
/// snapped to characters; `token_bytes(i)` gives the bytes token `i` stands for, or `None` when
/// unknown. A special token's span starts where it sits (rule 4). Nothing known about the
/// normalizer: see [`place_tokens_with`].
pub fn place_tokens<'b>(
    text: &str,
    offsets: &[(usize, usize)],
    special: &[bool],
    token_bytes: impl Fn(usize) -> Option<&'b [u8]>,
) -> Placement {
    place_tokens_with(text, offsets, special, token_bytes, Drops::Unknown)
}

/// [`place_tokens`], told which characters the side's normalizer drops ([`crate::drops`]).
pub fn place_tokens_with<'b>(
    text: &str,
    offsets: &[(usize, usize)],
    special: &[bool],
    token_bytes: impl Fn(usize) -> Option<&'b [u8]>,
    drops: Drops,
) -> Placement {
    let mut spans = Vec::with_capacity(offsets.len());
    let mut unpairable = Vec::new();
    let mut pos = 0usize;
    // The last lag confirmed by `lag_chars`: the tokens after it lag as much (t5-small's lag is
    // that of the dropped characters the text starts with, the same for every later token).
    let mut carried = 0usize;
    // The token that the second part of a normalized character was reported on (see
    // `spills_onto_dropped`): unpairable when it is placed by case 3.
    let mut spilled = None;
    // Where the first character the normalizer is known to drop starts (found at the first
    // token of case 3 that asks): see `after_dropped` below.
    let mut first_dropped: Option<Option<usize>> = None;
    // Whether the last text token was placed by case 3 (its bytes not in the text).
    let mut prev_case3 = false;
    for (i, (&(bs, be), &sp)) in offsets.iter().zip(special).enumerate() {
        let span = if sp {
            // Added by a post-processor ((0, 0) offsets): it sits where the text so far ends.
            let s = bs.max(pos);
            if bs < be {
                // A special written in the text splits it before normalizing: the text after it
                // has its own lag (t5-small on "\x1f{0</s>你好": none after the `</s>`).
                carried = 0;
                Span::new(s, be.max(s))
            } else {
                Span::new(pos, pos)
            }
        } else {
            let own = token_bytes(i);
            // A piece of the characters of a previous token of case 3 (a normalizer made several
            // tokens of them: their reported ranges overlap) found wholly past them is not it:
            // nfkc-lower-trim's first `i` of "Ⅻ" (NFKC "xii") is not the text's "i" after it.
            // (After a token found by its bytes, the overlap may be a dummy-prefix `▁`.)
            let piece_past = |s: &Span| {
                bs < be && s.start() >= be && prev_case3 && overlaps_prev(offsets, special, i)
            };
            let found = own
                .and_then(|b| find(text, pos, bs, be, b))
                .filter(|s| !piece_past(s));
            prev_case3 = found.is_none();
            match found {
                Some(span) => span,
                None => {
                    let next = next_token(offsets, special, i);
                    let next_bytes = next.and_then(&token_bytes);
                    let shared = shares_characters(offsets, special, i);
                    // Pieces of one character start before `pos` without any lag. (A dummy-prefix
                    // `▁` reported on the same character stands for no text: no sharing here. Only
                    // a lone space placed empty: NFKC's `C5` piece of "Ǆ" placed empty is shared.)
                    let prev = (0..i).rev().find(|&k| !special[k]);
                    let prefix = prev.is_some_and(|k: usize| {
                        spans[k] == Span::new(pos, pos) && token_bytes(k) == Some(b" ".as_slice())
                    });
                    let lag = if shared && (!prefix || overlaps_next(offsets, special, i)) {
                        0
                    } else {
                        let holds =
                            |l| confirms_lag(text, (offsets, special), (&token_bytes, drops), i, l);
                        let found = lag_chars(text, offsets[i], pos, (own, drops), holds);
                        carried = found.unwrap_or(carried);
                        carried
                    };
                    let end =
                        normalized_end(text, (offsets, special), (next, next_bytes), i, pos, lag);
                    // A byte piece not found where it belongs cannot stand for the whole
                    // characters of its span.
                    let piece = own.is_some_and(|b| std::str::from_utf8(b).is_err());
                    let part = spilled == Some(i);
                    spilled = spills_onto_dropped(text, offsets, special, &token_bytes, i, lag);
                    // After a character the normalizer is known to drop, a span of case 3 rests
                    // on a guessed lag (t5-small's offsets lag behind dropped characters, and
                    // nothing may tell by how much: "\x08שלוםﬁ\x08"): no pair rather than a
                    // wrong one. (Without the tokenizer, `Drops::Unknown`, the guess stands.)
                    let after_dropped = match drops {
                        Drops::Known(set) => {
                            let first = *first_dropped.get_or_insert_with(|| set.first_in(text));
                            first.is_some_and(|d| d < end)
                        }
                        Drops::Unknown => false,
                    };
                    // Right before a combining mark, canonical reordering may have moved one of
                    // its own marks past that one ([`crate::marks`]: nfd-bpe's `E` of "È" + U+1CDC).
                    let before_mark = text.get(end..).and_then(|r| r.chars().next());
                    if shared
                        || piece
                        || part
                        || spilled.is_some()
                        || after_dropped
                        || before_mark.is_some_and(is_combining_mark)
                        || stands_for_dropped(text, pos, end, own)
                    {
                        if unpairable.is_empty() {
                            unpairable.resize(offsets.len(), false);
                        }
                        unpairable[i] = true;
                    }
                    Span::new(pos, end)
                }
            }
        };
        pos = span.end();
        spans.push(span);
    }
    Placement { spans, unpairable }
}

/// Whether bytes `b` lie at `at` (`Some(end)`), fully or without a leading (dummy-prefix) space.
#[inline(always)]
fn match_at(t: &[u8], at: usize, b: &[u8]) -> Option<usize> {
    if t.get(at..at + b.len()) == Some(b) {
        return Some(at + b.len());
    }
    match b.split_first() {
        Some((b' ', rest)) if t.get(at..at + rest.len()) == Some(rest) => Some(at + rest.len()),
        _ => None,
    }
}

/// Cases 1 and 2 of the module docs: the token's bytes at or just after `pos`, or at its offsets.
fn find(text: &str, pos: usize, bs: usize, be: usize, b: &[u8]) -> Option<Span> {
    let t = text.as_bytes();
    let limit = pos.saturating_add(SKIP_LIMIT);
    let mut at = pos;
    loop {
        if let Some(end) = match_at(t, at, b) {
            // Reaching the reported start: not an earlier copy of the same bytes. (A lone
            // dummy-prefix space matches empty anywhere and may stay where it is.) A piece of a
            // character found where the previous token ended must overlap its reported
            // characters: byte-level and byte-fallback pieces always do, while a normalizer's
            // piece (NFD's U+0323 lead byte) can equal a text byte just past them by chance.
            // After dropped characters the offsets lag (falcon drops a `\x05` its vocabulary
            // cannot spell and reports the next piece on it), so there they are no evidence.
            // But a match after skipped characters needs offsets that reach past `pos`: NFKC's
            // `4` of "¼" (reported on "¼") is not the "4" after the next space, nor NFD's
            // U+0300 lead byte (reported on "À") the lead byte of a U+0301 there.
            let whole = text.is_char_boundary(at) && text.is_char_boundary(end);
            let reaches = at == pos || be > pos || bs == be;
            if (end >= bs || end == at) && reaches && (whole || at < be || bs == be || at > pos) {
                return Some(Span::new(at, end));
            }
        }
        let c = match text.get(at..).and_then(|r| r.chars().next()) {
            Some(c) if droppable(c) && at < limit => c,
            _ => break,
        };
        at += c.len_utf8();
    }
    let s = bs.max(pos);
    // Positions up to `at` were tried above (with a weaker condition).
    if s > at {
        if let Some(end) = match_at(t, s, b) {
            if end <= be || all_whitespace(&t[be.max(s)..end]) {
                return Some(Span::new(s, end));
            }
        }
    }
    None
}

/// The next token that occupies text (non-special, or a special written in the text).
fn next_token(offsets: &[(usize, usize)], special: &[bool], i: usize) -> Option<usize> {
    (i + 1..offsets.len()).find(|&k| !special[k] || offsets[k].0 < offsets[k].1)
}

/// Case 3: where a token whose bytes are not in the text ends: where the next token's own bytes
/// are found (searched from the end of this token's offsets over the next token's reported
/// characters and droppable ones that are not whitespace (whitespace past them is the gap before
/// a later token: BERT's `##i` on "í i"), at most [`SKIP_LIMIT`] bytes: the next token's offsets
/// may lag, t5-small after a dropped `\x08`), else at the next token's reported start moved on by `lag`
/// characters (see [`lag_chars`]; t5-small's `<unk>` then NFKC `2` on "\x08{²": neither token's
/// bytes are in the text, and without the lag the `<unk>` ends on the `\x08` and `2` takes "{²").
fn normalized_end(
    text: &str,
    (offsets, special): (&[(usize, usize)], &[bool]),
    (next, next_bytes): (Option<usize>, Option<&[u8]>),
    i: usize,
    pos: usize,
    lag: usize,
) -> usize {
    let be = offsets[i].1;
    let floor = be.max(pos);
    // The search passes only over the next token's reported characters (its offsets lag by
    // what was dropped) and characters a normalizer may drop, so it cannot run into later text.
    // (By as much again as this token's own offsets lag behind `pos`: after several dropped
    // characters, t5-small reports every token that many characters early.)
    let byte_lag = pos.saturating_sub(offsets[i].0);
    let found = next.zip(next_bytes).and_then(|(k, nb)| {
        let reach = offsets[k].1.saturating_add(byte_lag);
        let (t, reach) = (
            text.as_bytes(),
            reach.max(advance_chars(text, offsets[k].1, lag)),
        );
        let last = floor.saturating_add(SKIP_LIMIT).min(t.len());
        // A droppable character that a later token is reported on was kept, not dropped: the
        // search stops there (nfd-bpe's `\x08` token on "dé\x08" + U+0301; without this `de`
        // took the `\x08` and the `é`'s U+0301 the text's).
        let kept_from = next_token(offsets, special, k).map_or(usize::MAX, |m| {
            let s = offsets[m].0;
            advance_chars(text, s, lag).max(s.saturating_add(byte_lag))
        });
        let (mut at, mut skipped) = (floor, false);
        while at <= last {
            // The match must reach into the next token's reported characters: an earlier copy
            // wholly before them is not it (Qwen's NFC `dé` for "e" + U+0301 reported on "de",
            // then U+0301 reported on the second U+0301: the first one is the `é`'s). It must
            // also start within them, unless they are empty or the search passed a dropped
            // character (their offsets may then lag by more than `lag` says): nfkc-lower-trim's
            // NFKC " " for "¸" on "A¸   " is not the text's space after the "¸".
            let (ks, ke) = offsets[k];
            let within = at < reach || ks == ke || skipped;
            let into = |end: usize| end > at && (end > ks || (ks == ke && end >= ks));
            if within && match_at(t, at, nb).is_some_and(into) {
                return Some(at);
            }
            match text.get(at..).and_then(|r| r.chars().next()) {
                Some(c) if at < reach || (droppable(c) && !c.is_whitespace() && at < kept_from) => {
                    skipped |= droppable(c) && !c.is_whitespace();
                    at += c.len_utf8()
                }
                None if at < reach => at += 1,
                _ => return None,
            }
        }
        None
    });
    let next = match (found, next) {
        (Some(at), _) => at,
        (None, Some(k)) => advance_chars(text, offsets[k].0, lag),
        (None, None) => text.len(),
    };
    // Whitespace just before the next token is not this token's. (`next` is a character
    // boundary; `floor` may not be, after a byte piece, so walk back from `next`.)
    let mut end = next;
    while end > floor {
        match text.get(..end).and_then(|h| h.chars().next_back()) {
            Some(c) if c.is_whitespace() && end - c.len_utf8() >= floor => end -= c.len_utf8(),
            _ => break,
        }
    }
    end.max(floor)
}

/// Whether bytes spell something: a character that is neither droppable nor U+FFFD.
fn spells(b: &[u8]) -> bool {
    String::from_utf8_lossy(b)
        .chars()
        .any(|c| !droppable(c) && c != '\u{FFFD}')
}

/// Whether a token of case 3 with known bytes that are not only droppable characters got a span
/// of droppable characters only (its offsets lag behind a dropped character and nothing after
/// locates it: t5-small's `▁fi` for "\x08ﬁ" reported on the `\x08`). It cannot stand for them.
fn stands_for_dropped(text: &str, pos: usize, end: usize, own: Option<&[u8]>) -> bool {
    own.is_some_and(spells) && text.get(pos..end).is_some_and(|s| s.chars().all(droppable))
}

/// Whether token `i`'s characters are shared with the previous or next text token (case 3's
/// unpairable tokens).
fn shares_characters(offsets: &[(usize, usize)], special: &[bool], i: usize) -> bool {
    overlaps_prev(offsets, special, i) || overlaps_next(offsets, special, i)
}

/// Whether token `i`'s reported characters overlap those of the previous text token.
fn overlaps_prev(offsets: &[(usize, usize)], special: &[bool], i: usize) -> bool {
    let (bs, be) = offsets[i];
    (0..i).rev().find(|&k| !special[k]).is_some_and(|k| {
        let (s, e) = offsets[k];
        s.max(bs) < e.min(be)
    })
}

/// Whether token `i`'s characters overlap the next text token's.
fn overlaps_next(offsets: &[(usize, usize)], special: &[bool], i: usize) -> bool {
    let (bs, be) = offsets[i];
    next_token(offsets, special, i).is_some_and(|k| offsets[k].0.max(bs) < offsets[k].1.min(be))
}

#[cfg(test)]
#[path = "place_tests.rs"]
mod tests;
