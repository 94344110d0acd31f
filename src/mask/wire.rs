//! The wire side of masking: RowDescription -> plan, and scrubbing server messages.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::rewrite::{ColumnMask, ResultPlan};
use super::Masking;
use crate::classify::lineage::Taint;
use crate::protocol::frame::cstr;

/// One RowDescription field, as far as masking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub format: i16,
}

/// The fields of a RowDescription body (after the length). None when malformed.
pub fn row_description(mut body: &[u8]) -> Option<Vec<Field>> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    body = &body[2..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, rest) = cstr(body)?;
        let f = rest.get(..18)?;
        out.push(Field {
            table_oid: u32::from_be_bytes([f[0], f[1], f[2], f[3]]),
            attnum: i16::from_be_bytes([f[4], f[5]]),
            type_oid: u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
            format: i16::from_be_bytes([f[16], f[17]]),
        });
        body = &rest[18..];
    }
    Some(out)
}

/// Result format codes from a Bind: none = all text, one = all that, else per column.
pub fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// What masking knows about a statement whose rows are coming.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Per output column, when the shape is known.
    pub outputs: Option<Vec<Taint>>,
    /// Everything masked the statement refers to.
    pub touched: Taint,
}

impl Origin {
    pub fn clean() -> Origin {
        Origin::default()
    }

    pub fn unknown() -> Origin {
        Origin {
            outputs: None,
            touched: Taint::UNKNOWN,
        }
    }
}

/// The plan for one result. `formats` overrides the RowDescription's format codes
/// (a statement Describe shows text; the Bind decides).
pub fn plan(m: &Masking, fields: &[Field], origin: &Origin, formats: Option<&[i16]>) -> ResultPlan {
    let mut columns = Vec::with_capacity(fields.len());
    let mut text_like = Vec::with_capacity(fields.len());
    let mut binary = Vec::with_capacity(fields.len());
    let outputs = origin.outputs.as_ref().filter(|o| o.len() == fields.len());
    for (i, f) in fields.iter().enumerate() {
        let traced = match outputs {
            Some(o) => o[i],
            None if origin.touched.is_clean() => Taint::CLEAN,
            // The shape is unknown but the server vouches for a plain clean column.
            None if m.plain_clean_column(f.table_oid, f.attnum) => Taint::CLEAN,
            None => origin.touched.derive().join(Taint::UNKNOWN),
        };
        // A column of a table the same message made, provably clean (see
        // `Taint::fresh`): the catalog cannot know its OID yet. A relation it does
        // know keeps its own taint (a temporary table that shadows it is that one).
        let by_server = if traced.fresh && traced.is_clean() && !m.knows_relation_oid(f.table_oid) {
            Taint::CLEAN
        } else {
            m.column_taint(f.table_oid, f.attnum)
        };
        let t = by_server.join(traced);
        columns.push(m.method(t).map(|method| ColumnMask {
            method,
            mask_id: m.mask_id(t),
        }));
        text_like.push(m.is_text_like(f.type_oid));
        let format = formats.map_or(f.format, |fm| format_of(fm, i));
        binary.push(format == 1);
    }
    ResultPlan {
        columns,
        text_like,
        binary,
        detectors: m.detectors.clone(),
        fail_closed: true,
    }
}

/// A plan for rows whose RowDescription pgmoat did not see: every value goes.
pub fn blind_plan(ncols: usize) -> ResultPlan {
    ResultPlan {
        columns: vec![
            Some(ColumnMask {
                method: super::method::Method::Null,
                mask_id: Arc::from("unknown-origin"),
            });
            ncols
        ],
        text_like: vec![false; ncols],
        binary: vec![false; ncols],
        detectors: None,
        fail_closed: true,
    }
}

