//! The batch entry point (`batch::align_texts`) on fuzzed texts with real tokenizers.
//!
//! Tokenizers: those in `$DSKD_SHARED/tokenizers` (default `../shared/tokenizers` from the
//! repository root) among a fixed list of families, else two built here (byte-level BPE with
//! trimmed offsets, and the same without). Checks: no error or panic on any valid text; the
//! result does not depend on the thread count; and the offset-free oracle of
//! `tests/test_oracle.py`: where a side's tokens spell the text (each token's own bytes where the
//! previous one ended, a dummy-prefix space aside), its spans are exactly that tiling.
#![no_main]

use dskd_align::batch::{align_texts, BatchOut};
use dskd_align::tokenize::CoreTokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const FAMILIES: &[&str] = &[
    "gpt2",
    "gpt-neox-20b",
    "roberta-base",
    "llama2",
    "llama3",
    "t5-small",
    "bert-base-uncased",
    "qwen2.5",
    "phi-3-mini",
];

/// A byte-level BPE without merges: every byte its own token.
fn byte_level_json(trim_offsets: bool) -> String {
    let mut vocab = serde_json::Map::new();
    let printable: Vec<u32> = (0x21..=0x7E).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable.contains(&b) {
            b
        } else {
            n += 1;
            255 + n
        };
        let ch = char::from_u32(c).unwrap().to_string();
        vocab.insert(ch, serde_json::json!(b));
    }
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false,
                           "trim_offsets": trim_offsets, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
    .to_string()
}

fn tokenizers() -> &'static [CoreTokenizer] {
    static TOKS: OnceLock<Vec<CoreTokenizer>> = OnceLock::new();
    TOKS.get_or_init(|| {
        let shared = std::env::var("DSKD_SHARED").unwrap_or_else(|_| "../shared".into());
        let mut out: Vec<CoreTokenizer> = FAMILIES
            .iter()
            .filter_map(|f| {
                let path = format!("{shared}/tokenizers/{f}/tokenizer.json");
                let json = std::fs::read_to_string(path).ok()?;
                Some(CoreTokenizer::from_json(&json).expect("a shared tokenizer loads"))
            })
            .collect();
        for trim in [true, false] {
            out.push(CoreTokenizer::from_json(&byte_level_json(trim)).expect("built tokenizer"));
        }
        out
    })
}

fn same(a: &BatchOut, b: &BatchOut) -> bool {
    a.pairs == b.pairs
        && a.pair_splits == b.pair_splits
        && [(&a.teacher, &b.teacher), (&a.student, &b.student)]
            .iter()
            .all(|(x, y)| {
                x.ids == y.ids
                    && x.spans == y.spans
                    && x.special == y.special
                    && x.chunks == y.chunks
                    && x.splits == y.splits
            })
}

/// The tiling of `raw` by the tokens' own bytes, when they spell it.
fn true_spans(raw: &[u8], bytes: &[Option<&[u8]>]) -> Option<Vec<(i64, i64)>> {
    let mut pos = 0usize;
    let mut out = vec![];
    for b in bytes {
        let b = (*b)?;
        let len = if raw[pos..].starts_with(b) {
            b.len()
        } else if b.first() == Some(&b' ') && raw[pos..].starts_with(&b[1..]) {
            b.len() - 1
        } else {
            return None;
        };
        out.push((pos as i64, (pos + len) as i64));
        pos += len;
    }
    (pos == raw.len()).then_some(out)
}

fn oracle(text: &str, tok: &CoreTokenizer, side: &dskd_align::batch::SideFlat, row: usize) {
    let (a, b) = (side.splits[row] as usize, side.splits[row + 1] as usize);
    let bytes: Vec<Option<&[u8]>> = side.ids[a..b]
        .iter()
        .map(|&id| tok.table.bytes(id as u32))
        .collect();
    if let Some(truth) = true_spans(text.as_bytes(), &bytes) {
        let got: Vec<(i64, i64)> = side.spans[2 * a..2 * b]
            .chunks(2)
            .map(|c| (c[0], c[1]))
            .collect();
        assert_eq!(got, truth, "spans of {text:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let toks = tokenizers();
    if data.len() < 3 {
        return;
    }
    let (t, s) = (
        &toks[data[0] as usize % toks.len()],
        &toks[data[1] as usize % toks.len()],
    );
    let add_special = data[2] & 1 == 1;
    let joined = String::from_utf8_lossy(&data[3..]);
    let texts: Vec<&str> = joined.split('\u{1}').take(8).collect();
    let one = align_texts(t, s, &texts, add_special, 1).expect("valid texts align");
    let many = align_texts(t, s, &texts, add_special, 2 + (data[2] as usize >> 1) % 3)
        .expect("valid texts align");
    assert!(same(&one, &many), "thread count changed the result");
    if !add_special {
        for (row, text) in texts.iter().enumerate() {
            oracle(text, t, &one.teacher, row);
            oracle(text, s, &one.student, row);
        }
    }
});
