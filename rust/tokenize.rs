//! Tokenizing inside the core with the HF `tokenizers` crate, fed the tokenizer's own JSON.
//!
//! Why: reading ids and offsets out of Python `Encoding` objects into numpy costs 15-25 % of
//! `encode_batch` itself (BENCHMARKS.md), which alone would break the 1.10x budget of aligning
//! against tokenizing. Tokenizing here skips the Python objects entirely, and the same crate on
//! the same JSON gives the same ids and offsets as the Python tokenizer (tests check it on every
//! real tokenizer and corpus). Truncation and padding stored in the JSON are switched off: an
//! alignment is always of the whole text.

use crate::drops::DropSet;
use crate::error::{AlignError, Result};
use crate::span::snap_to_chars;
use crate::vocab::{Spelling, TokenTable};
use std::str::FromStr;
use tokenizers::{NormalizedString, Normalizer, Tokenizer};

/// The longest text tokenized in one piece: 8 MiB. Measured (gpt2, `tokenizers` 0.23): encoding
/// peaks at ~350-400 bytes of memory per token (the crate's `Encoding` keeps a `String` per
/// token, plus BPE's work lists), and a run of spaces is one token per byte, so 8 MiB of spaces
/// peaks near 3.4 GB and 8 MiB of prose near 0.9 GB. A 20 MB text of spaces took 8.9 GB before
/// this limit; above it, [`AlignError::TooLongToTokenize`] says to split the text. (Texts handed
/// in already tokenized, `align_encodings`, are bounded by `span::MAX_TEXT_BYTES` only: placing
/// and aligning take ~100 bytes per token.)
pub const MAX_TOKENIZE_BYTES: usize = 8 << 20;

/// One side's encoding of one text, in the units the aligner uses.
#[derive(Debug, Default, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Byte ranges snapped to whole characters (the same ranges HF reports in characters).
    pub offsets: Vec<(usize, usize)>,
    pub special: Vec<bool>,
}

/// A tokenizer plus its token-to-bytes table and what its normalizer drops.
pub struct CoreTokenizer {
    tok: Tokenizer,
    pub table: TokenTable,
    pub drops: DropSet,
}

impl CoreTokenizer {
    pub fn from_json(json: &str) -> Result<CoreTokenizer> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
            AlignError::Tokenizer(format!("not a tokenizer.json: not valid JSON ({e})"))
        })?;
        let mut tok = Tokenizer::from_str(json).map_err(|e| {
            AlignError::Tokenizer(format!(
                "the `tokenizers` crate could not load this tokenizer.json ({e}); is it from a \
                 much newer `tokenizers` release?"
            ))
        })?;
        tok.with_truncation(None)
            .map_err(|e| AlignError::Tokenizer(e.to_string()))?;
        tok.with_padding(None);
        let spelling = Spelling::from_json(&value);
        let added_dec = tok.get_added_tokens_decoder();
        let vocab: Vec<(String, u32)> = tok.get_vocab(false).into_iter().collect();
        // The unknown token stands for text the model could not spell (ALIGNMENT.md rule 1:
        // its span is its character range), so it is a text token with unknown bytes even where
        // the tokenizer lists it as a special added token (BERT `[UNK]`, T5 `<unk>`).
        let unk_id = spelling
            .unk_token
            .as_deref()
            .and_then(|u| tok.token_to_id(u));
        let added: Vec<(String, u32, bool)> = added_dec
            .iter()
            .filter(|(&id, _)| Some(id) != unk_id)
            .map(|(&id, t)| (t.content.clone(), id, t.special))
            .collect();
        let table = TokenTable::build(&spelling, &vocab, &added)?;
        let drops = match tok.get_normalizer() {
            Some(n) => DropSet::of(|c| {
                let mut s = NormalizedString::from(c);
                n.normalize(&mut s).ok().map(|()| s.get().to_owned())
            }),
            None => DropSet::default(),
        };
        Ok(CoreTokenizer { tok, table, drops })
    }

    /// Encodes one text. Special = added by the post-processor or a special added token (also
    /// where it occurs in the text, which HF's mask leaves 0: a control token is not text to
    /// align); the unknown token is never special (see `from_json`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Encoded> {
        if text.len() > MAX_TOKENIZE_BYTES {
            return Err(AlignError::TooLongToTokenize { len: text.len() });
        }
        let enc = self
            .tok
            .encode(text, add_special_tokens)
            .map_err(|e| AlignError::Tokenizer(format!("encoding failed: {e}")))?;
        let ids = enc.get_ids().to_vec();
        let offsets = enc
            .get_offsets()
            .iter()
            .map(|&(s, e)| snap_to_chars(text, s, e))
            .collect();
        let special = enc
            .get_special_tokens_mask()
            .iter()
            .zip(&ids)
            .map(|(&m, &id)| m != 0 || self.table.is_special(id))
            .collect();
        Ok(Encoded {
            ids,
            offsets,
            special,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }
}
