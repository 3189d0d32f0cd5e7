//! Rule 1 of ALIGNMENT.md: from a tokenizer's offsets to exact byte spans (rule 2, canonical
//! keys, is in `canonical.rs`).
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
