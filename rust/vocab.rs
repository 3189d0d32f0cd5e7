//! Token-to-bytes tables: what text each vocabulary entry stands for, built once per tokenizer.
//!
//! How a vocabulary spells bytes is read off the tokenizer definition (tokenizer.json):
//! - byte-level BPE (GPT-2, Qwen, Llama-3, RoBERTa): every character is one byte through the
//!   GPT-2 byte-to-unicode map (`Ġ` = 0x20, `Ċ` = 0x0A, ...);
//! - SentencePiece style (Llama-2, Mistral, Gemma, T5): the Metaspace replacement (`▁`) is a space,
//!   and with byte fallback `<0xNN>` is the single byte NN;
//! - WordPiece (BERT): the continuing-subword prefix (`##`) stands for nothing;
//! - added tokens (special or not) are literal text, matched before any of the above.
//!
//! Entries whose bytes cannot be known (the unknown token, byte-level entries outside the map)
//! are `None`; the aligner then falls back to the token's character range.

use crate::error::{AlignError, Result};
use serde_json::Value;

/// The GPT-2 byte-to-unicode map, inverted: `char -> byte` for the 256 code points it uses.
fn byte_level_decoder() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (0x21..=0x7E)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut n = 0u32;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .iter()
        .zip(chars)
        .filter_map(|(&b, c)| char::from_u32(c).map(|c| (c, b as u8)))
        .collect()
}

/// How the vocabulary spells bytes, read from the tokenizer definition.
#[derive(Debug, Default, Clone)]
pub struct Spelling {
    pub byte_level: bool,
    pub metaspace: Option<char>,
    pub byte_fallback: bool,
    pub subword_prefix: Option<String>,
    pub word_suffix: Option<String>,
    pub unk_token: Option<String>,
}

/// Visits a component and the members of `Sequence` components.
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    if v.is_null() {
        return;
    }
    out.push(v);
    for key in ["pretokenizers", "decoders", "normalizers"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            for m in list {
                walk(m, out);
            }
        }
    }
}

