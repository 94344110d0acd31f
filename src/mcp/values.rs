//! JSON values in and out of Postgres for the `query` tool.
//!
//! In: each JSON parameter is bound as a real parameter (never spliced into the SQL)
//! in text format, with any type accepted, so the server parses the text as whatever
//! type the parameter has (`$1::int`, a uuid column, ...), exactly as psql's
//! `\bind` would. Out: tokio-postgres asks for binary results; common types become
//! typed JSON (numbers, booleans, strings, nested JSON), numeric stays a string so no
//! digit is lost, and anything else is shown as its text when it is UTF-8, else hex.

use std::error::Error;

use bytes::BytesMut;
use postgres_protocol::types as pt;
use serde_json::{Map, Number, Value};
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};

/// A JSON value bound as a text-format parameter of any type.
#[derive(Debug)]
pub struct JsonParam<'a>(pub &'a Value);

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for JsonParam<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0 {
            Value::Null => return Ok(IsNull::Yes),
            Value::String(s) => out.extend_from_slice(s.as_bytes()),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Array(items) if matches!(ty.kind(), Kind::Array(_)) => {
                out.extend_from_slice(array_literal(items)?.as_bytes())
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A JSON array as a Postgres array literal (`{"a","b",NULL}`), for array parameters.
fn array_literal(items: &[Value]) -> Result<String, BoxError> {
    let mut s = String::from("{");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Value::Null => s.push_str("NULL"),
            Value::Array(inner) => s.push_str(&array_literal(inner)?),
            Value::String(t) => quote_element(&mut s, t),
            Value::Object(_) => quote_element(&mut s, &v.to_string()),
            other => s.push_str(&other.to_string()),
        }
    }
    s.push('}');
    Ok(s)
}

fn quote_element(out: &mut String, t: &str) {
    out.push('"');
    for c in t.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A result value's bytes, whatever its type: decoded by [`to_json`].
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw<'a>, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One binary result value as JSON. Never fails: what cannot be decoded is shown as
/// text or hex rather than dropped.
pub fn to_json(ty: &Type, raw: &[u8]) -> Value {
    decode(ty, raw).unwrap_or_else(|| fallback(raw))
}

fn fallback(raw: &[u8]) -> Value {
    match std::str::from_utf8(raw) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => Value::String(hex(raw)),
    }
}

fn hex(raw: &[u8]) -> String {
    let mut s = String::with_capacity(2 + raw.len() * 2);
    s.push_str("\\x");
    for b in raw {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        // NaN and the infinities have no JSON number.
        None => Value::String(
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
            .to_owned(),
        ),
    }
}

fn decode(ty: &Type, raw: &[u8]) -> Option<Value> {
    if let Kind::Array(member) = ty.kind() {
        return array(member, raw);
    }
    if let Kind::Domain(base) = ty.kind() {
        return decode(base, raw);
    }
    Some(match *ty {
        Type::BOOL => Value::Bool(pt::bool_from_sql(raw).ok()?),
        Type::INT2 => pt::int2_from_sql(raw).ok()?.into(),
        Type::INT4 => pt::int4_from_sql(raw).ok()?.into(),
        Type::INT8 => pt::int8_from_sql(raw).ok()?.into(),
        Type::OID => pt::oid_from_sql(raw).ok()?.into(),
        Type::FLOAT4 => float(pt::float4_from_sql(raw).ok()? as f64),
        Type::FLOAT8 => float(pt::float8_from_sql(raw).ok()?),
        Type::NUMERIC => Value::String(numeric(raw)?),
        Type::JSON => serde_json::from_slice(raw).ok()?,
        Type::JSONB => match raw.split_first() {
            Some((1, rest)) => serde_json::from_slice(rest).ok()?,
            _ => return None,
        },
        Type::UUID => Value::String(uuid(pt::uuid_from_sql(raw).ok()?)),
        Type::BYTEA => Value::String(hex(raw)),
        Type::DATE => Value::String(date(pt::date_from_sql(raw).ok()?)),
        Type::TIME => Value::String(time_of_day(pt::time_from_sql(raw).ok()?)),
        Type::TIMESTAMP => Value::String(timestamp(pt::timestamp_from_sql(raw).ok()?, "")),
        Type::TIMESTAMPTZ => Value::String(timestamp(pt::timestamp_from_sql(raw).ok()?, "Z")),
        Type::CHAR => Value::String((pt::char_from_sql(raw).ok()? as u8 as char).to_string()),
        _ => return None,
    })
}

/// A binary array (any number of dimensions) as nested JSON arrays.
fn array(member: &Type, raw: &[u8]) -> Option<Value> {
    let mut r = raw;
    let ndim = take_i32(&mut r)?;
    let _has_nulls = take_i32(&mut r)?;
    let _elem = take_i32(&mut r)?;
    if !(0..=6).contains(&ndim) {
        return None;
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let len = usize::try_from(take_i32(&mut r)?).ok()?;
        let _lower = take_i32(&mut r)?;
        dims.push(len);
    }
    let total: usize = dims.iter().try_fold(1usize, |a, d| a.checked_mul(*d))?;
    if dims.is_empty() {
        return Some(Value::Array(Vec::new()));
    }
    let mut flat = Vec::with_capacity(total.min(1 << 16));
    for _ in 0..total {
        let len = take_i32(&mut r)?;
        if len < 0 {
            flat.push(Value::Null);
            continue;
        }
        let len = len as usize;
        if r.len() < len {
            return None;
        }
        let (v, rest) = r.split_at(len);
        flat.push(to_json(member, v));
        r = rest;
    }
    Some(nest(&dims, &mut flat.into_iter()))
}

