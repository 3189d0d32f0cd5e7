//! Unit tests of `place.rs` (rule 1), kept apart so each file stays short.

use super::*;
use crate::drops::DropSet;
use crate::span::char_to_byte;

fn spans_of(text: &str, offs: &[(usize, usize)], bytes: &[&[u8]]) -> Vec<(usize, usize)> {
    place_tokens(text, offs, &vec![false; offs.len()], |i| Some(bytes[i]))
        .spans
        .iter()
        .map(|s| (s.start(), s.end()))
        .collect()
}

#[test]
fn gpt2_cyrillic_byte_pieces() {
    // GPT-2 on "Привет мир": `ĠÐ`=(6,8) and `¼`=(7,8) in characters.
    let text = "Привет мир";
    let c2b = char_to_byte(text);
    let offs = [(c2b[6], c2b[8]), (c2b[7], c2b[8])];
    let got = spans_of(text, &offs, &[&[0x20, 0xD0], &[0xBC]]);
    assert_eq!(got, vec![(12, 14), (14, 15)]);
}

#[test]
fn dummy_prefix_stands_for_nothing() {
    let got = spans_of("日", &[(0, 3), (0, 3)], &[b" ", "日".as_bytes()]);
    assert_eq!(got, vec![(0, 0), (0, 3)]);
    // RoBERTa-style prefix space after an in-text special: `Ġ`=(4,4) before `x`=(3,4).
    let p = place_tokens(
        "<s>x",
        &[(0, 3), (4, 4), (3, 4)],
        &[true, false, false],
        |i| Some([b"<s>".as_slice(), b" ", b"x"][i]),
    );
    assert_eq!(
        p.spans,
        vec![Span::new(0, 3), Span::new(3, 3), Span::new(3, 4)]
    );
}

#[test]
fn trimmed_offsets_follow_the_bytes() {
    // GPT-NeoX on "x \n\n  y": `x`, `ĠĊĊ`=(2,4) (trimmed), `ĠĠ`=(6,6) (empty), `y`.
    let text = "x \n\n  y";
    let offs = [(0, 1), (2, 4), (6, 6), (6, 7)];
    let got = spans_of(text, &offs, &[b"x", b" \n\n", b"  ", b"y"]);
    assert_eq!(got, vec![(0, 1), (1, 4), (4, 6), (6, 7)]);
}

#[test]
fn dropped_control_character_shifts_no_token() {
    // t5-small on "\x08Lll,d": offsets one character early after the dropped `\x08`.
    let text = "\x08Lll,d";
    let offs = [(0, 1), (1, 3), (3, 4), (4, 5)];
    let got = spans_of(text, &offs, &[b" L", b"ll", b",", b"d"]);
    assert_eq!(got, vec![(1, 2), (2, 4), (4, 5), (5, 6)]);
}

#[test]
fn normalized_token_spans_to_the_next_token() {
    // Qwen NFC on "e\u{301} x": `é` reported on the "e" only, then `Ġx`.
    let text = "e\u{301} x";
    let p = place_tokens(text, &[(0, 1), (3, 5)], &[false, false], |i| {
        Some(["é".as_bytes(), b" x"][i])
    });
    assert_eq!(p.spans, vec![Span::new(0, 3), Span::new(3, 5)]);
    assert!(p.unpairable.is_empty());
    // Lowercasing: "Héllo" -> `hello`, the character range (and no more).
    let got = spans_of("Héllo", &[(0, 6)], &[b"hello"]);
    assert_eq!(got, vec![(0, 6)]);
}

#[test]
fn tokens_sharing_a_normalized_character_are_unpairable() {
    // NFD on "é!": `e`=(0,2), U+0301=(0,2), `!`=(2,3).
    let p = place_tokens("é!", &[(0, 2), (0, 2), (2, 3)], &[false; 3], |i| {
        Some([b"e".as_slice(), "\u{301}".as_bytes(), b"!"][i])
    });
    assert_eq!(
        p.spans,
        vec![Span::new(0, 2), Span::new(2, 2), Span::new(2, 3)]
    );
    assert_eq!(p.unpairable, vec![true, true, false]);
}

#[test]
fn a_normalizers_byte_piece_does_not_match_past_its_characters() {
    // NFD + byte-level on "Ọ́" (U+1ECC U+0301): `O`, `CC`, `A3` (U+0323) all on "Ọ", then
    // `CC 81` (U+0301). `CC` equals the text's next byte by chance.
    let text = "\u{1ECC}\u{301}";
    let offs = [(0, 3), (0, 3), (0, 3), (3, 5)];
    let bytes: [&[u8]; 4] = [b"O", b"\xcc", b"\xa3", b"\xcc\x81"];
    let p = place_tokens(text, &offs, &[false; 4], |i| Some(bytes[i]));
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 3), (3, 3), (3, 3), (3, 5)]);
    assert_eq!(p.unpairable, vec![true, true, true, false]);
}

