//! DataRow rewriting in place: untouched columns are copied as byte ranges, masked
//! ones re-encoded, and one new message written. A row nothing changes in is not
//! copied at all: the caller forwards the original bytes.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::detect::Detectors;
use super::method::Method;

/// What to do with one output column.
#[derive(Debug, Clone)]
pub struct ColumnMask {
    pub method: Method,
    /// Which mask (or "unknown") decided it, for explain and the audit.
    pub mask_id: Arc<str>,
}

/// How one result's rows are masked. Built per RowDescription; an empty plan means
/// DataRows are forwarded untouched.
#[derive(Debug, Clone, Default)]
pub struct ResultPlan {
    pub columns: Vec<Option<ColumnMask>>,
    /// Per column: text-like type (a masked string is a valid value).
    pub text_like: Vec<bool>,
    /// Per column: binary format.
    pub binary: Vec<bool>,
    pub detectors: Option<Arc<Detectors>>,
    /// Rows whose column count does not match are masked whole (NULL).
    pub fail_closed: bool,
}

impl ResultPlan {
    pub fn is_empty(&self) -> bool {
        self.detectors.is_none() && self.columns.iter().all(Option::is_none)
    }

    pub fn masked_columns(&self) -> usize {
        self.columns.iter().filter(|c| c.is_some()).count()
    }
}

/// Reusable buffers: no allocation per row once warm.
#[derive(Debug, Default)]
pub struct Scratch {
    value: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct MalformedRow;

/// What happened to a row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowOutcome {
    /// A new message was appended to `out`.
    pub rewritten: bool,
    /// Values masked (by column masks and detectors).
    pub masked: u32,
}

enum Replacement<'a> {
    Keep,
    Null,
    Value(&'a [u8]),
}

/// Rewrite one whole DataRow message (`msg` includes the tag and length). When
/// nothing changes, nothing is written and `rewritten` is false.
pub fn rewrite_data_row(
    msg: &[u8],
    plan: &ResultPlan,
    scratch: &mut Scratch,
    out: &mut BytesMut,
) -> Result<RowOutcome, MalformedRow> {
    if msg.len() < 7 {
        return Err(MalformedRow);
    }
    let ncols = u16::from_be_bytes([msg[5], msg[6]]) as usize;
    let mismatch = ncols != plan.columns.len();
    let mut pos = 7;
    // Start of the bytes not yet copied, once a rewrite has begun.
    let mut copied: Option<usize> = None;
    let mut start_len = 0;
    let mut outcome = RowOutcome::default();
    for i in 0..ncols {
        let hdr = msg.get(pos..pos + 4).ok_or(MalformedRow)?;
        let len = i32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let vstart = pos + 4;
        let vend = if len < 0 {
            if len != -1 {
                return Err(MalformedRow);
            }
            vstart
        } else {
            vstart
                .checked_add(len as usize)
                .filter(|e| *e <= msg.len())
                .ok_or(MalformedRow)?
        };
        let value = (len >= 0).then(|| &msg[vstart..vend]);
        let repl = match value {
            None => Replacement::Keep,
            Some(_) if mismatch && plan.fail_closed => Replacement::Null,
            Some(_) if mismatch => Replacement::Keep,
            Some(v) => decide(v, i, plan, scratch),
        };
        if !matches!(repl, Replacement::Keep) {
            outcome.masked += 1;
            let from = match copied {
                Some(c) => c,
                None => {
                    start_len = out.len();
                    out.reserve(msg.len() + 16);
                    out.put_u8(b'D');
                    out.put_i32(0); // back-filled below
                    out.put_u16(ncols as u16);
                    7
                }
            };
            out.extend_from_slice(&msg[from..pos]);
            match repl {
                Replacement::Null => out.put_i32(-1),
                Replacement::Value(v) => {
                    out.put_i32(v.len() as i32);
                    out.extend_from_slice(v);
                }
                Replacement::Keep => {}
            }
            copied = Some(vend);
        }
        pos = vend;
    }
    if pos != msg.len() {
        return Err(MalformedRow);
    }
    if let Some(c) = copied {
        out.extend_from_slice(&msg[c..]);
        let total = (out.len() - start_len - 1) as i32;
        out[start_len + 1..start_len + 5].copy_from_slice(&total.to_be_bytes());
        outcome.rewritten = true;
    }
    Ok(outcome)
}