fn nest(dims: &[usize], flat: &mut impl Iterator<Item = Value>) -> Value {
    match dims.split_first() {
        None => flat.next().unwrap_or(Value::Null),
        Some((n, rest)) => Value::Array((0..*n).map(|_| nest(rest, flat)).collect()),
    }
}

fn take_i32(r: &mut &[u8]) -> Option<i32> {
    let (head, rest) = r.split_first_chunk::<4>()?;
    *r = rest;
    Some(i32::from_be_bytes(*head))
}

fn take_i16(r: &mut &[u8]) -> Option<i16> {
    let (head, rest) = r.split_first_chunk::<2>()?;
    *r = rest;
    Some(i16::from_be_bytes(*head))
}

/// NUMERIC's binary form (base-10000 digits, a weight, a sign and a display scale)
/// as its exact decimal text.
fn numeric(raw: &[u8]) -> Option<String> {
    let mut r = raw;
    let ndigits = take_i16(&mut r)?;
    let weight = take_i16(&mut r)? as i32;
    let sign = take_i16(&mut r)? as u16;
    let dscale = take_i16(&mut r)?.max(0) as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let mut digits = Vec::with_capacity(ndigits.max(0) as usize);
    for _ in 0..ndigits {
        let d = take_i16(&mut r)?;
        if !(0..10000).contains(&d) {
            return None;
        }
        digits.push(d as u32);
    }
    let digit = |i: i32| -> u32 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            if i == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Some(out)
}

fn uuid(b: [u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Postgres counts dates and timestamps from 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

fn ymd(days_since_2000: i64) -> String {
    let (y, m, d) = civil(days_since_2000 + PG_EPOCH_DAYS);
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => ymd(i64::from(d)),
    }
}

fn time_of_day(us: i64) -> String {
    let (s, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let mut t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if frac != 0 {
        t.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    t
}

fn timestamp(us: i64, zone: &str) -> String {
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        us => {
            let day = us.div_euclid(86_400_000_000);
            let rest = us.rem_euclid(86_400_000_000);
            format!("{}T{}{zone}", ymd(day), time_of_day(rest))
        }
    }
}

/// Column metadata for a result: name and type name.
pub fn column(name: &str, ty: &Type) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(name.to_owned()));
    m.insert("type".into(), Value::String(ty.name().to_owned()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight, sign as i16, dscale] {
            v.extend(x.to_be_bytes());
        }
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_keep_every_digit() {
        assert_eq!(numeric(&num(2, 0, 0, 2, &[12, 3400])).unwrap(), "12.34");
        assert_eq!(
            numeric(&num(3, 1, 0x4000, 0, &[1, 2345, 6789])).unwrap(),
            "-12345"
        );
        assert_eq!(numeric(&num(1, -1, 0, 4, &[5])).unwrap(), "0.0005");
        assert_eq!(numeric(&num(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(numeric(&num(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric(&[1, 2]).is_none());
    }

    #[test]
    fn times_read_as_postgres_prints_them() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(9556), "2026-03-01");
        assert_eq!(
            timestamp(86_400_000_000 + 3_723_500_000, "Z"),
            "2000-01-02T01:02:03.5Z"
        );
        assert_eq!(timestamp(i64::MAX, ""), "infinity");
        assert_eq!(time_of_day(45_296_000_001), "12:34:56.000001");
    }

    #[test]
    fn typed_values_and_fallbacks() {
        assert_eq!(to_json(&Type::INT4, &7i32.to_be_bytes()), Value::from(7));
        assert_eq!(to_json(&Type::BOOL, &[1]), Value::Bool(true));
        assert_eq!(
            to_json(&Type::JSONB, b"\x01{\"a\":[1]}"),
            serde_json::json!({"a": [1]})
        );
        assert_eq!(to_json(&Type::TEXT, b"x***y"), Value::from("x***y"));
        assert_eq!(to_json(&Type::INET, &[0xff, 0x00]), Value::from("\\xff00"));
        // int4[] {1,NULL}
        let mut arr = Vec::new();
        for x in [1i32, 1, 23, 2, 1] {
            arr.extend(x.to_be_bytes());
        }
        arr.extend(4i32.to_be_bytes());
        arr.extend(1i32.to_be_bytes());
        arr.extend((-1i32).to_be_bytes());
        assert_eq!(
            to_json(&Type::INT4_ARRAY, &arr),
            serde_json::json!([1, null])
        );
    }

    #[test]
    fn array_parameters_are_literals() {
        let v = serde_json::json!(["a\"b", null, 3]);
        let Value::Array(items) = &v else {
            unreachable!()
        };
        assert_eq!(array_literal(items).unwrap(), r#"{"a\"b",NULL,3}"#);
    }
}
