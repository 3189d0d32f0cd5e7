//! Which characters one tokenizer's normalizer drops (rule 1, case 3 of [`crate::place`]).
//!
//! Why: t5-small's normalizer drops `\x08` but keeps `\x00` (as an `<unk>`), and its offsets lag
//! behind the dropped characters a text starts with. From offsets and token bytes alone a kept
//! `\x00` and a dropped `\x08` can look the same ("\x00你好，世界\x08": is the `<unk>` reported on
//! "\x00你" one character early?), so placement guesses with [`droppable`] and checks the guess
//! against later tokens. Where the core tokenizes, it has the normalizer and can ask it instead:
//! [`DropSet::of`] normalizes every non-whitespace droppable character on its own once, when the
//! tokenizer is loaded, and keeps those that come out empty or as whitespace only (t5-small turns
//! a U+200B into a space: like whitespace, no token stands for it as text; the lags come from
//! the removed ones, counting both only costs pairs). Whitespace stays a guess (a normalizer that
//! strips or a pre-tokenizer that splits on it drops it by context, not alone).
//! Encodings handed in from Python carry the set when their token bytes come from a
//! [`crate::tokenize::CoreTokenizer`] and go without it otherwise ([`Drops::Unknown`]).

use crate::place::droppable;

/// The non-whitespace [`droppable`] characters a normalizer removes or turns into whitespace,
/// sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropSet {
    chars: Vec<char>,
}

impl DropSet {
    /// Asks `normalize` (one character in, its normalized text out, `None` on failure: counted as
    /// kept) about every non-whitespace droppable character: ~4,300 characters, most of them
    /// the tag block U+E0000-E0FFF.
    pub fn of(normalize: impl Fn(&str) -> Option<String>) -> DropSet {
        let mut buf = [0u8; 4];
        let chars = candidates()
            .filter(|c| {
                normalize(c.encode_utf8(&mut buf))
                    .is_some_and(|s| s.chars().all(char::is_whitespace))
            })
            .collect();
        DropSet { chars }
    }

    /// A set given as its characters (any order; the ones that are not candidates are ignored).
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> DropSet {
        let mut chars: Vec<char> = chars
            .into_iter()
            .filter(|&c| droppable(c) && !c.is_whitespace())
            .collect();
        chars.sort_unstable();
        chars.dedup();
        DropSet { chars }
    }

    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    fn contains(&self, c: char) -> bool {
        self.chars.binary_search(&c).is_ok()
    }

    /// Where the first character of `text` that this set drops starts.
    pub fn first_in(&self, text: &str) -> Option<usize> {
        text.char_indices()
            .find(|&(_, c)| droppable(c) && self.contains(c))
            .map(|(k, _)| k)
    }
}

/// The characters [`DropSet::of`] asks about.
fn candidates() -> impl Iterator<Item = char> {
    (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter(|&c| droppable(c) && !c.is_whitespace())
}

/// What placement knows about one side's normalizer.
#[derive(Debug, Clone, Copy, Default)]
pub enum Drops<'a> {
    /// Nothing: any [`droppable`] character may have been dropped.
    #[default]
    Unknown,
    /// The tokenizer's own answer for the non-whitespace ones.
    Known(&'a DropSet),
}

impl Drops<'_> {
    /// Whether the normalizer may have dropped `c`.
    pub fn may_drop(self, c: char) -> bool {
        match self {
            Drops::Known(set) if !c.is_whitespace() => set.contains(c),
            _ => droppable(c),
        }
    }

    /// Whether `c`, left after the last token's reported end, is text some token stands for
    /// (evidence that the offsets lag). Without the set, a droppable character is that only
    /// after an `<unk>` (`after_unknown`: t5-small keeps a `\x00` as one).
    pub fn kept_after(self, c: char, after_unknown: bool) -> bool {
        match self {
            Drops::Known(set) => !c.is_whitespace() && !set.contains(c),
            Drops::Unknown => !c.is_whitespace() && (after_unknown || !droppable(c)),
        }
    }
}