#[test]
fn a_byte_piece_after_a_dropped_character() {
    // falcon on "\x05\u{80}": drops `\x05` (no vocabulary entry), `C2`=(0,1), `80`=(1,3).
    let got = spans_of("\x05\u{80}", &[(0, 1), (1, 3)], &[b"\xc2", b"\x80"]);
    assert_eq!(got, vec![(1, 2), (2, 3)]);
}

#[test]
fn unknown_token_before_lagging_offsets() {
    // t5-small on "\x08<0x": `▁`=(0,1), `<unk>`=(0,1) for "<", `0`=(1,2), `x`=(2,3): the
    // offsets lag one character behind the dropped `\x08`.
    let offs = [(0, 1), (0, 1), (1, 2), (2, 3)];
    let bytes = [Some(b" ".as_slice()), None, Some(b"0"), Some(b"x")];
    let p = place_tokens("\x08<0x", &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 2), (2, 3), (3, 4)]);
}

#[test]
fn the_next_tokens_bytes_are_not_searched_in_later_text() {
    // Lowercasing + accent stripping on "ÀA la": `a`=(0,2), `a`=(2,3), `l`, `a`.
    let offs = [(0, 2), (2, 3), (4, 5), (5, 6)];
    let got = spans_of("ÀA la", &offs, &[b"a", b"a", b"l", b"a"]);
    assert_eq!(got, vec![(0, 2), (2, 3), (4, 5), (5, 6)]);
}

#[test]
fn a_normalized_token_reported_on_a_dropped_character() {
    // t5-small on "\x08ﬁ\x00": `▁fi`=(0,1) (on the `\x08`), `<unk>`=(1,4) for the `\x00` (on
    // "ﬁ"): the offsets lag one character, so `▁fi` runs over the `\x08` and "ﬁ".
    let p = place_tokens("\x08ﬁ\x00", &[(0, 1), (1, 4)], &[false; 2], |i| {
        [Some(b" fi".as_slice()), None][i]
    });
    assert_eq!(p.spans, vec![Span::new(0, 4), Span::new(4, 5)]);
    // Both unpairable all the same: an `<unk>` on a control character right after a normalized
    // token may be the second part of its expansion ("\x08Ǆ\x08": the `<unk>` for `Ž`), which
    // bytes and offsets cannot tell from a kept `\x00`: a pair lost, never a wrong one.
    assert_eq!(p.unpairable, vec![true, true]);
    // Where the next token's own bytes say the token ends on the `\x08`, it is left there and
    // may not pair: it does not stand for a dropped character.
    let p = place_tokens("\x08x", &[(0, 1), (1, 2)], &[false; 2], |i| {
        Some([b" fi".as_slice(), b"x"][i])
    });
    assert_eq!(p.spans, vec![Span::new(0, 1), Span::new(1, 2)]);
    assert_eq!(p.unpairable, vec![true, false]);
}

#[test]
fn a_kept_control_character_is_no_lag() {
    // t5-small keeps `\x00` (an `<unk>` with right offsets) on "\x00ﬁca": `▁`=(0,1),
    // `<unk>`=(0,1), `fic`=(1,5), `a`=(5,6). `a` at its reported start says there is no lag.
    let bytes = [Some(b" ".as_slice()), None, Some(b"fic"), Some(b"a")];
    let offs = [(0, 1), (0, 1), (1, 5), (5, 6)];
    let p = place_tokens("\x00ﬁca", &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 1), (1, 5), (5, 6)]);
}

#[test]
fn unknown_then_normalized_token_after_dropped_characters() {
    // t5-small on "\x08{²": `▁`=(0,1), `<unk>`=(0,1) for "{", `2`=(1,2) for "²" (NFKC): no
    // token's bytes are in the text, and the `<unk>` reported on the dropped `\x08` must not
    // leave "{" to the `2`.
    let bytes = [Some(b" ".as_slice()), None, Some(b"2")];
    let p = place_tokens("\x08{²", &[(0, 1), (0, 1), (1, 2)], &[false; 3], |i| {
        bytes[i]
    });
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 2), (2, 4)]);
    // Two dropped characters, then `23` for "²³" and `x`: the lag carries on to the next token.
    let text = "\x08\x08{²³x";
    let offs = [(0, 1), (0, 1), (1, 3), (3, 4)];
    let bytes = [Some(b" ".as_slice()), None, Some(b"23"), Some(b"x")];
    let p = place_tokens(text, &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 3), (3, 7), (7, 8)]);
}

