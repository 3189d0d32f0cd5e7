//! The only PyO3 file: thin wrappers that convert, call plain Rust, and convert back.
//! Arrays leave as 1-D numpy arrays owning the Rust buffers (no copy); Python reshapes views.

use crate::batch::{align_texts, BatchOut, SideFlat};
use crate::drops::{DropSet, Drops};
use crate::error::AlignError;
use crate::place::place_tokens_with;
use crate::span::{char_to_byte, check_text_len, validate_offsets};
use crate::tokenize::CoreTokenizer as RustTokenizer;
use crate::{align_placed, SideOut};
use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyBytes, PyDict};

pyo3::create_exception!(
    _core,
    AlignmentError,
    PyValueError,
    "Bad input to the aligner: the message names the field and the fix."
);

impl From<AlignError> for PyErr {
    fn from(e: AlignError) -> PyErr {
        AlignmentError::new_err(e.to_string())
    }
}

/// A token id from Python: an int in 0..2^32, else an `AlignmentError` showing the value given
/// (not pyo3's bare `OverflowError`/`TypeError`).
fn token_id(id: &Bound<'_, PyAny>) -> PyResult<u32> {
    let bad = || {
        let shown = id
            .repr()
            .map_or_else(|_| "?".to_string(), |r| r.to_string());
        AlignmentError::new_err(format!(
            "token id {shown} is not a token id: pass an int in 0..2^32"
        ))
    };
    if id.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad());
    }
    id.extract::<u32>().map_err(|_| bad())
}

/// (ids, byte offsets, special mask) of one encoding.
type EncodeOut = (Vec<u32>, Vec<(usize, usize)>, Vec<bool>);

/// A tokenizer loaded from its tokenizer.json, with its token-to-bytes table.
#[pyclass(frozen, module = "dskd_align._core")]
struct CoreTokenizer {
    inner: RustTokenizer,
}

#[pymethods]
impl CoreTokenizer {
    #[new]
    fn new(py: Python<'_>, json: &str) -> PyResult<Self> {
        let inner = py.detach(|| RustTokenizer::from_json(json))?;
        Ok(CoreTokenizer { inner })
    }

    /// Vocabulary size with added tokens.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// Highest token id + 1 (the size of the token-to-bytes table).
    #[getter]
    fn table_size(&self) -> usize {
        self.inner.table.len()
    }

    /// The bytes token `id` stands for, or None when unknown.
    fn token_bytes<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let id = token_id(id)?;
        Ok(self.inner.table.bytes(id).map(|b| PyBytes::new(py, b)))
    }

    /// The characters its normalizer drops or turns into whitespace, of the non-whitespace
    /// droppable ones (controls, format characters, other default ignorables), each asked alone.
    #[getter]
    fn dropped_chars(&self) -> String {
        self.inner.drops.chars().iter().collect()
    }

    /// Whether `id` is a special added token.
    fn is_special(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.inner.table.is_special(token_id(id)?))
    }

    /// (ids, byte offsets snapped to characters, special mask) as the core sees them.
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<EncodeOut> {
        let e = py.detach(|| self.inner.encode(text, add_special_tokens))?;
        Ok((e.ids, e.offsets, e.special))
    }
}

fn side_dict(py: Python<'_>, d: &Bound<'_, PyDict>, name: &str, s: SideFlat) -> PyResult<()> {
    d.set_item(format!("{name}_splits"), s.splits.into_pyarray(py))?;
    d.set_item(format!("{name}_ids"), s.ids.into_pyarray(py))?;
    d.set_item(format!("{name}_spans"), s.spans.into_pyarray(py))?;
    d.set_item(format!("{name}_special"), s.special.into_pyarray(py))?;
    d.set_item(format!("{name}_chunks"), s.chunks.into_pyarray(py))?;
    d.set_item(
        format!("{name}_text_tokens"),
        s.text_tokens.into_pyarray(py),
    )?;
    d.set_item(format!("{name}_aligned"), s.aligned.into_pyarray(py))?;
    Ok(())
}

fn batch_dict(py: Python<'_>, b: BatchOut) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("pair_splits", b.pair_splits.into_pyarray(py))?;
    d.set_item("pairs", b.pairs.into_pyarray(py))?;
    side_dict(py, &d, "teacher", b.teacher)?;
    side_dict(py, &d, "student", b.student)?;
    Ok(d)
}

