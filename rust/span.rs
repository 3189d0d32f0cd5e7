//! Rule 1 and 2 of ALIGNMENT.md: from a tokenizer's offsets to exact byte spans, and from byte
//! spans to canonical keys.
//!
//! Units: everything here is in UTF-8 bytes of the original text. Character offsets (what HF fast
//! tokenizers report to Python) are converted once with [`char_to_byte`]; byte offsets from the
//! Rust `tokenizers` crate are snapped outward to character boundaries with [`snap_to_chars`], which
//! is exactly what HF's own byte-to-char conversion does, so both paths see the same ranges.

use crate::error::{AlignError, Result};

/// The longest text the core aligns, in bytes (4 GiB less two values kept for the end markers of
/// `align`'s walk). Spans are stored as two `u32`: alignment streams through them, and half the
/// bytes per token measured 1.2-1.3x faster on corpus-sized batches (benches/align.rs).
pub const MAX_TEXT_BYTES: usize = u32::MAX as usize - 2;

/// Entry points call this before placing anything.
pub fn check_text_len(len: usize) -> Result<()> {
    if len > MAX_TEXT_BYTES {
        return Err(AlignError::TextTooLong { len });
    }
    Ok(())
}

/// `[start, end)` in bytes of a text of at most [`MAX_TEXT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// Both ends must be at most [`MAX_TEXT_BYTES`] (entry points check the text length).
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Self {
        debug_assert!(start <= MAX_TEXT_BYTES && end <= MAX_TEXT_BYTES);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline(always)]
    pub fn start(self) -> usize {
        self.start as usize
    }

    #[inline(always)]
    pub fn end(self) -> usize {
        self.end as usize
    }

    /// `start << 32 | end`: spans compare as one integer, in text order.
    #[inline(always)]
    pub fn packed(self) -> u64 {
        ((self.start as u64) << 32) | self.end as u64
    }
}

/// Byte offset of every character boundary: `table[c]` is where character `c` starts,
/// `table[n_chars]` is the text length.
pub fn char_to_byte(text: &str) -> Vec<usize> {
    let mut table: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
    table.push(text.len());
    table
}

/// Widens a byte range to whole characters (start down, end up).
pub fn snap_to_chars(text: &str, start: usize, end: usize) -> (usize, usize) {
    let mut s = start.min(text.len());
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    let mut e = end.clamp(s, text.len());
    while !text.is_char_boundary(e) {
        e += 1;
    }
    (s, e)
}

/// Checks one side's offsets (in any unit) against a text of `len` units: every range inside the
/// text, and non-special tokens never starting before the previous non-special token started.
/// Special tokens are exempt from ordering: post-processors report `(0, 0)` for an appended EOS.
pub fn validate_offsets(
    side: &'static str,
    offsets: &[(usize, usize)],
    special: &[bool],
    len: usize,
) -> Result<()> {
    if special.len() != offsets.len() {
        return Err(AlignError::LengthMismatch {
            side,
            field: "special_tokens_mask",
            expected: offsets.len(),
            got: special.len(),
        });
    }
    let mut last_start = 0usize;
    for (i, (&(s, e), &sp)) in offsets.iter().zip(special).enumerate() {
        if s > e || e > len {
            return Err(AlignError::BadOffset {
                side,
                index: i,
                start: s,
                end: e,
                text_len: len,
            });
        }
        if !sp {
            if s < last_start {
                return Err(AlignError::DecreasingOffsets { side, index: i });
            }
            last_start = s;
        }
    }
    Ok(())
}

/// True when `bytes` is valid UTF-8 made only of White_Space characters (Rust's
/// `char::is_whitespace` is exactly the Unicode White_Space property).
fn all_whitespace(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.chars().all(char::is_whitespace),
        Err(_) => false,
    }
}

