//! Span placement (rule 1) and alignment on fuzzed tokenizations.
//!
//! Input: a text, then bytes that drive two tokenizations of it. Each side cuts the text at
//! character boundaries into tokens whose bytes are the text's (a lossless tokenizer), then
//! reports offsets the way real tokenizers misreport them: trimmed of edge whitespace (RoBERTa,
//! GPT-NeoX), one character early (offsets shifted by a dropped character, t5), dummy-prefix
//! spaces, post-processor specials. Placement must recover the true tiling exactly, and the
//! alignment must equal the alignment of the true spans. A garbage mode feeds random offsets and
//! bytes and checks only that nothing panics and spans stay ordered inside the text.
#![no_main]

use dskd_align::align::{align, AlignOut, Placed};
use dskd_align::drops::{DropSet, Drops};
use dskd_align::place::{place_tokens, place_tokens_with};
use dskd_align::span::{validate_offsets, Span};
use libfuzzer_sys::fuzz_target;

struct Bytes<'a>(&'a [u8], usize);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.0.get(self.1).copied().unwrap_or(0);
        self.1 += 1;
        b
    }
}

/// One side: true spans, reported offsets, special flags, token bytes.
struct Side {
    truth: Vec<Span>,
    offsets: Vec<(usize, usize)>,
    special: Vec<bool>,
    bytes: Vec<Option<Vec<u8>>>,
}

fn is_ws_at(text: &str, i: usize) -> Option<usize> {
    text[i..]
        .chars()
        .next()
        .filter(|c| c.is_whitespace())
        .map(char::len_utf8)
}

fn ws_before(text: &str, e: usize) -> Option<usize> {
    text[..e]
        .chars()
        .next_back()
        .filter(|c| c.is_whitespace())
        .map(char::len_utf8)
}

fn lossless_side(text: &str, r: &mut Bytes) -> Side {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .skip(1)
        .chain([text.len()])
        .collect();
    let mut side = Side {
        truth: vec![],
        offsets: vec![],
        special: vec![],
        bytes: vec![],
    };
    let mut start = 0;
    let mut last_start = 0;
    for &b in &bounds {
        let op = r.next();
        if op & 0x80 != 0 {
            // A post-processor special: (0, 0), no bytes, sits where the text so far ends.
            side.truth.push(Span::new(start, start));
            side.offsets.push((0, 0));
            side.special.push(true);
            side.bytes.push(None);
        }
        if b < text.len() && op & 3 != 0 {
            continue; // no cut here
        }
        let own = text.as_bytes()[start..b].to_vec();
        let (mut s, mut e) = (start, b);
        match (op >> 2) & 7 {
            1 | 2 => {
                // Trimmed offsets: leading and/or trailing whitespace dropped.
                while s < e {
                    match is_ws_at(text, s) {
                        Some(n) if op & 0x08 != 0 => s += n,
                        _ => break,
                    }
                }
                while e > s {
                    match ws_before(text, e) {
                        Some(n) => e -= n,
                        None => break,
                    }
                }
                if s == e {
                    s = start.max(e); // an all-whitespace token: empty offsets
                }
            }
            3 => {
                // One character early (a dropped character before it shifted the offsets).
                if let Some(c) = text[..s].chars().next_back() {
                    s -= c.len_utf8();
                    e = (e - c.len_utf8()).max(s);
                }
            }
            _ => {}
        }
        s = s.max(last_start);
        e = e.max(s);
        last_start = s;
        // A dummy-prefix space the text does not have there.
        let dummy = (op >> 5) & 1 == 1 && own.first().is_some_and(|&c| c != b' ');
        let bytes = if dummy {
            [b" ".as_slice(), &own].concat()
        } else {
            own
        };
        side.truth.push(Span::new(start, b));
        side.offsets.push((s, e));
        side.special.push(false);
        side.bytes.push(Some(bytes));
        start = b;
    }
    side
}

