//! Extended-protocol statements that need approval, followed from Parse to Execute.
//!
//! A Parse that an `approve` rule matches is forwarded (parsing runs nothing), and its
//! slot in the session core's name table ([`Names`]) carries the hold. A Bind of it
//! gives its portal a hold of its own, and the Execute of such a portal is what waits
//! for the approver: by then the bound parameters are known and shown. Parameter
//! types come from the Parse, or from the server's ParameterDescription when the
//! client asked for one (drivers that send binary parameters, like tokio-postgres,
//! always do), so binary values read as numbers. When a name changes hands (a Parse
//! taken or undone, a Close confirmed) is the core's to follow, for every consumer
//! at once.

use std::sync::Arc;

use super::core::names::Names;
use super::core::slots::HeldPortal;
use super::verdict::Hold;
use crate::protocol::frontend::{Bind, Parse};

/// Held statements, and portals bound to them, a session may have at once. Forgetting
/// one would let it run unasked, so past this the Parse or Bind is refused instead.
pub const MAX_HELD: usize = 64;
/// Characters of one parameter shown to the approver.
const SHOWN: usize = 200;

/// What a held Execute asks: the hold, and the parameters as the approver sees them.
pub struct HeldExecute {
    pub hold: Arc<Hold>,
    pub params: Vec<String>,
    /// The whole parameters, for matching a return-mode retry ([`params_key`]).
    pub params_key: [u8; 32],
}

/// Whether a Parse of `name` that needs approval may be held: false past
/// [`MAX_HELD`] (then it must be refused), unless it replaces a held one.
pub fn may_hold_statement(names: &Names, name: &[u8]) -> bool {
    names.held_statements() < MAX_HELD || names.statement(name).is_some_and(|s| s.hold().is_some())
}

/// Parameter types a held Parse declares.
pub fn parse_types(body: &[u8]) -> Vec<u32> {
    Parse::parse(body)
        .map(|p| p.param_types.to_vec())
        .unwrap_or_default()
}

/// A whole Bind goes upstream in `cycle`: the hold its portal takes, when it binds a
/// held statement. `sql_hold`: the hold of a SQL-level prepared statement of that
/// name, asked only when no held Parse has it (PREPARE and Parse share the server's
/// namespace).
pub fn portal_for_bind(
    names: &Names,
    body: &[u8],
    bind: &Bind<'_>,
    cycle: u64,
    sql_hold: impl FnOnce(&[u8]) -> Option<Hold>,
) -> Option<HeldPortal> {
    let (hold, generation, types) = match names.statement(bind.statement) {
        Some(s) if s.hold().is_some() => (s.hold().cloned()?, s.generation, s.types.clone()),
        _ => (Arc::new(sql_hold(bind.statement)?), 0, Vec::new()),
    };
    Some(HeldPortal {
        hold,
        statement: bind.statement.to_vec(),
        generation,
        types,
        bind: body.to_vec(),
        cycle,
    })
}

/// Whether portal `portal` may be held: false past [`MAX_HELD`] (then its Bind must be
/// refused), unless it replaces a held one.
pub fn may_hold_portal(names: &Names, portal: &[u8]) -> bool {
    names.held_portals() < MAX_HELD || names.portal(portal).is_some_and(|p| p.hold().is_some())
}

/// An Execute of `portal`: what to ask when it runs a held statement.
pub fn on_execute(names: &Names, portal: &[u8]) -> Option<HeldExecute> {
    let p = names.portal(portal)?.hold()?;
    // Types learnt after the Bind (a ParameterDescription) are the better ones.
    let types = match names.statement(&p.statement) {
        Some(s) if s.generation == p.generation => &s.types,
        _ => &p.types,
    };
    Some(HeldExecute {
        hold: p.hold.clone(),
        params: describe_params(&p.bind, types),
        params_key: params_key(&p.bind, types),
    })
}

/// The parameters of a statement without any: what a simple query's key holds.
pub const NO_PARAMS: [u8; 32] = [0; 32];

/// A digest of a Bind's parameters, whole (what the approver is shown is cut): their
/// types, formats and bytes, not the portal's or statement's names, which a driver
/// picks anew on every connection. An unreadable Bind gets a digest of its bytes.
pub fn params_key(bind: &[u8], types: &[u32]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let Ok(b) = Bind::parse(bind) else {
        return Sha256::digest(bind).into();
    };
    if b.params.is_empty() {
        return NO_PARAMS;
    }
    let mut h = Sha256::new();
    for (i, v) in b.params.iter().enumerate() {
        h.update(types.get(i).copied().unwrap_or(0).to_be_bytes());
        h.update(b.param_format(i).to_be_bytes());
        match v {
            None => h.update((-1i64).to_be_bytes()),
            Some(v) => {
                h.update((v.len() as i64).to_be_bytes());
                h.update(v);
            }
        }
    }
    h.finalize().into()
}

