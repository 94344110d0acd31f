//! The wire side of masking: RowDescription -> plan, and scrubbing server messages.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::rewrite::{ColumnMask, ResultPlan};
use super::Masking;
use crate::classify::lineage::Taint;
use crate::protocol::backend_view::{strings_after, ResponseFields, RowDescription};

/// One RowDescription field, as far as masking cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub format: i16,
}

/// The fields of a RowDescription body (after the length). None when malformed.
pub fn row_description(body: &[u8]) -> Option<Vec<Field>> {
    row_description_like(body, None).map(|f| f.to_vec())
}

fn field(f: crate::protocol::backend_view::FieldDescription<'_>) -> Field {
    Field {
        table_oid: f.table_oid,
        attnum: f.attnum,
        type_oid: f.type_oid,
        format: f.format,
    }
}

/// [`row_description`], shared: `last` itself when the body describes the same fields
/// (a prepared statement's every Describe does), so no allocation per result.
pub fn row_description_like(body: &[u8], last: Option<&Arc<[Field]>>) -> Option<Arc<[Field]>> {
    let t = RowDescription::parse(body).ok()?;
    if let Some(last) = last {
        if t.len() == last.len() && t.fields().map(field).eq(last.iter().copied()) {
            return Some(Arc::clone(last));
        }
    }
    Some(t.fields().map(field).collect())
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Per output column, when the shape is known (shared: a portal's copy of its
    /// statement's origin, made at every Bind, costs no allocation).
    pub outputs: Option<Arc<[Taint]>>,
    /// Everything masked the statement refers to.
    pub touched: Taint,
    /// Its errors and notices are withheld even though it reads nothing masked: it
    /// writes or changes a relation with masked columns (a duplicate key's DETAIL, a
    /// failing CHECK's row, print values the statement never read).
    pub withhold: bool,
}

impl Origin {
    pub fn clean() -> Origin {
        Origin::default()
    }

    pub fn unknown() -> Origin {
        Origin {
            outputs: None,
            touched: Taint::UNKNOWN,
            withhold: true,
        }
    }

    /// Whether the text of its errors and notices must be withheld.
    pub fn withholds(&self) -> bool {
        self.withhold
            || !self.touched.is_clean()
            || self
                .outputs
                .as_ref()
                .is_some_and(|o| o.iter().any(|t| !t.is_clean()))
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

/// The message a withheld ErrorResponse carries instead of the server's.
pub const WITHHELD_ERROR: &[u8] =
    b"pgmoat: the error's text is withheld: the statement reads masked data";
/// The same for a NoticeResponse.
pub const WITHHELD_NOTICE: &[u8] =
    b"pgmoat: the notice's text is withheld: the statement reads masked data";

/// Fields that cannot carry a value: severity (S, V), SQLSTATE (C), the server's
/// source location (F, L, R: constants of its code) and the error's position in the
/// client's own query text (P). Everything else (message, detail, hint, context,
/// internal query and its position, schema/table/column/type/constraint names, which
/// RAISE ... USING sets to any text, and fields future servers add) can.
fn carries_no_value(kind: u8) -> bool {
    matches!(kind, b'S' | b'V' | b'C' | b'F' | b'L' | b'R' | b'P')
}

/// SQLSTATEs whose server message (not its DETAIL) names only objects: `duplicate key
/// value violates unique constraint "t_pkey"`, `null value in column "c" of relation
/// "t" violates not-null constraint`, `division by zero`. A withheld error keeps that
/// message (the everyday errors of writes to tables with masked columns stay
/// readable). Not `22P02` and the like (they quote the value), nor `42P01`/`42883`
/// (`'123-45-6789'::regclass` names a relation by a value).
const NAMES_ONLY: &[&[u8]] = &[
    b"23502", // not_null_violation
    b"23503", // foreign_key_violation
    b"23505", // unique_violation
    b"23514", // check_violation
    b"23P01", // exclusion_violation
    b"22012", // division_by_zero
    b"25P02", // in_failed_sql_transaction
    b"40001", // serialization_failure
    b"40P01", // deadlock_detected
    b"55P03", // lock_not_available
    b"57014", // query_canceled
];

/// Whether an ErrorResponse or NoticeResponse (whole message) was raised inside code
/// the statement ran (a function, a trigger, a deferred constraint trigger): such
/// code is where pgmoat cannot see (the catalog pgmoat reads leaves triggers out),
/// and the server says so in the context field (`PL/pgSQL function f() line 2 at
/// RAISE`, `SQL function "f" statement 1`).
pub fn raised_in_code(msg: &[u8]) -> bool {
    ResponseFields::new(msg.get(5..).unwrap_or_default()).any(|f| match f {
        Ok((kind, _)) => kind == b'W',
        // Unreadable: treat as the worst case.
        Err(_) => true,
    })
}

/// Rewrite an ErrorResponse or NoticeResponse (whole message) so it cannot carry
/// masked values out. When `withhold` (the statement that produced it reads masked
/// data, or pgmoat cannot tell what it reads), the rule cannot miss: only the fields
/// that cannot carry a value are kept, and the message becomes a generic one, so
/// values the server prints bare (`date field value out of range: 2000-91000-01`, a
/// JSON error's CONTEXT line, a duplicate key's DETAIL) never pass. Otherwise the
/// detectors run over every text field. None when nothing changes.
pub fn scrub_message(
    msg: &[u8],
    withhold: bool,
    detectors: Option<&super::detect::Detectors>,
) -> Option<BytesMut> {
    if msg.len() < 5 {
        return None;
    }
    let tag = msg[0];
    let body = &msg[5..];
    if withhold {
        let mut out = BytesMut::with_capacity(msg.len().min(256));
        out.put_u8(tag);
        out.put_i32(0);
        let mut fields_ok = true;
        let (mut code, mut message, mut context) = (&b""[..], None, false);
        for field in ResponseFields::new(body) {
            let Ok((kind, value)) = field else {
                // Unreadable: nothing of it is kept but the generic text.
                fields_ok = false;
                break;
            };
            match kind {
                b'C' => code = value,
                b'M' => message = Some(value),
                b'W' => context = true,
                _ => {}
            }
            if carries_no_value(kind) {
                out.put_u8(kind);
                put_cstr(&mut out, value);
            }
        }
        // The server's own message for these names objects, never values; raised by
        // code (RAISE can use any SQLSTATE) it always comes with a context.
        let kept = message.filter(|m| {
            fields_ok
                && !context
                && NAMES_ONLY.contains(&code)
                && detectors.is_none_or(|d| d.scan(m, &mut Vec::new()).is_none())
        });
        if !fields_ok {
            out.truncate(5);
            out.put_u8(b'S');
            put_cstr(&mut out, if tag == b'E' { b"ERROR" } else { b"NOTICE" });
            out.put_u8(b'C');
            put_cstr(&mut out, b"XX000");
        }
        out.put_u8(b'M');
        put_cstr(
            &mut out,
            match kept {
                Some(m) => m,
                None if tag == b'E' => WITHHELD_ERROR,
                None => WITHHELD_NOTICE,
            },
        );
        out.put_u8(0);
        set_length(&mut out);
        return Some(out);
    }
    let d = detectors?;
    let fields: Vec<(u8, &[u8])> = ResponseFields::new(body).collect::<Result<_, _>>().ok()?;
    let mut scanned: Vec<Option<Vec<u8>>> = Vec::with_capacity(fields.len());
    let mut changed = false;
    for (kind, value) in &fields {
        let mut scratch = Vec::new();
        if !carries_no_value(*kind) && d.scan(value, &mut scratch).is_some() {
            changed = true;
            scanned.push(Some(scratch));
        } else {
            scanned.push(None);
        }
    }
    if !changed {
        return None;
    }
    let mut out = BytesMut::with_capacity(msg.len());
    out.put_u8(tag);
    out.put_i32(0);
    for ((kind, value), s) in fields.iter().zip(&scanned) {
        out.put_u8(*kind);
        put_cstr(&mut out, s.as_deref().unwrap_or(value));
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
    let values: Vec<&[u8]> = strings_after(msg.get(5..)?, skip)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_u8(b'E');
        b.put_i32(0);
        for (k, v) in fields {
            b.put_u8(*k);
            put_cstr(&mut b, v.as_bytes());
        }
        b.put_u8(0);
        set_length(&mut b);
        b.to_vec()
    }

    fn fields_of(msg: &[u8]) -> Vec<(u8, String)> {
        crate::protocol::backend::parse_fields(&msg[5..])
    }

    #[test]
    fn withheld_messages_keep_only_fields_that_carry_no_value() {
        let msg = error(&[
            (b'S', "ERROR"),
            (b'V', "ERROR"),
            (b'C', "22008"),
            (b'M', "date field value out of range: 2000-91000-01"),
            (b'D', "Key (card)=(4111) is duplicated."),
            (b'W', "JSON data, line 1: 123"),
            (b'c', "123-45-6789"),
            (b'q', "SELECT 91000"),
            (b'p', "3"),
            (b'P', "8"),
            (b'F', "datetime.c"),
            (b'x', "a field a later server adds"),
        ]);
        let out = scrub_message(&msg, true, None).unwrap();
        assert_eq!(crate::protocol::frame::total_len(&out), Some(out.len()));
        let got = fields_of(&out);
        let kinds: Vec<u8> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, b"SVCPFM".to_vec());
        assert_eq!(got[2].1, "22008");
        assert_eq!(got[5].1.as_bytes(), WITHHELD_ERROR);
        // A constraint's own message names it; its DETAIL (the key) goes.
        let dup = error(&[
            (b'S', "ERROR"),
            (b'C', "23505"),
            (
                b'M',
                "duplicate key value violates unique constraint \"t_pkey\"",
            ),
            (b'D', "Key (card)=(4111) already exists."),
        ]);
        let got = fields_of(&scrub_message(&dup, true, None).unwrap());
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[2].1.contains("t_pkey"), "{got:?}");
        // Raised by code with that SQLSTATE: a context, so nothing is kept.
        let raised = error(&[
            (b'S', "ERROR"),
            (b'C', "23505"),
            (b'M', "123-45-6789"),
            (b'W', "PL/pgSQL function inline_code_block line 1 at RAISE"),
        ]);
        let got = fields_of(&scrub_message(&raised, true, None).unwrap());
        assert_eq!(got[2].1.as_bytes(), WITHHELD_ERROR);
        // Nothing withheld and no detectors: the server's message as it is.
        assert!(scrub_message(&msg, false, None).is_none());
        // Garbage is not passed on either.
        let out = scrub_message(&msg[..20], true, None).unwrap();
        let got = fields_of(&out);
        assert!(got.iter().all(|(_, v)| !v.contains("2000")), "{got:?}");
    }

    #[test]
    fn a_context_field_says_the_message_came_from_code() {
        let plain = error(&[(b'S', "ERROR"), (b'C', "23505"), (b'M', "duplicate")]);
        assert!(!raised_in_code(&plain));
        let raised = error(&[
            (b'S', "ERROR"),
            (b'C', "P0001"),
            (b'M', "x"),
            (b'W', "PL/pgSQL function f() line 2 at RAISE"),
        ]);
        assert!(raised_in_code(&raised));
        assert!(raised_in_code(&raised[..9]), "unreadable counts as raised");
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