impl Spelling {
    pub fn from_json(json: &Value) -> Spelling {
        let mut parts = vec![];
        walk(&json["pre_tokenizer"], &mut parts);
        walk(&json["decoder"], &mut parts);
        let model = &json["model"];
        let mut sp = Spelling::default();
        for p in parts {
            match p["type"].as_str() {
                Some("ByteLevel") => sp.byte_level = true,
                Some("Metaspace") => {
                    sp.metaspace = p["replacement"].as_str().and_then(|s| s.chars().next());
                }
                Some("ByteFallback") => sp.byte_fallback = true,
                Some("Replace") if p["content"].as_str() == Some(" ") => {
                    if let Some(c) = p["pattern"]["String"]
                        .as_str()
                        .and_then(|s| s.chars().next())
                    {
                        sp.metaspace = Some(c);
                    }
                }
                _ => {}
            }
        }
        sp.byte_fallback |= model["byte_fallback"].as_bool() == Some(true);
        sp.subword_prefix = model["continuing_subword_prefix"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        sp.word_suffix = model["end_of_word_suffix"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        sp.unk_token = model["unk_token"].as_str().map(str::to_owned).or_else(|| {
            // Unigram names its unknown token by id: `"unk_id": 2` into `"vocab": [[piece, score]]`.
            let id = model["unk_id"].as_u64()? as usize;
            model["vocab"].get(id)?.get(0)?.as_str().map(str::to_owned)
        });
        sp
    }
}

/// `<0xNN>` -> NN.
fn byte_fallback_piece(tok: &str) -> Option<u8> {
    let hex = tok.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Bytes of every token id, flat: `data[starts[id]..starts[id + 1]]`, `known[id]` false for `None`.
#[derive(Debug, Default, Clone)]
pub struct TokenTable {
    data: Vec<u8>,
    starts: Vec<usize>,
    known: Vec<bool>,
    special: Vec<bool>,
}

impl TokenTable {
    /// `vocab` is every (token string, id) of the model; `added` every added token as
    /// (content, id, special). Added tokens override model entries with the same id.
    pub fn build(
        spelling: &Spelling,
        vocab: &[(String, u32)],
        added: &[(String, u32, bool)],
    ) -> Result<TokenTable> {
        let max_id = vocab
            .iter()
            .map(|v| v.1)
            .chain(added.iter().map(|a| a.1))
            .max()
            .map_or(0, |m| m as usize + 1);
        if max_id > 16_000_000 {
            return Err(AlignError::Tokenizer(format!(
                "token id {max_id} is implausibly large for a vocabulary"
            )));
        }
        let mut entries: Vec<Option<Vec<u8>>> = vec![None; max_id];
        let mut special = vec![false; max_id];
        let bl = if spelling.byte_level {
            Some(byte_level_decoder())
        } else {
            None
        };
        for (tok, id) in vocab {
            entries[*id as usize] = spell(spelling, bl.as_ref(), tok);
        }
        for (content, id, sp) in added {
            entries[*id as usize] = Some(content.as_bytes().to_vec());
            special[*id as usize] = *sp;
        }
        let mut t = TokenTable {
            data: vec![],
            starts: vec![0],
            known: vec![],
            special,
        };
        for e in entries {
            t.known.push(e.is_some());
            t.data.extend(e.unwrap_or_default());
            t.starts.push(t.data.len());
        }
        Ok(t)
    }

    /// Bytes token `id` stands for, `None` when unknown or out of range.
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if i < self.known.len() && self.known[i] {
            Some(&self.data[self.starts[i]..self.starts[i + 1]])
        } else {
            None
        }
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Number of ids covered (max id + 1).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The bytes one model-vocabulary entry stands for.
fn spell(
    sp: &Spelling,
    bl: Option<&std::collections::HashMap<char, u8>>,
    tok: &str,
) -> Option<Vec<u8>> {
    if sp.unk_token.as_deref() == Some(tok) {
        return None;
    }
    let mut s = tok;
    if let Some(p) = &sp.subword_prefix {
        if s.len() > p.len() {
            s = s.strip_prefix(p.as_str()).unwrap_or(s);
        }
    }
    if let Some(suf) = &sp.word_suffix {
        if s.len() > suf.len() {
            s = s.strip_suffix(suf.as_str()).unwrap_or(s);
        }
    }
    if let Some(map) = bl {
        return s.chars().map(|c| map.get(&c).copied()).collect();
    }
    if sp.byte_fallback {
        if let Some(b) = byte_fallback_piece(s) {
            return Some(vec![b]);
        }
    }
    Some(match sp.metaspace {
        Some(m) => s.replace(m, " ").into_bytes(),
        None => s.as_bytes().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_map_roundtrips_256_bytes() {
        let m = byte_level_decoder();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'!'], b'!');
    }

    #[test]
    fn unigram_unk_is_named_by_id() {
        let json: Value = serde_json::from_str(
            r#"{"model": {"unk_id": 1, "vocab": [["<pad>", 0.0], ["<unk>", 0.0]]}}"#,
        )
        .unwrap();
        let sp = Spelling::from_json(&json);
        assert_eq!(sp.unk_token.as_deref(), Some("<unk>"));
        let t = TokenTable::build(&sp, &[("<unk>".into(), 1)], &[]).unwrap();
        assert_eq!(t.bytes(1), None);
    }

    #[test]
    fn spellings() {
        let sp = Spelling {
            metaspace: Some('▁'),
            byte_fallback: true,
            ..Default::default()
        };
        let vocab = vec![("▁hi".to_string(), 0), ("<0x0A>".to_string(), 1)];
        let t = TokenTable::build(&sp, &vocab, &[("<s>".into(), 2, true)]).unwrap();
        assert_eq!(t.bytes(0), Some(b" hi".as_slice()));
        assert_eq!(t.bytes(1), Some(b"\n".as_slice()));
        assert!(t.is_special(2) && !t.is_special(0));
        assert_eq!(t.bytes(7), None);
    }
}