/// Rewrite an ErrorResponse or NoticeResponse (whole message) so it cannot carry
/// masked values out: when the statement touched masked data, values the server
/// quotes are withheld, and DETAIL/HINT/CONTEXT lines (`Failing row contains (...)`,
/// `RAISE NOTICE '%', ssn`) replaced; detectors run over every text field. None
/// when nothing changes.
pub fn scrub_message(msg: &[u8], touched: bool, m: &Masking) -> Option<BytesMut> {
    if msg.len() < 5 {
        return None;
    }
    let tag = msg[0];
    let mut body = &msg[5..];
    let mut fields: Vec<(u8, Vec<u8>)> = Vec::new();
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            break;
        }
        let (value, rest) = cstr(rest)?;
        fields.push((kind, value.to_vec()));
        body = rest;
    }
    let code = fields
        .iter()
        .find(|(k, _)| *k == b'C')
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Messages a function writes itself (RAISE): any text at all.
    let raised = code.starts_with(b"P0") || code == b"00000" || code.starts_with(b"01");
    let mut changed = false;
    let mut scratch = Vec::new();
    for (kind, value) in fields.iter_mut() {
        if matches!(*kind, b'S' | b'V' | b'C' | b'F' | b'L' | b'R' | b'P' | b'p') {
            continue;
        }
        if touched && !value.is_empty() {
            let replaced: Option<Vec<u8>> = match *kind {
                b'M' if raised => {
                    Some(b"pgmoat: message withheld (the statement reads masked columns)".to_vec())
                }
                b'M' | b'W' | b'q' => withhold_quoted(value),
                b'D' | b'H' => {
                    Some(b"pgmoat: withheld (the statement reads masked columns)".to_vec())
                }
                _ => None,
            };
            if let Some(r) = replaced {
                *value = r;
                changed = true;
            }
        }
        if let Some(d) = &m.detectors {
            if d.scan(value, &mut scratch).is_some() {
                std::mem::swap(value, &mut scratch);
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    let mut out = BytesMut::with_capacity(msg.len());
    out.put_u8(tag);
    out.put_i32(0);
    for (kind, value) in &fields {
        out.put_u8(*kind);
        put_cstr(&mut out, value);
    }
    out.put_u8(0);
    set_length(&mut out);
    Some(out)
}

/// A value as a NUL-ended string: a NUL inside it would end the field early.
fn put_cstr(out: &mut BytesMut, value: &[u8]) {
    out.extend(value.iter().map(|&b| if b == 0 { b'?' } else { b }));
    out.put_u8(0);
}

/// Fill in the length of the message `out` holds (tag, length, body).
fn set_length(out: &mut BytesMut) {
    let n = (out.len() - 1) as i32;
    out[1..5].copy_from_slice(&n.to_be_bytes());
}

/// Run the detectors over a message made of `skip` fixed bytes and then NUL-ended
/// strings (NotificationResponse, ParameterStatus). None when nothing changes.
pub fn scrub_strings(msg: &[u8], skip: usize, m: &Masking) -> Option<BytesMut> {
    let d = m.detectors.as_ref()?;
    let mut rest = msg.get(5 + skip..)?;
    let mut values = Vec::new();
    while !rest.is_empty() {
        let (value, tail) = cstr(rest)?;
        values.push(value);
        rest = tail;
    }
    let mut scratch = Vec::new();
    let mut out = BytesMut::with_capacity(msg.len());
    out.extend_from_slice(&msg[..5 + skip]);
    let mut changed = false;
    for v in values {
        if d.scan(v, &mut scratch).is_some() {
            changed = true;
            put_cstr(&mut out, &scratch);
        } else {
            put_cstr(&mut out, v);
        }
    }
    if !changed {
        return None;
    }
    set_length(&mut out);
    Some(out)
}

/// `invalid input syntax for type integer: "123-45-6789"` -> `...: "****"`: everything
/// between the first and the last double quote, and single-quoted literals, goes.
fn withhold_quoted(v: &[u8]) -> Option<Vec<u8>> {
    let first = v.iter().position(|&b| b == b'"' || b == b'\'')?;
    let last = v.iter().rposition(|&b| b == b'"' || b == b'\'')?;
    if last <= first {
        let mut out = v[..first].to_vec();
        out.extend_from_slice(b"****");
        return Some(out);
    }
    let mut out = v[..=first].to_vec();
    out.extend_from_slice(b"****");
    out.extend_from_slice(&v[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_go() {
        assert_eq!(
            withhold_quoted(b"invalid input syntax for type integer: \"123-45-6789\"").unwrap(),
            b"invalid input syntax for type integer: \"****\"".to_vec()
        );
        assert_eq!(withhold_quoted(b"no quotes"), None);
        assert_eq!(
            withhold_quoted(b"one \" quote").unwrap(),
            b"one ****".to_vec()
        );
    }

    #[test]
    fn row_description_parses_and_rejects_garbage() {
        let mut b = BytesMut::new();
        b.put_u16(1);
        b.extend_from_slice(b"ssn\0");
        b.put_u32(16400);
        b.put_i16(3);
        b.put_u32(25);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i16(1);
        let f = row_description(&b).unwrap();
        assert_eq!(
            f,
            vec![Field {
                table_oid: 16400,
                attnum: 3,
                type_oid: 25,
                format: 1
            }]
        );
        for cut in 0..b.len() {
            assert!(row_description(&b[..cut]).is_none());
        }
    }
}
