//! Rule 2 of ALIGNMENT.md: a token's canonical key is its byte span with whole leading and
//! trailing White_Space characters removed (a whitespace-only or empty span keeps its raw range).
//! A branch-free fast path covers almost every token; the exact path trims one character at a time.

use crate::span::Span;

/// Byte classes for a two-byte test of "a White_Space character may start here". Every
/// White_Space character is ASCII (9-13, 32) or starts with one of four lead bytes, each followed
/// by few second bytes: C2 85|A0, E1 9A, E2 80|81, E3 80. `WS_LEAD[b]` has bit `ASCII_WS` for
/// ASCII whitespace, else one bit per lead byte; `WS_SECOND[b]` has the bits of the leads `b` may
/// follow. The test is exact for ASCII and a superset otherwise (E3 80 80 is U+3000, E3 80 81 is
/// `、`), which only sends a token to the exact path.
const ASCII_WS: u8 = 16;
static WS_LEAD: [u8; 256] = byte_table(&[
    (0x09, 0x0D, ASCII_WS),
    (0x20, 0x20, ASCII_WS),
    (0xC2, 0xC2, 1),
    (0xE1, 0xE1, 2),
    (0xE2, 0xE2, 4),
    (0xE3, 0xE3, 8),
]);
static WS_SECOND: [u8; 256] = byte_table(&[
    (0x85, 0x85, 1),
    (0xA0, 0xA0, 1),
    (0x9A, 0x9A, 2),
    (0x80, 0x80, 4 | 8),
    (0x81, 0x81, 4),
]);

/// The same for "a White_Space character may end here", read backwards: the last byte, then the
/// one before it. Last bytes: 85 (after C2, or E2 80), A0 (after C2), 80 (E1 9A, E2 80, E3 80),
/// 81-8A, A8, A9, AF (E2 80), 9F (E2 81). `WS_PREV[b]` has one bit per possible byte before.
static WS_LAST: [u8; 256] = byte_table(&[
    (0x09, 0x0D, ASCII_WS),
    (0x20, 0x20, ASCII_WS),
    (0x85, 0x85, 1),
    (0xA0, 0xA0, 1),
    (0x80, 0x80, 2 | 4),
    (0x81, 0x8A, 4),
    (0xA8, 0xA9, 4),
    (0xAF, 0xAF, 4),
    (0x9F, 0x9F, 8),
]);
static WS_PREV: [u8; 256] = byte_table(&[
    (0xC2, 0xC2, 1),
    (0x9A, 0x9A, 2),
    (0x80, 0x80, 4),
    (0x81, 0x81, 8),
]);

/// A byte table from `(first, last, bits)` ranges; bits of overlapping ranges are or-ed.
const fn byte_table(ranges: &[(u8, u8, u8)]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut k = 0;
    while k < ranges.len() {
        let (first, last, bits) = ranges[k];
        let mut b = first as usize;
        while b <= last as usize {
            t[b] |= bits;
            b += 1;
        }
        k += 1;
    }
    t
}

/// Whether a White_Space character may start with bytes `b0 b1` (exact for ASCII).
#[inline(always)]
fn may_start_ws(b0: u8, b1: u8) -> bool {
    (WS_LEAD[b0 as usize] & (ASCII_WS | WS_SECOND[b1 as usize])) != 0
}

/// Whether a White_Space character may end with bytes `prev last` (exact for ASCII).
#[inline(always)]
fn may_end_ws(last: u8, prev: u8) -> bool {
    (WS_LAST[last as usize] & (ASCII_WS | WS_PREV[prev as usize])) != 0
}

/// `char::is_whitespace` restricted to ASCII: tab, LF, VT, FF, CR and space (not `\x1C`-`\x1F`).
#[inline(always)]
const fn is_ascii_white_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Rule 2: the span with whole leading and trailing White_Space characters removed; a span that
/// is only whitespace (or empty) keeps its raw range. Characters cut by the span (byte pieces of a
/// multi-byte character) are never trimmed.
#[inline(always)]
pub fn canonical_key(text: &str, span: Span) -> Span {
    let t = text.as_bytes();
    let (start, end) = (span.start(), span.end());
    // Fast path (almost every token of any script): at most one ASCII whitespace byte at each end
    // (`Ġword`, `▁word`, `word\n`, a lone space), and no whitespace character can start or end
    // what is left. Evaluated without branches on the bytes (whether a token starts with a space
    // is a coin flip a predictor cannot learn). Reads are clamped into the span, which can only
    // make a test say "maybe whitespace" and take the exact path below.
    if let Some(w) = t.get(start..end).filter(|w| !w.is_empty()) {
        let last = w.len() - 1;
        let lead = usize::from(is_ascii_white_space(w[0]) & (last > 0));
        let trail = usize::from(is_ascii_white_space(w[last]) & (last > lead));
        let z = last - trail;
        let starts_ws = may_start_ws(w[lead], w[(lead + 1).min(last)]);
        let ends_ws = may_end_ws(w[z], w[z.saturating_sub(1)]);
        // A one-byte span is its own key: either not whitespace, or whitespace kept raw.
        if !(starts_ws | ends_ws) | (last == 0) {
            return Span::new(start + lead, start + z + 1);
        }
    }
    trim_whitespace(text, span)
}