/// Places every token on the text (rule 1). `offsets` are byte ranges already snapped to
/// characters; `token_bytes(i)` gives the bytes token `i` stands for, or `None` when unknown.
/// Returns one span per token; a special token's span starts where it sits (rule 4).
pub fn place_tokens<'b>(
    text: &str,
    offsets: &[(usize, usize)],
    special: &[bool],
    token_bytes: impl Fn(usize) -> Option<&'b [u8]>,
) -> Vec<Span> {
    let t = text.as_bytes();
    let mut spans = Vec::with_capacity(offsets.len());
    let mut pos = 0usize;
    for (i, (&(bs, be), &sp)) in offsets.iter().zip(special).enumerate() {
        let s = bs.max(pos);
        let span = if sp {
            // Added by a post-processor ((0, 0) offsets): it sits where the text so far ends.
            if bs < be {
                Span::new(s, be.max(s))
            } else {
                Span::new(pos, pos)
            }
        } else {
            match token_bytes(i) {
                Some(b) => locate(t, s, be, b),
                None => Span::new(s, be.max(s)),
            }
        };
        pos = span.end();
        spans.push(span);
    }
    spans
}

/// Finds token bytes `b` at `s` (the earliest place the token may start). The match may run past
/// the character range only over whitespace (byte-level BPE offsets are trimmed of it). A leading
/// space the text does not have (dummy prefix, `add_prefix_space`) stands for no bytes. When
/// neither fits, a normalizer changed the text and the character range is the span.
fn locate(t: &[u8], s: usize, be: usize, b: &[u8]) -> Span {
    let fits = |len: usize| -> bool {
        let end = s + len;
        end <= t.len()
            && t[s..end] == b[b.len() - len..]
            && (end <= be || all_whitespace(&t[be.max(s)..end]))
    };
    if fits(b.len()) {
        return Span::new(s, s + b.len());
    }
    if b.first() == Some(&b' ') && fits(b.len() - 1) {
        return Span::new(s, s + b.len() - 1);
    }
    Span::new(s, be.max(s))
}

/// Byte classes for a two-byte test of "a White_Space character may start here". Every
/// White_Space character is ASCII (9-13, 32) or starts with one of four lead bytes, each followed
/// by few second bytes: C2 85|A0, E1 9A, E2 80|81, E3 80. `WS_LEAD[b]` has bit `ASCII_WS` for
/// ASCII whitespace, else one bit per lead byte; `WS_SECOND[b]` has the bits of the leads `b` may
/// follow. The test is exact for ASCII and a superset otherwise (E3 80 80 is U+3000, E3 80 81 is
/// `、`), which only sends a token to the exact path.
const ASCII_WS: u8 = 16;
static WS_LEAD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b {
            0x09..=0x0D | 0x20 => ASCII_WS,
            0xC2 => 1,
            0xE1 => 2,
            0xE2 => 4,
            0xE3 => 8,
            _ => 0,
        };
        b += 1;
    }
    t
};
static WS_SECOND: [u8; 256] = {
    let mut t = [0u8; 256];
    t[0x85] = 1;
    t[0xA0] = 1;
    t[0x9A] = 2;
    t[0x80] = 4 | 8;
    t[0x81] = 4;
    t
};

/// The same for "a White_Space character may end here", read backwards: the last byte, then the
/// one before it. Last bytes: 85 (after C2, or E2 80), A0 (after C2), 80 (E1 9A, E2 80, E3 80),
/// 81-8A, A8, A9, AF (E2 80), 9F (E2 81). `WS_PREV[b]` has one bit per possible byte before.
static WS_LAST: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b {
            0x09..=0x0D | 0x20 => ASCII_WS,
            0x85 => 1 | 4,
            0xA0 => 1,
            0x80 => 2 | 4,
            0x81..=0x8A | 0xA8 | 0xA9 | 0xAF => 4,
            0x9F => 8,
            _ => 0,
        };
        b += 1;
    }
    t
};
static WS_PREV: [u8; 256] = {
    let mut t = [0u8; 256];
    t[0xC2] = 1;
    t[0x9A] = 2;
    t[0x80] = 4;
    t[0x81] = 8;
    t
};