#[test]
fn offsets_lagging_by_two_dropped_characters() {
    // t5-small on "\x08\x08Ünïc" (byte offsets): every token two characters early, the
    // `<unk>` for "ï" included.
    let text = "\x08\x08Ün\u{ef}c";
    let offs = [(0, 2), (2, 3), (3, 5), (5, 6)];
    let bytes = [
        Some("Ü".as_bytes()),
        Some(b"n".as_slice()),
        None,
        Some(b"c"),
    ];
    let p = place_tokens(text, &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(2, 4), (4, 5), (5, 7), (7, 8)]);
}

#[test]
fn a_long_run_of_droppable_characters_is_searched_only_so_far() {
    // Found through its offsets; without them, not found (and so normalized text).
    let text = format!("{}x", " ".repeat(10 * SKIP_LIMIT));
    let n = text.len();
    assert_eq!(spans_of(&text, &[(n - 1, n)], &[b"x"]), vec![(n - 1, n)]);
    assert_eq!(spans_of(&text, &[(0, 0)], &[b"x"]), vec![(0, n)]);
}

#[test]
fn unknown_token_reported_on_a_dropped_character_and_more() {
    // t5-small on "\x08你好，世界" (chars): `▁`=(0,1), `<unk>`=(0,2) for "你好", `,`=(2,3) for
    // "，" (NFKC), `<unk>`=(3,5) for "世界": one character early, from a reported range that
    // starts on the dropped `\x08`.
    let text = "\x08你好，世界";
    let c2b = crate::span::char_to_byte(text);
    let offs = [(0, 1), (0, 2), (2, 3), (3, 5)].map(|(a, b)| (c2b[a], c2b[b]));
    let bytes = [Some(b" ".as_slice()), None, Some(b","), None];
    let p = place_tokens(text, &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 7), (7, 10), (10, 16)]);
    // A token whose own bytes start with the format character it is reported on: no lag.
    let text = "\u{200B}AB\u{C9}";
    let offs = [(0, 5), (5, 7)];
    let got = spans_of(text, &offs, &["\u{200B}ab".as_bytes(), "\u{E9}".as_bytes()]);
    assert_eq!(got, vec![(0, 5), (5, 7)]);
}

#[test]
fn a_byte_piece_of_case_three_is_unpairable() {
    // falcon on "\x05\u{80000}" (F2 80 80 80): drops `\x05` and `F2` (no vocabulary entries),
    // reports `80`=(0,1) on the `\x05`, then `80`, `80` on the character.
    let p = place_tokens(
        "\x05\u{80000}",
        &[(0, 1), (1, 5), (1, 5)],
        &[false; 3],
        |_| Some(b"\x80".as_slice()),
    );
    assert_eq!(p.unpairable, vec![true, true, true]);
}

#[test]
fn pieces_of_one_normalized_character_take_no_lag() {
    // NFKC + lowercase byte-level on "ǄAB": `d`, `C5`, `BE` (pieces of "dž") all on "Ǆ", then
    // `ab`. The empty-placed `C5` is no dummy prefix: `BE` shares "Ǆ" and may not take "A".
    let bytes: [&[u8]; 4] = [b"d", b"\xc5", b"\xbe", b"ab"];
    let p = place_tokens(
        "ǄAB",
        &[(0, 2), (0, 2), (0, 2), (2, 4)],
        &[false; 4],
        |i| Some(bytes[i]),
    );
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 2), (2, 2), (2, 2), (2, 4)]);
    assert_eq!(p.unpairable, vec![true, true, true, false]);
}

#[test]
fn a_kept_control_character_after_a_dropped_one() {
    // t5-small on "\x08\x00ｶﾅ²{" (chars): drops the `\x08`, keeps the `\x00` in its `<unk>`:
    // `▁`=(0,1), `<unk>`=(0,3) for "\x00ｶ", `2`=(3,4) for "²" (NFKC, on "ﾅ"), `<unk>`=(4,5) for "{".
    let text = "\x08\x00ｶﾅ²{";
    let c2b = crate::span::char_to_byte(text);
    let offs = [(0, 1), (0, 3), (3, 4), (4, 5)].map(|(a, b)| (c2b[a], c2b[b]));
    let bytes = [Some(b" ".as_slice()), None, Some(b"2"), None];
    let p = place_tokens(text, &offs, &[false; 4], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 8), (8, 10), (10, 11)]);
}

