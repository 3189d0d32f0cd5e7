//! Alignment from precomputed spans, one core: `align::align` and `span::place_tokens`.
//!
//! Inputs are built once, outside the timed loop: real texts (Dolly instruction+context, code,
//! UDHR) tokenized by the crate's own `CoreTokenizer` on real tokenizer.json files from
//! `../shared` (or `$DSKD_SHARED`). Without them a synthetic tokenizer-like splitter stands in
//! (two different piece-length patterns over the same pseudo-random words), so the bench always
//! runs. Throughput is reported in tokens (teacher + student) per second.
//!
//! Groups: `align` passes over the whole corpus (spans stream from memory, as when aligning a
//! dataset's stored spans); `align-batch` repeats a batch of 64 texts spread over the corpus, whose
//! spans stay in cache (as in a collator, which aligns a batch right after tokenizing it);
//! `place` is rule 1 over the whole corpus; `tokenize` is the core's tokenization of the same
//! corpus (both sides), the in-run reference for ratios.
//!
//! Run: `cargo bench --bench align --features mimalloc` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dskd_align::align::{align, Placed};
use dskd_align::drops::Drops;
use dskd_align::span::place_tokens;
use dskd_align::tokenize::{CoreTokenizer, Encoded};
use dskd_align::{place, SideOut};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Target number of UTF-8 bytes per corpus (about 0.15-0.3 M tokens per side).
const CORPUS_BYTES: usize = 600_000;

/// One text, both sides encoded (for placement) and placed (for alignment).
struct Row {
    text: String,
    enc: [Encoded; 2],
    placed: [SideOut; 2],
}

struct Case {
    name: String,
    rows: Vec<Row>,
    tables: Option<Arc<[CoreTokenizer; 2]>>,
}

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DSKD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.join("tokenizers").is_dir().then_some(dir)
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    raw.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn take_bytes(texts: impl Iterator<Item = String>) -> Vec<String> {
    let mut total = 0;
    texts
        .filter(|t| !t.is_empty())
        .take_while(|t| {
            total += t.len();
            total <= CORPUS_BYTES
        })
        .collect()
}

/// Real corpora: (name, texts).
fn corpora(shared: &Path) -> Vec<(&'static str, Vec<String>)> {
    let c = shared.join("corpora");
    let dolly = jsonl(&c.join("dolly/dolly15k_instruction_context.jsonl"))
        .into_iter()
        .map(|v| {
            let ins = v["instruction"].as_str().unwrap_or_default();
            let ctx = v["context"].as_str().unwrap_or_default();
            if ctx.is_empty() {
                ins.to_string()
            } else {
                format!("{ins}\n\n{ctx}")
            }
        });
    // Code: HumanEval prompt+solution, then cpython modules cut into 50-line chunks.
    let humaneval = jsonl(&c.join("code/HumanEval.jsonl")).into_iter().map(|v| {
        let p = v["prompt"].as_str().unwrap_or_default();
        format!(
            "{p}{}",
            v["canonical_solution"].as_str().unwrap_or_default()
        )
    });
    let cpython: Vec<String> = jsonl(&c.join("code/cpython311_stdlib_sample.jsonl"))
        .iter()
        .flat_map(|v| {
            let lines: Vec<&str> = v["text"].as_str().unwrap_or_default().lines().collect();
            lines
                .chunks(50)
                .map(|ch| ch.join("\n") + "\n")
                .collect::<Vec<_>>()
        })
        .collect();
    let udhr = jsonl(&c.join("multilingual/udhr_selected.jsonl"))
        .into_iter()
        .flat_map(|v| {
            v["paragraphs"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        });
    vec![
        ("dolly", take_bytes(dolly)),
        ("code", take_bytes(humaneval.chain(cpython))),
        ("multilingual", take_bytes(udhr)),
    ]
}

fn real_cases(shared: &Path) -> Vec<Case> {
    let load = |name: &str| -> CoreTokenizer {
        let path = shared.join("tokenizers").join(name).join("tokenizer.json");
        let json = std::fs::read_to_string(&path).expect("read tokenizer.json");
        CoreTokenizer::from_json(&json).expect("load tokenizer.json")
    };
    let corpora = corpora(shared);
    let mut cases = vec![];
    for (t, s) in [("qwen2.5", "gpt2"), ("qwen2.5", "llama2")] {
        let toks = Arc::new([load(t), load(s)]);
        for (corpus, texts) in &corpora {
            let rows = texts
                .iter()
                .map(|text| {
                    let enc = [0, 1].map(|k| toks[k].encode(text, false).expect("encode"));
                    let placed = [0, 1].map(|k| {
                        place(
                            text,
                            enc[k].clone(),
                            Some(&toks[k].table),
                            Drops::Known(&toks[k].drops),
                        )
                    });
                    Row {
                        text: text.clone(),
                        enc,
                        placed,
                    }
                })
                .collect();
            cases.push(Case {
                name: format!("{t}-{s}/{corpus}"),
                rows,
                tables: Some(toks.clone()),
            });
        }
    }
    cases
}

/// Synthetic stand-in: words of 1-12 ASCII letters, teacher pieces of <= 4 bytes, student pieces
/// of <= 6 bytes, each word's first piece carrying the leading space (as byte-level BPE does).
fn synthetic_case() -> Case {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut texts = vec![];
    for _ in 0..1000 {
        let mut text = String::new();
        for w in 0..100 {
            if w > 0 {
                text.push(if next() % 10 == 0 { '\n' } else { ' ' });
            }
            for _ in 0..1 + next() % 12 {
                text.push((b'a' + (next() % 26) as u8) as char);
            }
        }
        texts.push(text);
    }
    let split = |text: &str, max: usize| -> Encoded {
        let mut offsets = vec![];
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let mut j = i + 1; // the leading space or newline goes with the word
            while j < b.len() && j - i < max && b[j].is_ascii_alphabetic() {
                j += 1;
            }
            offsets.push((i, j));
            i = j;
        }
        Encoded {
            ids: vec![0; offsets.len()],
            special: vec![false; offsets.len()],
            offsets,
        }
    };
    let rows = texts
        .into_iter()
        .map(|text| {
            let enc = [split(&text, 4), split(&text, 6)];
            let placed = [0, 1].map(|k| place(&text, enc[k].clone(), None, Drops::Unknown));
            Row { text, enc, placed }
        })
        .collect();
    Case {
        name: "synthetic".into(),
        rows,
        tables: None,
    }
}