/// Whether a White_Space character may start with bytes `b0 b1` (exact for ASCII).
#[inline(always)]
fn may_start_ws(b0: u8, b1: u8) -> bool {
    (WS_LEAD[b0 as usize] & (ASCII_WS | WS_SECOND[b1 as usize])) != 0
}

/// Whether a White_Space character may end with bytes `prev last` (exact for ASCII).
#[inline(always)]
fn may_end_ws(last: u8, prev: u8) -> bool {
    (WS_LAST[last as usize] & (ASCII_WS | WS_PREV[prev as usize])) != 0
}

/// `char::is_whitespace` restricted to ASCII: tab, LF, VT, FF, CR and space (not `\x1C`-`\x1F`).
#[inline(always)]
const fn is_ascii_white_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Rule 2: the span with whole leading and trailing White_Space characters removed; a span that
/// is only whitespace (or empty) keeps its raw range. Characters cut by the span (byte pieces of a
/// multi-byte character) are never trimmed.
#[inline(always)]
pub fn canonical_key(text: &str, span: Span) -> Span {
    let t = text.as_bytes();
    let (start, end) = (span.start(), span.end());
    // Fast path (almost every token of any script): at most one ASCII whitespace byte at each end
    // (`Ġword`, `▁word`, `word\n`, a lone space), and no whitespace character can start or end
    // what is left. Evaluated without branches on the bytes (whether a token starts with a space
    // is a coin flip a predictor cannot learn). Reads are clamped into the span, which can only
    // make a test say "maybe whitespace" and take the exact path below.
    if let Some(w) = t.get(start..end).filter(|w| !w.is_empty()) {
        let last = w.len() - 1;
        let lead = usize::from(is_ascii_white_space(w[0]) & (last > 0));
        let trail = usize::from(is_ascii_white_space(w[last]) & (last > lead));
        let z = last - trail;
        let starts_ws = may_start_ws(w[lead], w[(lead + 1).min(last)]);
        let ends_ws = may_end_ws(w[z], w[z.saturating_sub(1)]);
        // A one-byte span is its own key: either not whitespace, or whitespace kept raw.
        if !(starts_ws | ends_ws) | (last == 0) {
            return Span::new(start + lead, start + z + 1);
        }
    }
    trim_whitespace(text, span)
}

