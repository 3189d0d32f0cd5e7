//! Byte spans and the offsets they start from (rule 1 of ALIGNMENT.md: where each token lies is
//! decided in `place.rs`, re-exported here; rule 2, canonical keys, is in `canonical.rs`).
//!
//! Units: everything here is in UTF-8 bytes of the original text. Character offsets (what HF fast
//! tokenizers report to Python) are converted once with [`char_to_byte`]; byte offsets from the
//! Rust `tokenizers` crate are snapped outward to character boundaries with [`snap_to_chars`], which
//! is exactly what HF's own byte-to-char conversion does, so both paths see the same ranges.

use crate::error::{AlignError, Result};
pub use crate::place::{place_tokens, Placement};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
