//! One error enum for the whole core. No PyO3 here: `python.rs` maps every variant to
//! `dskd_align.AlignmentError` (a `ValueError` subclass), so Python sees one exception class whose
//! message names the field at fault and the fix.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlignError {
    /// Two per-token arrays of one side disagree in length.
    LengthMismatch {
        side: &'static str,
        field: &'static str,
        expected: usize,
        got: usize,
    },
    /// A token's offsets do not fit the text (end beyond the text, or start after end).
    BadOffset {
        side: &'static str,
        index: usize,
        start: usize,
        end: usize,
        text_len: usize,
    },
    /// A token's offsets given from Python are negative (shown as given).
    NegativeOffset {
        side: &'static str,
        index: usize,
        start: i64,
        end: i64,
    },
    /// Offsets go backwards: token `index` starts before token `index - 1` started.
    DecreasingOffsets { side: &'static str, index: usize },
    /// A tokenizer definition (tokenizer.json) could not be used.
    Tokenizer(String),
    /// A text longer than the core's spans can address (`span::MAX_TEXT_BYTES`).
    TextTooLong { len: usize },
    /// A text longer than the core tokenizes in one piece (`tokenize::MAX_TOKENIZE_BYTES`).
    TooLongToTokenize { len: usize },
    /// An argument outside its domain (e.g. `num_threads == 0`).
    InvalidArgument(String),
}

impl fmt::Display for AlignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlignError::LengthMismatch {
                side,
                field,
                expected,
                got,
            } => write!(
                f,
                "{side}: `{field}` has {got} entries but `ids` has {expected}; pass one entry per \
                 token, all from the same encoding of the text"
            ),
            AlignError::BadOffset {
                side,
                index,
                start,
                end,
                text_len,
            } => write!(
                f,
                "{side}: token {index} has offsets ({start}, {end}) outside the text of {text_len} \
                 characters; the encoding does not belong to this text (encode exactly this text, \
                 and pass character offsets as HF fast tokenizers report them)"
            ),
            AlignError::NegativeOffset {
                side,
                index,
                start,
                end,
            } => write!(
                f,
                "{side}: token {index} has offsets ({start}, {end}); offsets are character \
                 positions in the text and cannot be negative (pass character offsets as HF fast \
                 tokenizers report them)"
            ),
            AlignError::DecreasingOffsets { side, index } => write!(
                f,
                "{side}: token {index} starts before token {} does; offsets must be \
                 non-decreasing along the sequence (was the encoding truncated with overflow, \
                 padded, or concatenated from several texts?)",
                index - 1
            ),
            AlignError::TextTooLong { len } => write!(
                f,
                "text of {len} bytes is longer than the {} bytes one alignment can cover; split \
                 it (per document or paragraph) and align the pieces",
                crate::span::MAX_TEXT_BYTES
            ),
            AlignError::TooLongToTokenize { len } => write!(
                f,
                "text of {len} bytes is longer than the {} bytes the core tokenizes in one piece \
                 (tokenizing peaks at ~400 bytes of memory per token, and a run of whitespace \
                 can be one token per byte); split it (per document or paragraph) and align the \
                 pieces",
                crate::tokenize::MAX_TOKENIZE_BYTES
            ),
            AlignError::Tokenizer(msg) => write!(f, "tokenizer: {msg}"),
            AlignError::InvalidArgument(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for AlignError {}

pub type Result<T> = std::result::Result<T, AlignError>;