/// Aligns every row once.
fn align_rows(rows: &[&Row]) {
    for r in rows {
        let [t, s] = &r.placed;
        black_box(align(
            black_box(&r.text),
            &Placed {
                spans: &t.spans,
                special: &t.special,
                unpairable: &t.unpairable,
            },
            &Placed {
                spans: &s.spans,
                special: &s.special,
                unpairable: &s.unpairable,
            },
        ));
    }
}

fn tokens(rows: &[&Row]) -> u64 {
    rows.iter()
        .map(|r| (r.placed[0].ids.len() + r.placed[1].ids.len()) as u64)
        .sum()
}

/// The core's clock in GHz, from a chain of dependent rotate+xor steps (two one-cycle
/// instructions each on x86-64 and AArch64 cores), so throughput converts to cycles per token:
/// VM models and turbo make the nominal clock useless.
fn clock_ghz() -> f64 {
    let steps = 200_000_000u64;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut x = black_box(0x1234_5678u64);
        let t = std::time::Instant::now();
        for _ in 0..steps {
            x = x.rotate_left(7) ^ 0x9E37;
        }
        black_box(x);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * steps as f64 / best / 1e9
}

fn bench(c: &mut Criterion) {
    let ghz = clock_ghz();
    eprintln!(
        "core clock ~{ghz:.2} GHz: 200 M tokens/s = {:.1} cycles per token",
        ghz * 5.0
    );
    let cases = match shared_dir() {
        Some(dir) => real_cases(&dir),
        None => vec![synthetic_case()],
    };
    for (group, batch) in [("align", None), ("align-batch", Some(64))] {
        let mut g = c.benchmark_group(group);
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for case in &cases {
            let step = batch.map_or(1, |b: usize| case.rows.len().div_ceil(b));
            let rows: Vec<&Row> = case.rows.iter().step_by(step).collect();
            g.throughput(Throughput::Elements(tokens(&rows)));
            g.bench_function(BenchmarkId::from_parameter(&case.name), |b| {
                b.iter(|| align_rows(&rows))
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("place");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for case in &cases {
        g.throughput(Throughput::Elements(tokens(
            &case.rows.iter().collect::<Vec<_>>(),
        )));
        g.bench_function(BenchmarkId::from_parameter(&case.name), |b| {
            b.iter(|| {
                for r in &case.rows {
                    for k in 0..2 {
                        let e = &r.enc[k];
                        let table = case.tables.as_ref().map(|t| &t[k].table);
                        black_box(place_tokens(
                            black_box(&r.text),
                            &e.offsets,
                            &e.special,
                            |i| table.and_then(|t| t.bytes(e.ids[i])),
                        ));
                    }
                }
            })
        });
    }
    g.finish();
    // The same corpora tokenized by the core (both sides, as `Aligner.batch` does before placing):
    // a reference measured in the same run, so `align`/`place` can be read as ratios to it when
    // the machine's load or clock differs between runs (tokenizing does not change with them).
    let mut g = c.benchmark_group("tokenize");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for case in &cases {
        let Some(toks) = &case.tables else { continue };
        g.throughput(Throughput::Elements(tokens(
            &case.rows.iter().collect::<Vec<_>>(),
        )));
        g.bench_function(BenchmarkId::from_parameter(&case.name), |b| {
            b.iter(|| {
                for r in &case.rows {
                    for t in toks.iter() {
                        black_box(t.encode(black_box(&r.text), false).ok());
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
