//! The batch entry point: texts in, one flat (CSR) result out.
//!
//! Layout: per side, `splits[b]..splits[b+1]` indexes the tokens of row `b` in `ids`, `spans`
//! (`[N, 2]`), `special`, `chunks`; `pair_splits` does the same for `pairs` (`[K, 2]`, indices local
//! to the row). Flat vectors leave Rust as numpy arrays without a copy.
//!
//! Threads: `num_threads` contiguous parts on scoped threads, joined in order, so the result is
//! identical for any thread count. No global pool (fork safety, see lib.rs).

use crate::drops::Drops;
use crate::error::{AlignError, Result};
use crate::span::check_text_len;
use crate::tokenize::CoreTokenizer;
use crate::{align_placed, place, RowOut, SideOut};

/// One side of a batch, flat.
#[derive(Debug, Default, Clone)]
pub struct SideFlat {
    pub splits: Vec<i64>,
    pub ids: Vec<i64>,
    pub spans: Vec<i64>,
    pub special: Vec<bool>,
    pub chunks: Vec<i64>,
    pub text_tokens: Vec<i64>,
    pub aligned: Vec<i64>,
}

impl SideFlat {
    fn new() -> Self {
        SideFlat {
            splits: vec![0],
            ..Default::default()
        }
    }

    fn push(&mut self, side: &SideOut, chunks: &[i64], text_tokens: usize, aligned: usize) {
        self.ids.extend(side.ids.iter().map(|&i| i as i64));
        for s in &side.spans {
            self.spans.push(s.start() as i64);
            self.spans.push(s.end() as i64);
        }
        self.special.extend_from_slice(&side.special);
        self.chunks.extend_from_slice(chunks);
        self.text_tokens.push(text_tokens as i64);
        self.aligned.push(aligned as i64);
        self.splits.push(self.ids.len() as i64);
    }

    fn append(&mut self, other: SideFlat) {
        let base = *self.splits.last().unwrap_or(&0);
        self.splits
            .extend(other.splits.iter().skip(1).map(|&s| s + base));
        self.ids.extend(other.ids);
        self.spans.extend(other.spans);
        self.special.extend(other.special);
        self.chunks.extend(other.chunks);
        self.text_tokens.extend(other.text_tokens);
        self.aligned.extend(other.aligned);
    }
}

/// A whole batch, flat.
#[derive(Debug, Default, Clone)]
pub struct BatchOut {
    pub teacher: SideFlat,
    pub student: SideFlat,
    pub pair_splits: Vec<i64>,
    pub pairs: Vec<i64>,
}

impl BatchOut {
    pub fn new() -> Self {
        BatchOut {
            teacher: SideFlat::new(),
            student: SideFlat::new(),
            pair_splits: vec![0],
            pairs: vec![],
        }
    }

    pub fn push(&mut self, row: &RowOut) {
        let a = &row.align;
        self.teacher.push(
            &row.teacher,
            &a.teacher_chunks,
            a.teacher_text_tokens,
            a.teacher_aligned,
        );
        self.student.push(
            &row.student,
            &a.student_chunks,
            a.student_text_tokens,
            a.student_aligned,
        );
        for &(i, j) in &a.pairs {
            self.pairs.push(i as i64);
            self.pairs.push(j as i64);
        }
        self.pair_splits.push((self.pairs.len() / 2) as i64);
    }

    fn append(&mut self, other: BatchOut) {
        let base = *self.pair_splits.last().unwrap_or(&0);
        self.pair_splits
            .extend(other.pair_splits.iter().skip(1).map(|&s| s + base));
        self.pairs.extend(other.pairs);
        self.teacher.append(other.teacher);
        self.student.append(other.student);
    }

    pub fn rows(&self) -> usize {
        self.pair_splits.len() - 1
    }
}

/// Tokenizes and aligns one text.
pub fn align_text(
    teacher: &CoreTokenizer,
    student: &CoreTokenizer,
    text: &str,
    add_special_tokens: bool,
) -> Result<RowOut> {
    check_text_len(text.len())?;
    let te = teacher.encode(text, add_special_tokens)?;
    let se = student.encode(text, add_special_tokens)?;
    let t = place(text, te, Some(&teacher.table), Drops::Known(&teacher.drops));
    let s = place(text, se, Some(&student.table), Drops::Known(&student.drops));
    Ok(align_placed(text, t, s))
}

fn run_part(
    teacher: &CoreTokenizer,
    student: &CoreTokenizer,
    texts: &[&str],
    add_special_tokens: bool,
) -> Result<BatchOut> {
    let mut out = BatchOut::new();
    for text in texts {
        out.push(&align_text(teacher, student, text, add_special_tokens)?);
    }
    Ok(out)
}

/// Tokenizes and aligns every text on `num_threads` threads (0 = all cores).
pub fn align_texts(
    teacher: &CoreTokenizer,
    student: &CoreTokenizer,
    texts: &[&str],
    add_special_tokens: bool,
    num_threads: usize,
) -> Result<BatchOut> {
    let threads = match num_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(texts.len().max(1));
    if threads == 1 {
        return run_part(teacher, student, texts, add_special_tokens);
    }
    let per = texts.len().div_ceil(threads);
    let parts: Vec<Result<BatchOut>> = std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .chunks(per)
            .map(|part| scope.spawn(move || run_part(teacher, student, part, add_special_tokens)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AlignError::InvalidArgument(
                        "internal error: an alignment thread panicked; please report the input"
                            .into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = BatchOut::new();
    for part in parts {
        out.append(part?);
    }
    Ok(out)
}
