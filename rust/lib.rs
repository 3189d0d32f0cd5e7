//! dskd-align core: exact token alignment between two tokenizations of one text.
//!
//! # Design notes
//! - **Units.** Everything is placed on UTF-8 *bytes* of the text (ALIGNMENT.md rule 1): character
//!   offsets cannot say which byte of a multi-byte character a byte-level or byte-fallback piece
//!   stands for, the token's own bytes (from [`vocab::TokenTable`]) can.
//! - **Placement (rule 1, revised in issue 10).** Offsets are a hint, the span follows the token's
//!   own bytes ([`place`]): trimmed offsets (GPT-NeoX/Pythia, RoBERTa) and offsets shifted by
//!   characters a normalizer dropped are recovered from the bytes; a token whose bytes are not in
//!   the text (a normalizer changed it) spans from where the previous token ended to where the
//!   next starts; several such tokens made from the same characters (NFD `e` + U+0301) are
//!   *unpairable*: in chunks, never in pairs. Chosen over switching `trim_offsets` off inside the
//!   core: offsets users hand to `align_encodings` are trimmed too, and normalizers are not
//!   post-processors. The same function places core-tokenized and user-given encodings.
//! - **Rule 5 as coded** (`walk.rs`): every pair is a 1x1 chunk; a 1x1 chunk of text tokens is a
//!   pair exactly when their keys are equal and both may pair. Whitespace-only tokens of different
//!   lengths ("      C": 5 spaces + ` C` against 6 spaces + `C`) form a 1x1 chunk that is no pair:
//!   a whitespace-only key is its raw span, and the two stand for different text.
//! - **Algorithm.** [`span::place_tokens`] walks each side once (O(n) plus the token's bytes);
//!   [`align::align`] walks both sides once more: the chunk walk meets every exact pair at a
//!   chunk start, so pairs and chunks come out of one pass (a merge is kept only for the rare
//!   repeated empty keys). O(n + m) time, no hashing, no string comparison.
//! - **Speed of `align`** (benches/align.rs; measured with `perf` and a scratch driver): spans are
//!   two `u32` (half the bytes to stream); a key is one `u64`, with end markers so cuts need no
//!   bounds checks; keys are computed lazily, only where raw spans of the two sides differ (most
//!   tokens of prose pair with an identical raw span, and a key costs more than the walk's step
//!   for such a token); the key's fast path trims one ASCII whitespace byte at each end without
//!   branches and takes a two-byte test for every other White_Space character.
//! - **Tokenizing inside the core** ([`tokenize`]): measured, reading offsets out of Python
//!   `Encoding`s into numpy costs 15-25 % of `encode_batch`, so the fast path tokenizes here with the
//!   `tokenizers` crate on the tokenizer's own JSON. Python encodings are still accepted
//!   (`align_encodings`) for tokenizers that are not HF ones.
//! - **Allocator.** mimalloc as the global allocator of the extension (feature `mimalloc`): the
//!   same tokenize+align loop ran in 283 ms with glibc malloc and 172 ms with mimalloc (1000 Dolly
//!   texts, qwen2.5 + gpt2, one core), which puts it below `encode_batch` of the Python wheel.
//! - **Threads.** [`batch`] splits a batch into `num_threads` contiguous parts on scoped threads
//!   (default 1). There is no global pool: a pool inherited through `fork` by DataLoader workers
//!   deadlocks, scoped threads cannot be inherited.
//! - **Errors.** Every failure is an [`error::AlignError`]; no `unwrap` on input-dependent data, so
//!   nothing panics on user input (a panic would reach Python as `BaseException`). `fuzz/` holds
//!   `cargo fuzz` targets for placement and the batch entry point (README, Development).
//! - **Size limits.** A text is at most [`span::MAX_TEXT_BYTES`] (u32 spans) and, where the core
//!   tokenizes it, [`tokenize::MAX_TOKENIZE_BYTES`] (8 MiB: the `tokenizers` crate peaks at
//!   ~400 bytes per token, one token per byte on whitespace runs); placement is linear in the
//!   tokens plus a bounded search ([`place::SKIP_LIMIT`]).
//! - Rejected: comparing token strings (the paper's walk; breaks across spelling families),
//!   a `HashMap` from spans to indices (slower than the merge and needs no ordering proof),
//!   rayon (a global pool, see above).

pub mod align;
pub mod batch;
pub mod canonical;
pub mod drops;
pub mod error;
mod keys;
pub mod marks;
pub mod place;
pub mod span;
pub mod tokenize;
pub mod vocab;
mod walk;

#[cfg(feature = "python")]
mod python;

// Tokenization makes many small allocations (words, pieces, offsets); with glibc malloc they were
// ~40 % of a tokenize+align call. mimalloc serves only this library's Rust allocations (numpy
// arrays handed out without a copy are freed through it too, by rust-numpy's owner object).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use align::{AlignOut, Placed};
use drops::Drops;
use span::Span;
use tokenize::Encoded;
use vocab::TokenTable;

/// One side's tokens, placed: ids, byte spans, special flags, and the tokens that may not pair
/// (`place.rs`; empty when all may).
#[derive(Debug, Default, Clone)]
pub struct SideOut {
    pub ids: Vec<u32>,
    pub spans: Vec<Span>,
    pub special: Vec<bool>,
    pub unpairable: Vec<bool>,
}

/// The alignment of one text.
#[derive(Debug, Default, Clone)]
pub struct RowOut {
    pub teacher: SideOut,
    pub student: SideOut,
    pub align: AlignOut,
}

/// Places one encoding on the text; `table` gives token bytes by id (`None`: character ranges),
/// `drops` what the side's normalizer drops. The text is at most [`span::MAX_TEXT_BYTES`] long
/// (entry points check with [`span::check_text_len`]).
pub fn place(text: &str, enc: Encoded, table: Option<&TokenTable>, drops: Drops) -> SideOut {
    let bytes = |i: usize| table.and_then(|t| t.bytes(enc.ids[i]));
    let p = place::place_tokens_with(text, &enc.offsets, &enc.special, bytes, drops);
    SideOut {
        ids: enc.ids,
        spans: p.spans,
        special: enc.special,
        unpairable: p.unpairable,
    }
}

/// Aligns two placed sides of the same text.
pub fn align_placed(text: &str, teacher: SideOut, student: SideOut) -> RowOut {
    let align = align::align(
        text,
        &Placed {
            spans: &teacher.spans,
            special: &teacher.special,
            unpairable: &teacher.unpairable,
        },
        &Placed {
            spans: &student.spans,
            special: &student.special,
            unpairable: &student.unpairable,
        },
    );
    RowOut {
        teacher,
        student,
        align,
    }
}
