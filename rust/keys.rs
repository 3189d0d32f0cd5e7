//! One side's canonical keys (rule 2 of ALIGNMENT.md) as the chunk walk in `align` reads them:
//! packed into integers, between end markers, and computed only where the walk asks.

use crate::align::Placed;
use crate::canonical::canonical_key;
use crate::span::Span;

/// A canonical key packed as `start << 32 | end`: keys of one side compare as integers in text
/// order, and the walk reads a cut (one key's end, the next key's start) from two words.
pub type Key = u64;

#[inline(always)]
fn key_start(k: Key) -> u64 {
    k >> 32
}

#[inline(always)]
fn key_end(k: Key) -> u64 {
    k & 0xFFFF_FFFF
}

/// End markers around each side's keys, so the walk reads cuts without bounds checks: `LOW` ends
/// at 0 (the cut before the first token starts at the text's start); `high` starts at `u32::MAX`,
/// past any text (`span::MAX_TEXT_BYTES`), so the cut after the last token is open-ended;
/// `TOP` after it makes the cut after `high` start past the text, meeting no real cut. The two
/// sides' `high` differ in their end, so they never compare equal to each other.
const LOW: Key = 0;
const TOP: Key = Key::MAX;
pub const TEACHER_HIGH: Key = Key::MAX;
pub const STUDENT_HIGH: Key = Key::MAX - 1;

/// Marks a key not computed yet (lazy keys, see [`Keys`]); its start lies past any text.
const UNSET: Key = (u32::MAX as u64 - 1) << 32;

/// One side's text (non-special) tokens and their canonical keys: `keys[k + 1]` is text token
/// `k`'s key, between the end markers.
///
/// Without special tokens, keys are computed lazily: most tokens of real text sit in runs of
/// exact pairs whose raw spans are already equal, and computing a key costs more than the rest of
/// the walk does for such a token. The walk asks for a key only where raw spans differ.
pub struct Keys<'a> {
    text: &'a str,
    /// Raw spans by text-token position (lazy mode), or empty (all keys computed up front).
    pub spans: &'a [Span],
    keys: Vec<Key>,
    /// Token index of each text token; `None` when the side has no special tokens.
    pub index: Option<Vec<usize>>,
    /// Unpairable text tokens by position (`place.rs`); `None` when every token may pair.
    blocked: Option<Vec<bool>>,
    /// No key occurs twice. Only empty keys can repeat (non-empty keys of one side never overlap,
    /// and a key is empty only when its span is), e.g. two zero-width tokens at one offset.
    pub unique: bool,
}

impl<'a> Keys<'a> {
    pub fn new(text: &'a str, side: &Placed<'a>, high: Key) -> Self {
        let n = side.spans.len();
        let mut keys = Vec::with_capacity(n + 3);
        keys.push(LOW);
        let mut out = if side.special.iter().fold(false, |a, &s| a | s) {
            // Branch-free fill: slot `k` is written for every token, kept only for text tokens.
            keys.resize(n + 1, LOW);
            let mut index = vec![0usize; n];
            let mut k = 0;
            for (i, (&span, &sp)) in side.spans.iter().zip(side.special).enumerate() {
                keys[k + 1] = canonical_key(text, span).packed();
                index[k] = i;
                k += usize::from(!sp);
            }
            keys.truncate(k + 1);
            index.truncate(k);
            let blocked = (!side.unpairable.is_empty())
                .then(|| index.iter().map(|&i| side.unpairable[i]).collect());
            // Keys are non-decreasing, so a repeat sits next to its twin.
            let unique = keys[1..].windows(2).all(|w| w[0] != w[1]);
            Keys {
                text,
                spans: &[],
                keys,
                index: Some(index),
                blocked,
                unique,
            }
        } else {
            keys.resize(n + 1, UNSET);
            Keys {
                text,
                spans: side.spans,
                keys,
                index: None,
                blocked: (!side.unpairable.is_empty()).then(|| side.unpairable.to_vec()),
                // Fold without early exit: it vectorizes.
                unique: !side
                    .spans
                    .windows(2)
                    .fold(false, |r, w| r | (w[0].packed() == w[1].packed())),
            }
        };
        out.keys.push(high);
        out.keys.push(TOP);
        out
    }

    /// Whether any text token is unpairable.
    pub fn has_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// Whether text token `p` may pair (positions past the end may: their keys are markers).
    #[inline(always)]
    pub fn pairable(&self, p: usize) -> bool {
        self.blocked
            .as_ref()
            .is_none_or(|b| !b.get(p).copied().unwrap_or(false))
    }

    /// Number of text tokens.
    pub fn len(&self) -> usize {
        self.keys.len() - 3
    }

    /// `keys[p]`, computed on first use.
    #[inline(always)]
    pub fn get(&mut self, p: usize) -> Key {
        let k = self.keys[p];
        if k != UNSET {
            return k;
        }
        let k = canonical_key(self.text, self.spans[p - 1]).packed();
        self.keys[p] = k;
        k
    }

    /// Every text token's key, without the end markers.
    pub fn all(&mut self) -> &[Key] {
        for p in 1..=self.len() {
            self.get(p);
        }
        &self.keys[1..self.keys.len() - 2]
    }

    /// The cut before text token `i`: from the previous key's end to token `i`'s key start.
    #[inline(always)]
    pub fn cut(&mut self, i: usize) -> (u64, u64) {
        (key_end(self.get(i)), key_start(self.get(i + 1)))
    }
}