/// A Bind body's parameters as `$1 = 'text'`, `$2 = 7`, `$3 = NULL`.
pub fn describe_params(bind: &[u8], types: &[u32]) -> Vec<String> {
    let bind = match Bind::parse(bind) {
        Ok(b) => b,
        // The server refuses such a Bind too; the approver sees why nothing is shown.
        Err(e) => return vec![format!("(parameters unreadable: {e})")],
    };
    bind.params
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let shown = match v {
                None => "NULL".to_owned(),
                Some(v) if bind.param_format(i) == 0 => quoted(&String::from_utf8_lossy(v)),
                Some(v) => binary_value(types.get(i).copied().unwrap_or(0), v),
            };
            format!("${} = {shown}", i + 1)
        })
        .collect()
}

/// A text value as an SQL literal, cut to [`SHOWN`] characters.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len().min(SHOWN) + 2);
    q.push('\'');
    for (n, c) in s.chars().enumerate() {
        if n == SHOWN {
            q.push_str(&format!("… ({} bytes)", s.len()));
            break;
        }
        if c == '\'' {
            q.push('\'');
        }
        q.push(c);
    }
    q.push('\'');
    q
}

/// A binary-format value, decoded for the common types and shown as hex otherwise.
fn binary_value(oid: u32, v: &[u8]) -> String {
    let be = |n: usize| -> Option<[u8; 8]> {
        (v.len() == n).then(|| {
            let mut a = [0u8; 8];
            a[8 - n..].copy_from_slice(v);
            a
        })
    };
    let decoded = match oid {
        16 => (v.len() == 1).then(|| if v[0] != 0 { "true" } else { "false" }.to_owned()),
        21 => be(2).map(|a| (u64::from_be_bytes(a) as u16 as i16).to_string()),
        23 | 26 => be(4).map(|a| {
            let x = u64::from_be_bytes(a) as u32;
            if oid == 23 {
                (x as i32).to_string()
            } else {
                x.to_string()
            }
        }),
        20 => be(8).map(|a| i64::from_be_bytes(a).to_string()),
        700 => be(4).map(|a| f32::from_bits(u64::from_be_bytes(a) as u32).to_string()),
        701 => be(8).map(|a| f64::from_bits(u64::from_be_bytes(a)).to_string()),
        // text, varchar, bpchar, name, json: their binary form is the text.
        25 | 1043 | 1042 | 19 | 114 => std::str::from_utf8(v).ok().map(quoted),
        2950 if v.len() == 16 => {
            let h = hex(v);
            Some(format!(
                "'{}-{}-{}-{}-{}'",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        _ => None,
    };
    decoded.unwrap_or_else(|| {
        let cut = &v[..v.len().min(SHOWN / 2)];
        let more = if cut.len() < v.len() {
            format!("… ({} bytes)", v.len())
        } else {
            String::new()
        };
        format!("'\\x{}{more}' (binary, type {oid})", hex(cut))
    })
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(formats: &[i16], params: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = b"\0s1\0".to_vec();
        b.extend((formats.len() as i16).to_be_bytes());
        for f in formats {
            b.extend(f.to_be_bytes());
        }
        b.extend((params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                None => b.extend((-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend((v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend(0i16.to_be_bytes());
        b
    }

    #[test]
    fn text_parameters_are_quoted_literals() {
        let b = bind(&[], &[Some(b"it's"), None, Some(b"7")]);
        assert_eq!(
            describe_params(&b, &[]),
            vec!["$1 = 'it''s'", "$2 = NULL", "$3 = '7'"]
        );
    }

    #[test]
    fn binary_parameters_decode_by_type() {
        let seven = 7i32.to_be_bytes();
        let big = (-5i64).to_be_bytes();
        let b = bind(&[1], &[Some(b"held"), Some(&seven), Some(&big), Some(&[1])]);
        assert_eq!(
            describe_params(&b, &[25, 23, 20, 16]),
            vec!["$1 = 'held'", "$2 = 7", "$3 = -5", "$4 = true"]
        );
        // Unknown type or wrong size: hex, never a wrong number.
        let b = bind(&[1], &[Some(&seven)]);
        assert_eq!(
            describe_params(&b, &[20]),
            vec!["$1 = '\\x00000007' (binary, type 20)"]
        );
    }

    #[test]
    fn long_and_cut_short_values_stay_bounded() {
        let long = vec![b'a'; 10_000];
        let b = bind(&[], &[Some(&long)]);
        let shown = describe_params(&b, &[]);
        assert!(shown[0].len() < 300, "{}", shown[0]);
        assert!(shown[0].contains("10000 bytes"));
        let mut b = bind(&[], &[Some(b"abc")]);
        b.truncate(b.len() - 3);
        assert_eq!(
            describe_params(&b, &[]),
            vec!["(parameters unreadable: Bind: message ends inside a field)"]
        );
    }
}
