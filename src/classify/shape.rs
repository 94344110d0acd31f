//! The shape key: the same for statements differing only in literal values, so a
//! classification that holds for any literals is found again for a text never seen.
//!
//! It is computed for every statement whose exact text is not cached (`pgbench -S`
//! sends a new literal each time), so the common case is one pass over the bytes
//! into a buffer the caller keeps: no allocation, no second scan for the bytes and
//! words that deny a shape.

/// A key that is the same for statements differing only in literal values: the
/// scanner's tokens (the server's own lexer, so quoting and comments are read exactly
/// as the server reads them), literals replaced by a placeholder, comments dropped.
pub fn shape_key(sql: &str) -> Option<String> {
    let mut key = String::new();
    shape_key_into(sql, &mut key).then_some(key)
}

/// [`shape_key`] written into `key` (emptied first, its memory reused): false when the
/// text gets no shape (then `key` holds nothing meaningful).
///
/// A text gets no shape when it holds byte 0 or 1 (the key's markers) or the word
/// `UESCAPE` in any case, anywhere: that one string literal changes what other tokens
/// mean (`U&"!0073ecret" UESCAPE '!'` is the table `secret`, with `'#'` another
/// name), so such texts are cached by their exact text only (a comment or a literal
/// holding the word only costs the shape cache).
pub fn shape_key_into(sql: &str, key: &mut String) -> bool {
    key.clear();
    match fast_shape_key(sql, key) {
        Fast::Key => true,
        Fast::NoShape => false,
        Fast::Unsure => {
            // The fast pass stopped early: what it did not look at is checked here.
            if sql.bytes().any(|c| c <= 1) || has_uescape(sql.as_bytes()) {
                return false;
            }
            match scanned_shape_key(sql) {
                Some(k) => {
                    *key = k;
                    true
                }
                None => false,
            }
        }
    }
}

/// Whether `UESCAPE` (any case) is in the text, wherever.
fn has_uescape(b: &[u8]) -> bool {
    memchr::memchr2_iter(b'u', b'U', b).any(|i| uescape_at(b, i))
}

fn uescape_at(b: &[u8], i: usize) -> bool {
    b.get(i..i + 7)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"uescape"))
}

/// What the fast pass made of a text.
enum Fast {
    /// `key` is the text's shape key.
    Key,
    /// The text gets no shape (a marker byte or `UESCAPE` in it).
    NoShape,
    /// Something it does not read (comments, dollar quotes, parameters,
    /// letter-prefixed strings): the server's scanner decides.
    Unsure,
}

/// Bytes the fast pass stops at; every other byte is copied as written.
const STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let stops = b"\x00\x01uU$-/\"'0123456789";
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
};

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The common case without a libpg_query call: plain statements with no comments,
/// dollar quotes, parameters or letter-prefixed strings (`E'..'`, `B'..'`; a `U&'..'`
/// string is folded like any other, its value being a literal's): digit runs and
/// standard single-quoted strings are folded, everything else is kept as written.
/// (Sessions cannot turn standard_conforming_strings off, so a backslash in a plain
/// string is just a character.) Every byte of a text it returns `Key` or `NoShape` for
/// was looked at for the marker bytes and `UESCAPE`, inside quotes too.
fn fast_shape_key(sql: &str, key: &mut String) -> Fast {
    let b = sql.as_bytes();
    key.reserve(b.len() + 2);
    key.push_str("F\u{0}");
    let mut i = 0;
    let mut start = 0; // start of the verbatim run not yet copied
    while i < b.len() {
        let c = b[i];
        if !STOPS[c as usize] {
            i += 1;
            continue;
        }
        match c {
            0 | 1 => return Fast::NoShape,
            b'u' | b'U' => {
                if uescape_at(b, i) {
                    return Fast::NoShape;
                }
                i += 1;
            }
            b'$' => return Fast::Unsure,
            b'-' if b.get(i + 1) == Some(&b'-') => return Fast::Unsure,
            b'/' if b.get(i + 1) == Some(&b'*') => return Fast::Unsure,
            b'"' => {
                // Quoted identifier: verbatim to its closing quote ("" escapes one).
                i = match quoted(b, i + 1, b'"') {
                    Ok(end) => end,
                    Err(f) => return f,
                };
            }
            b'\'' => {
                if i > 0 && ident(b[i - 1]) {
                    return Fast::Unsure; // E'..', U&'..', B'..', X'..', N'..'
                }
                let lit_start = i;
                i = match quoted(b, i + 1, b'\'') {
                    Ok(end) => end,
                    Err(f) => return f,
                };
                let Some(run) = sql.get(start..lit_start) else {
                    return Fast::Unsure;
                };
                key.push_str(run);
                key.push('\u{1}');
                start = i;
            }
            b'0'..=b'9' if i == 0 || !ident(b[i - 1]) => {
                let lit_start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let Some(run) = sql.get(start..lit_start) else {
                    return Fast::Unsure;
                };
                key.push_str(run);
                // Not a string's marker: a number is a typed value (`7::t` runs a
                // CREATE CAST function, `'7'::t` does not), so the two never share.
                key.push('\u{0}');
                start = i;
            }
            _ => i += 1,
        }
    }
    match sql.get(start..) {
        Some(run) => {
            key.push_str(run);
            Fast::Key
        }
        None => Fast::Unsure,
    }
}

/// The end (just past the closing quote) of a quoted run whose body starts at `i`;
/// a doubled quote is one quote inside it. Its bytes are checked like any other's.
fn quoted(b: &[u8], mut i: usize, quote: u8) -> Result<usize, Fast> {
    loop {
        match b.get(i) {
            None => return Err(Fast::Unsure),
            Some(&c) if c == quote => {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            Some(0 | 1) => return Err(Fast::NoShape),
            Some(b'u' | b'U') if uescape_at(b, i) => return Err(Fast::NoShape),
            Some(_) => i += 1,
        }
    }
}

fn scanned_shape_key(sql: &str) -> Option<String> {
    use pg_query::protobuf::Token;
    let scanned = pg_query::scan(sql).ok()?;
    let mut key = String::with_capacity(sql.len() + 8);
    key.push_str("S\u{0}");
    for t in &scanned.tokens {
        let tok = t.token;
        if tok == Token::SqlComment as i32 || tok == Token::CComment as i32 {
            continue;
        }
        // Each kind of literal its own marker: a string, a number and a bit string
        // are different values to the walker (a number's cast runs a CREATE CAST
        // function, a string literal's does not).
        let marker = [
            (Token::Sconst, "\u{1}S"),
            (Token::Usconst, "\u{1}S"),
            (Token::Iconst, "\u{1}N"),
            (Token::Fconst, "\u{1}N"),
            (Token::Bconst, "\u{1}B"),
            (Token::Xconst, "\u{1}X"),
        ]
        .iter()
        .find(|(l, _)| *l as i32 == tok)
        .map(|(_, m)| *m);
        if let Some(m) = marker {
            key.push_str(m);
        } else {
            let (a, b) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
            key.push_str(sql.get(a..b)?);
        }
        key.push('\u{0}');
    }
    Some(key)
}

#[cfg(test)]
pub(super) fn scanned_for_tests(sql: &str) -> Option<String> {
    scanned_shape_key(sql)
}
