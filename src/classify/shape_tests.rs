//! The shape key against the implementation it replaced (kept here as the reference):
//! the same key, or the same refusal of one, for every text, byte for byte. Keys are
//! compared across versions (approval grants name them), so they must not change.

use super::shape::shape_key;

/// A key that is the same for statements differing only in literal values: the
/// scanner's tokens (the server's own lexer, so quoting and comments are read exactly
/// as the server reads them), literals replaced by a placeholder, comments dropped.
fn reference(sql: &str) -> Option<String> {
    // The key uses these two bytes as markers; a text holding them gets no shape.
    if sql.bytes().any(|c| c <= 1) {
        return None;
    }
    // The one string literal that changes what other tokens mean: `U&"!0073ecret"
    // UESCAPE '!'` is the table `secret`, with `'#'` another name. Such texts are
    // cached by their exact text only.
    if has_uescape(sql.as_bytes()) {
        return None;
    }
    reference_fast(sql).or_else(|| super::shape::scanned_for_tests(sql))
}

/// Whether `UESCAPE` (any case) is in the text, wherever (a comment or a literal
/// holding it only costs the shape cache).
fn has_uescape(b: &[u8]) -> bool {
    memchr::memchr2_iter(b'u', b'U', b).any(|i| {
        b.get(i..i + 7)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"uescape"))
    })
}

/// The common case without a libpg_query call: plain statements with no comments,
/// dollar quotes, parameters or letter-prefixed strings (`E'..'`, `B'..'`; a `U&'..'`
/// string is folded like any other, its value being a literal's): digit
/// runs and standard single-quoted strings are folded, everything else is kept as
/// written. Anything it is not sure of returns None and the server's own scanner
/// decides instead. (Sessions cannot turn standard_conforming_strings off, so a
/// backslash in a plain string is just a character.)
fn reference_fast(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut key = String::with_capacity(sql.len() + 2);
    key.push_str("F\u{0}");
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut i = 0;
    let mut start = 0; // start of the verbatim run not yet copied
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && ident(b[i - 1]);
        match c {
            b'$' => return None,
            b'-' if b.get(i + 1) == Some(&b'-') => return None,
            b'/' if b.get(i + 1) == Some(&b'*') => return None,
            b'"' => {
                // Quoted identifier: verbatim to its closing quote ("" escapes one).
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'\'' => {
                if prev_ident {
                    return None; // E'..', U&'..', B'..', X'..', N'..'
                }
                let lit_start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return None,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                key.push_str(sql.get(start..lit_start)?);
                key.push('\u{1}');
                start = i;
            }
            b'0'..=b'9' if !prev_ident => {
                let lit_start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                key.push_str(sql.get(start..lit_start)?);
                // Not a string's marker: a number is a typed value (`7::t` runs a
                // CREATE CAST function, `'7'::t` does not), so the two never share.
                key.push('\u{0}');
                start = i;
            }
            _ => i += 1,
        }
    }
    key.push_str(sql.get(start..)?);
    Some(key)
}

/// Pieces that exercise every branch: quotes (doubled, unterminated), numbers after
/// identifier characters, comments, dollar quotes, prefixed strings, the marker bytes,
/// UESCAPE in any case and inside quotes, non-ASCII.
const PIECES: &[&str] = &[
    "SELECT ",
    "abalance",
    " FROM ",
    "pgbench_accounts",
    " WHERE aid = ",
    "12",
    "007",
    "a1",
    "_9",
    " ",
    "\n",
    "'a''b'",
    "''",
    "'",
    "\"x\"\"y\"",
    "\"",
    "\"q\"",
    "-",
    "--c\n",
    "/",
    "/* c */",
    "*",
    "$1",
    "$$q$$",
    "$",
    "E'x'",
    "U&'x'",
    "U&\"x\"",
    "B'1'",
    "x'",
    "N'n'",
    "uescape",
    "UeScApe",
    " UESCAPE '!'",
    "'uescape'",
    "\"UESCAPE\"",
    "u",
    "U",
    "escape",
    "\u{1}",
    "\u{0}",
    "é",
    "'é'",
    "ü1",
    "::t",
    "(",
    ")",
    ",",
    ";",
    "1.5",
    "e",
    "€'x'",
];

#[test]
fn the_fast_pass_keys_every_text_as_the_reference_does() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut keyed = 0;
    let mut buf = String::new();
    for _ in 0..20_000 {
        let mut sql = String::new();
        for _ in 0..1 + next() % 8 {
            sql.push_str(PIECES[next() % PIECES.len()]);
        }
        let new = shape_key(&sql);
        assert_eq!(new, reference(&sql), "{sql:?}");
        // The buffer form gives the same, whatever the buffer held before.
        assert_eq!(
            super::shape_key_into(&sql, &mut buf).then(|| buf.clone()),
            new,
            "{sql:?}"
        );
        keyed += usize::from(new.is_some());
    }
    // Both outcomes are exercised, and plenty of each.
    assert!(keyed > 2_000, "{keyed}");
    assert!(keyed < 18_000, "{keyed}");
}