/// Reads a list of texts, naming the row of anything that is not a valid str.
fn extract_texts(texts: &Bound<'_, PyAny>) -> PyResult<Vec<PyBackedStr>> {
    let mut out = vec![];
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        let s = item.extract::<PyBackedStr>().map_err(|e| {
            let what = if item.is_none() {
                "is None".to_string()
            } else if item.is_instance_of::<pyo3::types::PyString>() {
                format!("is not valid Unicode ({e}); lone surrogates cannot be tokenized, clean the text (e.g. s.encode('utf-8', 'replace').decode())")
            } else {
                format!("is a {}, not a str", item.get_type().name().map_or("?".into(), |n| n.to_string()))
            };
            AlignmentError::new_err(format!("texts[{i}] {what}"))
        })?;
        out.push(s);
    }
    Ok(out)
}

/// Tokenizes every text with both tokenizers and aligns them; a dict of flat arrays.
#[pyfunction]
#[pyo3(signature = (teacher, student, texts, add_special_tokens=false, num_threads=1))]
fn align_texts_flat<'py>(
    py: Python<'py>,
    teacher: &CoreTokenizer,
    student: &CoreTokenizer,
    texts: &Bound<'py, PyAny>,
    add_special_tokens: bool,
    num_threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let owned = extract_texts(texts)?;
    let strs: Vec<&str> = owned.iter().map(|s| &**s).collect();
    let (t, s) = (&teacher.inner, &student.inner);
    let out = py.detach(|| align_texts(t, s, &strs, add_special_tokens, num_threads))?;
    batch_dict(py, out)
}

type SideIn = (
    Vec<i64>,
    Vec<(i64, i64)>,
    Vec<bool>,
    Option<Vec<Option<Vec<u8>>>>,
    Option<String>,
);

/// Validates one side given in character offsets and places it on the text.
fn place_side(side: &'static str, text: &str, c2b: &[usize], s: SideIn) -> PyResult<SideOut> {
    let (ids, offsets, special, bytes, dropped) = s;
    let n_chars = c2b.len() - 1;
    let mut offs = Vec::with_capacity(offsets.len());
    for (i, &(a, b)) in offsets.iter().enumerate() {
        if a < 0 || b < 0 {
            return Err(AlignError::NegativeOffset {
                side,
                index: i,
                start: a,
                end: b,
            }
            .into());
        }
        offs.push((a as usize, b as usize));
    }
    let check = |field: &'static str, got: usize| -> PyResult<()> {
        if got != ids.len() {
            return Err(AlignError::LengthMismatch {
                side,
                field,
                expected: ids.len(),
                got,
            }
            .into());
        }
        Ok(())
    };
    check("offsets", offs.len())?;
    if let Some(b) = &bytes {
        check("token_bytes", b.len())?;
    }
    validate_offsets(side, &offs, &special, n_chars)?;
    let mut u32ids = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        u32ids.push(u32::try_from(id).map_err(|_| {
            AlignmentError::new_err(format!(
                "{side}: ids[{i}] = {id} is not a token id (0..2^32)"
            ))
        })?);
    }
    let byte_offs: Vec<(usize, usize)> = offs.iter().map(|&(a, b)| (c2b[a], c2b[b])).collect();
    // Token bytes come per position from Python (no table for this tokenizer), or not at all.
    // What the normalizer drops comes with the bytes of a `CoreTokenizer`, else is unknown.
    let drop_set = dropped.map(|d| DropSet::from_chars(d.chars()));
    let drops = drop_set.as_ref().map_or(Drops::Unknown, Drops::Known);
    let tb = |i: usize| bytes.as_ref().and_then(|b| b[i].as_deref());
    let p = place_tokens_with(text, &byte_offs, &special, tb, drops);
    Ok(SideOut {
        ids: u32ids,
        spans: p.spans,
        special,
        unpairable: p.unpairable,
    })
}

/// Aligns two encodings given as (ids, character offsets, special mask, token bytes or None,
/// the characters the normalizer drops or None).
#[pyfunction]
fn align_encoded<'py>(
    py: Python<'py>,
    text: &str,
    teacher: SideIn,
    student: SideIn,
) -> PyResult<Bound<'py, PyDict>> {
    check_text_len(text.len())?;
    let c2b = char_to_byte(text);
    let t = place_side("teacher", text, &c2b, teacher)?;
    let s = place_side("student", text, &c2b, student)?;
    let mut out = BatchOut::new();
    out.push(&align_placed(text, t, s));
    batch_dict(py, out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("AlignmentError", m.py().get_type::<AlignmentError>())?;
    m.add_class::<CoreTokenizer>()?;
    m.add_function(wrap_pyfunction!(align_texts_flat, m)?)?;
    m.add_function(wrap_pyfunction!(align_encoded, m)?)?;
    Ok(())
}