fn decide<'s>(v: &[u8], i: usize, plan: &ResultPlan, scratch: &'s mut Scratch) -> Replacement<'s> {
    let text_like = plan.text_like.get(i).copied().unwrap_or(false);
    if let Some(Some(m)) = plan.columns.get(i) {
        if !text_like || !m.method.apply(v, &mut scratch.value) {
            return Replacement::Null;
        }
        return Replacement::Value(&scratch.value);
    }
    if let Some(d) = &plan.detectors {
        // Binary values of other types are scanned as bytes too: an array, a json or
        // a record carries its text elements as they are. A hit cannot be rewritten
        // inside such a value, so the value goes.
        if d.scan(v, &mut scratch.value).is_some() {
            if !text_like {
                return Replacement::Null;
            }
            return Replacement::Value(&scratch.value);
        }
    }
    Replacement::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_u8(b'D');
        b.put_i32(0);
        b.put_u16(values.len() as u16);
        for v in values {
            match v {
                None => b.put_i32(-1),
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.extend_from_slice(v);
                }
            }
        }
        let n = (b.len() - 1) as i32;
        b[1..5].copy_from_slice(&n.to_be_bytes());
        b.to_vec()
    }

    fn plan(masks: &[Option<Method>], text_like: &[bool]) -> ResultPlan {
        ResultPlan {
            columns: masks
                .iter()
                .map(|m| {
                    m.clone().map(|method| ColumnMask {
                        method,
                        mask_id: "m".into(),
                    })
                })
                .collect(),
            text_like: text_like.to_vec(),
            binary: vec![false; masks.len()],
            detectors: None,
            fail_closed: true,
        }
    }

    #[test]
    fn masks_only_planned_columns() {
        let msg = row(&[Some(b"1"), Some(b"123-45-6789"), None, Some(b"x@y.com")]);
        let p = plan(
            &[
                None,
                Some(Method::Partial { keep_last: 4 }),
                Some(Method::Redact),
                Some(Method::Null),
            ],
            &[false, true, true, true],
        );
        let mut out = BytesMut::new();
        let o = rewrite_data_row(&msg, &p, &mut Scratch::default(), &mut out).unwrap();
        assert!(o.rewritten);
        assert_eq!(o.masked, 2, "a NULL stays NULL");
        assert_eq!(
            out.to_vec(),
            row(&[Some(b"1"), Some(b"***-**-6789"), None, None])
        );
    }

    #[test]
    fn non_text_becomes_null_and_empty_plan_writes_nothing() {
        let msg = row(&[Some(b"42"), Some(b"t")]);
        let p = plan(&[Some(Method::Redact), None], &[false, false]);
        let mut out = BytesMut::new();
        rewrite_data_row(&msg, &p, &mut Scratch::default(), &mut out).unwrap();
        assert_eq!(out.to_vec(), row(&[None, Some(b"t")]));
        let mut out = BytesMut::new();
        let o = rewrite_data_row(
            &msg,
            &plan(&[None, None], &[true, true]),
            &mut Scratch::default(),
            &mut out,
        )
        .unwrap();
        assert!(!o.rewritten);
        assert!(out.is_empty());
    }

    #[test]
    fn column_count_mismatch_fails_closed() {
        let msg = row(&[Some(b"a"), Some(b"b")]);
        let p = plan(&[None], &[true]);
        let mut out = BytesMut::new();
        rewrite_data_row(&msg, &p, &mut Scratch::default(), &mut out).unwrap();
        assert_eq!(out.to_vec(), row(&[None, None]));
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let p = plan(&[Some(Method::Redact)], &[true]);
        let mut good = row(&[Some(b"abc")]);
        for cut in 0..good.len() {
            let mut out = BytesMut::new();
            assert!(rewrite_data_row(&good[..cut], &p, &mut Scratch::default(), &mut out).is_err());
        }
        good[7..11].copy_from_slice(&(-5i32).to_be_bytes());
        let mut out = BytesMut::new();
        assert!(rewrite_data_row(&good, &p, &mut Scratch::default(), &mut out).is_err());
    }
}