/// The exact path of [`canonical_key`]: trims whole White_Space characters one at a time. Kept
/// out of line so the fast path inlines into the callers' loops.
#[inline(never)]
fn trim_whitespace(text: &str, span: Span) -> Span {
    let t = text.as_bytes();
    let (mut s, mut e) = (span.start(), span.end());
    // ASCII fast path (most token ends): White_Space in ASCII is exactly 9..=13 and 32, and an
    // ASCII byte is always a whole character, so no decoding is needed until a byte >= 0x80.
    while s < e {
        let b = match t.get(s) {
            Some(&b) => b,
            None => break,
        };
        if b < 0x80 {
            if !is_ascii_white_space(b) {
                break;
            }
            s += 1;
            continue;
        }
        if !text.is_char_boundary(s) {
            break;
        }
        let c = match text[s..].chars().next() {
            Some(c) => c,
            None => break,
        };
        let n = c.len_utf8();
        if s + n > e || !c.is_whitespace() {
            break;
        }
        s += n;
    }
    while e > s {
        match t.get(e - 1) {
            // Ends after an ASCII byte: `e` is a character boundary.
            Some(&b) if b < 0x80 => {
                if !is_ascii_white_space(b) {
                    break;
                }
                e -= 1;
                continue;
            }
            Some(_) if text.is_char_boundary(e) => {}
            _ => break,
        }
        let mut c0 = e - 1;
        while c0 > 0 && (t[c0] & 0xC0) == 0x80 {
            c0 -= 1;
        }
        if c0 < s {
            break;
        }
        let c = text[c0..].chars().next().unwrap_or('x');
        if !c.is_whitespace() {
            break;
        }
        e = c0;
    }
    if s == e {
        span
    } else {
        Span::new(s, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_cyrillic_byte_pieces() {
        // GPT-2 on "Привет мир": `ĠÐ`=(6,8) and `¼`=(7,8) in characters.
        let text = "Привет мир";
        let c2b = char_to_byte(text);
        let offs = [(c2b[6], c2b[8]), (c2b[7], c2b[8])];
        let bytes: [&[u8]; 2] = [&[0x20, 0xD0], &[0xBC]];
        let spans = place_tokens(text, &offs, &[false, false], |i| Some(bytes[i]));
        assert_eq!(spans, vec![Span::new(12, 14), Span::new(14, 15)]);
    }

    #[test]
    fn dummy_prefix_stands_for_nothing() {
        let text = "日";
        let bytes: [&[u8]; 2] = [b" ", "日".as_bytes()];
        let spans = place_tokens(text, &[(0, 3), (0, 3)], &[false, false], |i| Some(bytes[i]));
        assert_eq!(spans, vec![Span::new(0, 0), Span::new(0, 3)]);
    }

    /// The definition before the ASCII fast path: decode every character.
    fn canonical_key_by_chars(text: &str, span: Span) -> Span {
        let (mut s, mut e) = (span.start(), span.end());
        while s < e && text.is_char_boundary(s) {
            let c = text[s..].chars().next().unwrap();
            if s + c.len_utf8() > e || !c.is_whitespace() {
                break;
            }
            s += c.len_utf8();
        }
        while e > s && text.is_char_boundary(e) {
            let (c0, c) = text[..e].char_indices().next_back().unwrap();
            if c0 < s || !c.is_whitespace() {
                break;
            }
            e = c0;
        }
        if s == e {
            span
        } else {
            Span::new(s, e)
        }
    }

    #[test]
    fn ascii_fast_path_equals_char_by_char_trim() {
        // Every White_Space character, plus non-whitespace characters sharing their lead or
        // last bytes (U+200B and U+2060 start with 0xE2, `р` and `Ā` end in 0x80, `、` starts like
        // U+3000, `ą` ends like U+0085, U+0800 ends in A0 80, `ᚠ` starts like U+1680).
        let text = " \t\u{3000} a\u{1c}\u{85}é \n\u{a0}\u{b}x\u{2028}🙂 \u{0}\r\u{1680}р\u{2000}\
                    \u{2005}\u{200a}\u{200b}Ā\u{2029}\u{202f}\u{205f}\u{2060}\u{c}、ą\u{800}ᚠ\u{80}\u{3000}";
        for s in 0..=text.len() {
            for e in s..=text.len() {
                let span = Span::new(s, e);
                assert_eq!(
                    canonical_key(text, span),
                    canonical_key_by_chars(text, span)
                );
            }
        }
    }

    #[test]
    fn key_trims_whole_whitespace_only() {
        let text = "a \u{3000}b\n";
        assert_eq!(canonical_key(text, Span::new(1, 6)), Span::new(5, 6));
        assert_eq!(canonical_key(text, Span::new(1, 5)), Span::new(1, 5));
        assert_eq!(canonical_key(text, Span::new(6, 7)), Span::new(6, 7));
    }

    #[test]
    fn text_length_is_checked_before_spans_are_narrowed() {
        assert!(check_text_len(MAX_TEXT_BYTES).is_ok());
        let err = check_text_len(MAX_TEXT_BYTES + 1).unwrap_err();
        assert_eq!(
            err,
            AlignError::TextTooLong {
                len: MAX_TEXT_BYTES + 1
            }
        );
        assert!(err.to_string().contains("split it"));
    }

    #[test]
    fn normalized_token_uses_char_range() {
        let text = "Héllo";
        let spans = place_tokens(text, &[(0, 6)], &[false], |_| Some(b"hello".as_slice()));
        assert_eq!(spans, vec![Span::new(0, 6)]);
    }
}