#[test]
fn the_next_tokens_bytes_must_reach_its_reported_characters() {
    // Qwen (NFC) on "de" + U+0301 U+0301: `dé` for "de" + the first U+0301 but reported on
    // "de" only, then U+0301=(4,6) on the second one; the first U+0301 is not its.
    let text = "de\u{301}\u{301}";
    let p = place_tokens(text, &[(0, 2), (4, 6)], &[false; 2], |i| {
        Some(["dé".as_bytes(), "\u{301}".as_bytes()][i])
    });
    assert_eq!(p.spans, vec![Span::new(0, 4), Span::new(4, 6)]);
}

#[test]
fn a_smaller_lag_that_fits_wins() {
    // t5-small on NFD "\x08\x00U\u{308}ni": drops `\x08`, keeps `\x00` (`<unk>`), composes `Ü`;
    // `▁`=(0,1), `<unk>`=(0,1), `Ü`=(1,2), `n`=(3,4), `i`=(4,5): `n` lies one character on.
    let text = "\x08\x00U\u{308}ni";
    let c2b = crate::span::char_to_byte(text);
    let offs = [(0, 1), (0, 1), (1, 2), (3, 4), (4, 5)].map(|(a, b)| (c2b[a], c2b[b]));
    let bytes = [
        Some(b" ".as_slice()),
        None,
        Some("Ü".as_bytes()),
        Some(b"n"),
        Some(b"i"),
    ];
    let p = place_tokens(text, &offs, &[false; 5], |i| bytes[i]);
    let got: Vec<_> = p.spans.iter().map(|s| (s.start(), s.end())).collect();
    assert_eq!(got, vec![(0, 0), (0, 2), (2, 5), (5, 6), (6, 7)]);
}

#[test]
fn the_second_part_of_an_expansion_on_a_dropped_control() {
    // t5-small on "ﬁ\x08a": `f`=(0,3) on "ﬁ", `i`=(3,4) on the dropped \x08, then `a`.
    let text = "ﬁ\u{8}a";
    let offs = [(0, 3), (3, 4), (4, 5)];
    let p = place_tokens(text, &offs, &[false; 3], |i| {
        Some([b"f".as_slice(), b"i", b"a"][i])
    });
    assert_eq!(p.unpairable, vec![true, true, false]);
    // An `<unk>` (bytes unknown) there too; a token whose bytes are the \x08 is no such part.
    let p = place_tokens(text, &offs[..2], &[false; 2], |i| {
        [Some(b"f".as_slice()), None][i]
    });
    assert_eq!(p.unpairable, vec![true, true]);
    let p = place_tokens("é\u{8}", &[(0, 2), (2, 3)], &[false; 2], |i| {
        Some([b"e".as_slice(), "\u{8}".as_bytes()][i])
    });
    assert!(!p.unpairable.contains(&true));
}

#[test]
fn the_normalizer_says_which_controls_it_drops() {
    // t5-small on "\x00你好，世界\x08": `<unk>`=(0,3) for "\x00你好" (t5 keeps `\x00`), NFKC
    // `,`=(3,4), `<unk>`=(4,6). Guessing, the trailing `\x08` may be kept text after an `<unk>`,
    // so a lag of 1 holds and `,` takes "世"; told that `\x08` is dropped and `\x00` kept, no lag.
    let text = "\x00你好，世界\x08";
    let c2b = char_to_byte(text);
    let offs = [(0, c2b[3]), (c2b[3], c2b[4]), (c2b[4], c2b[6])];
    let bytes = [None, Some(b",".as_slice()), None];
    let guess = place_tokens(text, &offs, &[false; 3], |i| bytes[i]);
    assert_eq!(guess.spans[1], Span::new(c2b[4], c2b[5]));
    let set = DropSet::from_chars(['\x08']);
    let told = place_tokens_with(text, &offs, &[false; 3], |i| bytes[i], Drops::Known(&set));
    assert_eq!(told.spans[1], Span::new(c2b[3], c2b[4]));
    assert!(told.unpairable.is_empty() || !told.unpairable[1]);
    // After a dropped character, a span of case 3 rests on a guessed lag: unpairable.
    let text = "\x08你好，";
    let offs = [(0, 3), (3, 4)];
    let told = place_tokens_with(text, &offs, &[false; 2], |i| bytes[i], Drops::Known(&set));
    assert_eq!(told.unpairable, vec![true, true]);
}