/// The exact path of [`canonical_key`]: trims whole White_Space characters one at a time. Kept
/// out of line so the fast path inlines into the callers' loops.
#[inline(never)]
fn trim_whitespace(text: &str, span: Span) -> Span {
    let t = text.as_bytes();
    let (mut s, mut e) = (span.start(), span.end());
    // ASCII fast path (most token ends): White_Space in ASCII is exactly 9..=13 and 32, and an
    // ASCII byte is always a whole character, so no decoding is needed until a byte >= 0x80.
    while s < e {
        let b = match t.get(s) {
            Some(&b) => b,
            None => break,
        };
        if b < 0x80 {
            if !is_ascii_white_space(b) {
                break;
            }
            s += 1;
            continue;
        }
        if !text.is_char_boundary(s) {
            break;
        }
        let c = match text[s..].chars().next() {
            Some(c) => c,
            None => break,
        };
        let n = c.len_utf8();
        if s + n > e || !c.is_whitespace() {
            break;
        }
        s += n;
    }
    while e > s {
        match t.get(e - 1) {
            // Ends after an ASCII byte: `e` is a character boundary.
            Some(&b) if b < 0x80 => {
                if !is_ascii_white_space(b) {
                    break;
                }
                e -= 1;
                continue;
            }
            Some(_) if text.is_char_boundary(e) => {}
            _ => break,
        }
        let mut c0 = e - 1;
        while c0 > 0 && (t[c0] & 0xC0) == 0x80 {
            c0 -= 1;
        }
        if c0 < s {
            break;
        }
        let c = text[c0..].chars().next().unwrap_or('x');
        if !c.is_whitespace() {
            break;
        }
        e = c0;
    }
    if s == e {
        span
    } else {
        Span::new(s, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition before the ASCII fast path: decode every character.
    fn canonical_key_by_chars(text: &str, span: Span) -> Span {
        let (mut s, mut e) = (span.start(), span.end());
        while s < e && text.is_char_boundary(s) {
            let c = text[s..].chars().next().unwrap();
            if s + c.len_utf8() > e || !c.is_whitespace() {
                break;
            }
            s += c.len_utf8();
        }
        while e > s && text.is_char_boundary(e) {
            let (c0, c) = text[..e].char_indices().next_back().unwrap();
            if c0 < s || !c.is_whitespace() {
                break;
            }
            e = c0;
        }
        if s == e {
            span
        } else {
            Span::new(s, e)
        }
    }

    #[test]
    fn ascii_fast_path_equals_char_by_char_trim() {
        // Every White_Space character, plus non-whitespace characters sharing their lead or
        // last bytes (U+200B and U+2060 start with 0xE2, `р` and `Ā` end in 0x80, `、` starts like
        // U+3000, `ą` ends like U+0085, U+0800 ends in A0 80, `ᚠ` starts like U+1680).
        let text = " \t\u{3000} a\u{1c}\u{85}é \n\u{a0}\u{b}x\u{2028}🙂 \u{0}\r\u{1680}р\u{2000}\
                    \u{2005}\u{200a}\u{200b}Ā\u{2029}\u{202f}\u{205f}\u{2060}\u{c}、ą\u{800}ᚠ\u{80}\u{3000}";
        for s in 0..=text.len() {
            for e in s..=text.len() {
                let span = Span::new(s, e);
                assert_eq!(
                    canonical_key(text, span),
                    canonical_key_by_chars(text, span)
                );
            }
        }
    }

    #[test]
    fn key_trims_whole_whitespace_only() {
        let text = "a \u{3000}b\n";
        assert_eq!(canonical_key(text, Span::new(1, 6)), Span::new(5, 6));
        assert_eq!(canonical_key(text, Span::new(1, 5)), Span::new(1, 5));
        assert_eq!(canonical_key(text, Span::new(6, 7)), Span::new(6, 7));
    }
}