fn check_align(text: &str, out: &AlignOut, nt: usize, ns: usize) {
    for w in out.pairs.windows(2) {
        assert!(w[0].0 < w[1].0 && w[0].1 < w[1].1, "pairs not increasing");
    }
    assert!(out.pairs.iter().all(|&(i, j)| i < nt && j < ns));
    assert_eq!(out.teacher_chunks.len(), nt);
    assert_eq!(out.student_chunks.len(), ns);
    assert!(out.teacher_aligned <= out.teacher_text_tokens.min(text.len() + nt));
}

fn lossless(text: &str, rest: &[u8]) {
    let mut r = Bytes(rest, 0);
    let t = lossless_side(text, &mut r);
    let s = lossless_side(text, &mut r);
    let mut placed = vec![];
    for side in [&t, &s] {
        if validate_offsets("fuzz", &side.offsets, &side.special, text.len()).is_err() {
            return;
        }
        let p = place_tokens(text, &side.offsets, &side.special, |i| {
            side.bytes[i].as_deref()
        });
        assert_eq!(p.spans, side.truth, "{text:?} {:?}", side.offsets);
        placed.push(p);
    }
    let got = align(
        text,
        &Placed {
            spans: &placed[0].spans,
            special: &t.special,
            unpairable: &placed[0].unpairable,
        },
        &Placed {
            spans: &placed[1].spans,
            special: &s.special,
            unpairable: &placed[1].unpairable,
        },
    );
    let want = align(
        text,
        &Placed {
            spans: &t.truth,
            special: &t.special,
            unpairable: &[],
        },
        &Placed {
            spans: &s.truth,
            special: &s.special,
            unpairable: &[],
        },
    );
    assert_eq!(got, want);
    check_align(text, &got, t.truth.len(), s.truth.len());
}

fn garbage(text: &str, rest: &[u8]) {
    let mut r = Bytes(rest, 0);
    let n = (r.next() % 24) as usize;
    let len = text.len();
    let mut offsets = vec![];
    let mut special = vec![];
    let mut bytes: Vec<Option<Vec<u8>>> = vec![];
    let mut start = 0usize;
    for _ in 0..n {
        start = (start + r.next() as usize % 4).min(len);
        let end = (start + r.next() as usize % 6).min(len);
        let (s, e) = dskd_align::span::snap_to_chars(text, start, end);
        offsets.push((s, e));
        let k = r.next();
        special.push(k % 7 == 0);
        bytes.push(match k % 5 {
            0 => None,
            1 => Some(text.as_bytes()[s..e].to_vec()),
            2 => Some([b" ", &text.as_bytes()[s..e]].concat()),
            _ => Some((0..k % 4).map(|_| r.next()).collect()),
        });
    }
    if validate_offsets("fuzz", &offsets, &special, len).is_err() {
        return;
    }
    // Half the time, told that some of the text's characters are dropped (rust/drops.rs).
    let set = DropSet::from_chars(text.chars().filter(|_| r.next() % 2 == 0));
    let drops = if r.next() % 2 == 0 { Drops::Known(&set) } else { Drops::Unknown };
    let p = place_tokens_with(text, &offsets, &special, |i| bytes[i].as_deref(), drops);
    assert_eq!(p.spans.len(), n);
    assert!(p.unpairable.is_empty() || p.unpairable.len() == n);
    let mut pos = 0;
    for sp in &p.spans {
        assert!(pos <= sp.start() && sp.start() <= sp.end() && sp.end() <= len);
        pos = sp.end();
    }
    let side = Placed {
        spans: &p.spans,
        special: &special,
        unpairable: &p.unpairable,
    };
    let out = align(text, &side, &side);
    check_align(text, &out, n, n);
    // A side against itself: every pairable text token pairs with itself.
    let pairable = (0..n)
        .filter(|&i| !special[i] && !p.unpairable.get(i).copied().unwrap_or(false))
        .count();
    assert_eq!(out.teacher_aligned, pairable);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let cut = data.iter().position(|&b| b == 0xFF).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..cut.min(256)]);
    let rest = data.get(cut + 1..).unwrap_or(&[]);
    if mode & 1 == 0 {
        lossless(&text, rest);
    } else {
        garbage(&text, rest);
    }
});
