//! Headers across the proxy (RFC 9110 section 7.6.1): hop-by-hop fields stay on
//! their hop, the client's credentials never travel on, the target's held ones are
//! added, and the client's address is passed as `X-Forwarded-For` and `Forwarded`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::peer::Peer;
use crate::config::HttpTarget;

/// Fields that describe one connection, never forwarded either way.
// As `HeaderName`s made once: removing by a `&str` parses the name every time.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Remove hop-by-hop fields, including every field the `Connection` header names.
/// `Transfer-Encoding` goes too: hyper frames each hop's body itself.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Split as bytes: a value with one name that is not text must not hide the
    // others (`Connection: X-Internal, caf\xe9` still drops X-Internal).
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::TRANSFER_ENCODING);
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A target's held credentials, parsed once (the config validated them).
pub fn held(target: &HttpTarget) -> Vec<(HeaderName, HeaderValue)> {
    target
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let n = HeaderName::from_bytes(name.as_bytes()).ok()?;
            let mut v = HeaderValue::from_str(value.expose()).ok()?;
            v.set_sensitive(true);
            Some((n, v))
        })
        .collect()
}

/// The request headers the target gets.
/// Request headers never forwarded: they re-route a request after it was judged.
pub const REROUTING: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Request headers never forwarded: auth proxies set them to say who the user is,
/// and targets behind such a proxy trust them; from a client they would be a claimed
/// identity (review L3). A target's held `headers:` may still set them.
pub const IDENTITY: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-remote-user",
    "x-remote-group",
    "remote-user",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-webauth-user",
];

/// The console's cookies (`pgmoat_console`, `pgmoat_console_pre`, ...). Browsers send
/// a host's cookies to every port of it, so when the console and the gateway share a
/// host name, a target would otherwise receive an operator's console sign-in, or
/// plant one (console review M2).
fn console_cookie(name: &str) -> bool {
    name.trim().starts_with("pgmoat_console")
}

/// A `Set-Cookie` that could plant a console cookie: its name is one, or a nameless
/// cookie whose value names one (`=pgmoat_console=x`, which browsers send back as
/// `pgmoat_console=x`; review L5).
fn sets_console_cookie(set_cookie: &str) -> bool {
    let pair = set_cookie.split(';').next().unwrap_or("");
    console_cookie(pair.split('=').next().unwrap_or("")) || pair.contains("pgmoat_console")
}

/// Whether a request field is one of `names`, read as CGI, WSGI, PHP and Rack read
/// it: `_` the same as `-` (`X_Forwarded_User` is `X-Forwarded-User` there).
fn named_as(name: &str, names: &[&str]) -> bool {
    // Byte by byte: asked for every field of every request, so no copy is made.
    let same = |n: &str| {
        n.len() == name.len()
            && name.bytes().zip(n.bytes()).all(|(a, b)| {
                let a = if a == b'_' { b'-' } else { a };
                a.eq_ignore_ascii_case(&b)
            })
    };
    names.iter().any(|n| same(n))
}

/// The `Cookie` headers without the console's cookies; a header left empty goes.
fn strip_console_cookies(h: &mut HeaderMap) {
    if !h
        .get_all(header::COOKIE)
        .iter()
        .any(|v| v.to_str().map_or(true, |v| v.contains("pgmoat_console")))
    {
        return;
    }
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter(|kv| !console_cookie(kv.split('=').next().unwrap_or("")))
        .map(|kv| kv.trim().to_owned())
        .filter(|kv| !kv.is_empty())
        .collect();
    h.remove(header::COOKIE);
    if !kept.is_empty() {
        set(h, header::COOKIE, kept.join("; "));
    }
}

/// The response headers the client gets: no hop-by-hop fields, and no cookie a
/// target sets under the console's names (see [`console_cookie`]).
pub fn downstream_response(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    if h.contains_key(header::SET_COOKIE) {
        let kept: Vec<HeaderValue> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| v.to_str().is_ok_and(|c| !sets_console_cookie(c)))
            .cloned()
            .collect();
        h.remove(header::SET_COOKIE);
        for v in kept {
            h.append(header::SET_COOKIE, v);
        }
    }
}

/// [`downstream_response`] one field at a time, over a response head's bytes (the
/// lean path writes the client's head straight from the target's, without a
/// `HeaderMap`): whether the field `name: value` goes to the client. `listed` are
/// the names the head's `Connection` fields list ([`connection_names`]; they stay on
/// their hop). Names in any case. A test holds the two alike.
pub fn downstream_keeps(name: &[u8], value: &[u8], listed: &[&[u8]]) -> bool {
    if on_hop(name, listed) {
        return false;
    }
    if name.eq_ignore_ascii_case(b"set-cookie") {
        // `HeaderValue::to_str`'s rule: a value that is not visible ASCII goes.
        return std::str::from_utf8(value)
            .ok()
            .filter(|v| visible(v.as_bytes()))
            .is_some_and(|c| !sets_console_cookie(c));
    }
    true
}

/// What [`strip_hop_by_hop`] takes away, one field name at a time: hop-by-hop
/// fields, `Transfer-Encoding`, and the names `Connection` lists (`listed`).
fn on_hop(name: &[u8], listed: &[&[u8]]) -> bool {
    name.eq_ignore_ascii_case(b"transfer-encoding")
        || HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
        || listed.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The names `Connection` values list, read as `strip_hop_by_hop` reads them:
/// split at commas (as bytes: a name that is not text hides no other), each name
/// trimmed. Gathered once per head.
pub fn connection_names<'a>(values: impl Iterator<Item = &'a [u8]>) -> Listed<'a> {
    let mut l = Listed {
        few: [&[]; 4],
        n: 0,
        more: Vec::new(),
    };
    for name in values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|n| n.trim_ascii())
    {
        if l.more.is_empty() && l.n < l.few.len() {
            l.few[l.n] = name;
            l.n += 1;
        } else {
            if l.more.is_empty() {
                l.more.extend_from_slice(&l.few);
            }
            l.more.push(name);
        }
    }
    l
}

/// The names [`connection_names`] found, in order: up to four inline (a response's
/// `Connection: keep-alive` is one), so a head makes no list on the heap for them.
pub struct Listed<'a> {
    few: [&'a [u8]; 4],
    n: usize,
    /// All of them, once there are more than `few` holds.
    more: Vec<&'a [u8]>,
}

impl<'a> std::ops::Deref for Listed<'a> {
    type Target = [&'a [u8]];

    fn deref(&self) -> &Self::Target {
        if self.more.is_empty() {
            &self.few[..self.n]
        } else {
            &self.more
        }
    }
}

/// Visible ASCII, space and tab only (what `HeaderValue::to_str` accepts).
pub(super) fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

pub fn upstream_request(
    h: &mut HeaderMap,
    held: &[(HeaderName, HeaderValue)],
    peer: &Peer,
    tls: bool,
    mask_response: bool,
) {
    strip_hop_by_hop(h);
    // The client's own credentials are for pgmoat only.
    h.remove(header::AUTHORIZATION);
    // Headers that make a framework run another method or path than the one judged
    // (Symfony, Laravel, Express method-override, IIS URL Rewrite).
    let dropped: Vec<HeaderName> = h
        .keys()
        .filter(|k| named_as(k.as_str(), REROUTING) || named_as(k.as_str(), IDENTITY))
        .cloned()
        .collect();
    for name in dropped {
        h.remove(name);
    }
    strip_console_cookies(h);
    if mask_response {
        // A part of a body cannot be masked as the whole would be (a value cut at
        // the range's edge escapes the detectors; multipart ranges are not read).
        h.remove(header::RANGE);
        h.remove(header::IF_RANGE);
    }
    let host = h.remove(header::HOST);
    let proto = if tls { "https" } else { "http" };
    let ip = &peer.ip;
    // Append to a chain the client (or a proxy before us) started.
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    set(h, X_FORWARDED_FOR, xff);
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    let mut fwd = String::with_capacity(64);
    if let Some(prev) = h.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
        fwd.push_str(prev);
        fwd.push_str(", ");
    }
    fwd.push_str("for=");
    if peer.addr.is_ipv6() {
        fwd.push_str("\"[");
        fwd.push_str(ip);
        fwd.push_str("]\"");
    } else {
        fwd.push_str(ip);
    }
    fwd.push_str(";proto=");
    fwd.push_str(proto);
    if let Some(host) = host {
        if let Ok(name) = host.to_str() {
            if name.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
                fwd.push_str(";host=\"");
                fwd.push_str(name);
                fwd.push('"');
            }
        }
        h.insert(X_FORWARDED_HOST, host);
    }
    set(h, header::FORWARDED, fwd);
    if mask_response {
        // Ask for a body pgmoat can read; what still arrives compressed is decoded.
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    for (name, value) in held {
        h.insert(name.clone(), value.clone());
    }
}

/// [`upstream_request`] over a request head's fields as (name, value) bytes, names
/// in any case (the lean path writes the target's head straight from the client's,
/// without a `HeaderMap`): each field the target gets goes to `emit`, the client's
/// kept fields first (as received), then the ones pgmoat sets. A test holds the two
/// alike over tricky heads.
pub fn upstream_fields<'a, I>(
    fields: I,
    held: &[(HeaderName, HeaderValue)],
    peer: &Peer,
    tls: bool,
    mask_response: bool,
    mut emit: impl FnMut(&[u8], &[u8]),
) where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let is = |name: &[u8], n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
    let listed = connection_names(
        fields
            .clone()
            .filter(|(n, _)| is(n, &header::CONNECTION))
            .map(|(_, v)| v),
    );
    // What `upstream_request` takes away before it reads anything: hop-by-hop
    // fields, names `Connection` lists, the client's credentials, re-routing and
    // claimed-identity fields.
    let survives = |name: &[u8]| {
        if on_hop(name, &listed) || is(name, &header::AUTHORIZATION) {
            return false;
        }
        // Field names are tokens (checked when the head was parsed), so text.
        let text = std::str::from_utf8(name).unwrap_or("");
        !named_as(text, REROUTING) && !named_as(text, IDENTITY)
    };
    // What it reads from the survivors: the first `Host`, `X-Forwarded-For` and
    // `Forwarded` (as `HeaderMap::get` and `remove` give the first value), and
    // whether the `Cookie` fields are to be rewritten.
    let (mut host, mut xff, mut fwd, mut cookies) = (None, None, None, false);
    for (name, value) in fields.clone().filter(|(n, _)| survives(n)) {
        if is(name, &header::HOST) {
            host = host.or(Some(value));
        } else if is(name, &X_FORWARDED_FOR) {
            xff = xff.or(Some(value));
        } else if is(name, &header::FORWARDED) {
            fwd = fwd.or(Some(value));
        } else if is(name, &header::COOKIE) {
            cookies |= !visible(value) || memchr::memmem::find(value, b"pgmoat_console").is_some();
        }
    }
    let text = |v: Option<&'a [u8]>| {
        v.filter(|v| visible(v))
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let held_names = |name: &[u8]| held.iter().any(|(n, _)| is(name, n));
    // What pgmoat sets replaces every field of that name the client sent.
    let set_here = |name: &[u8]| {
        is(name, &header::HOST)
            || is(name, &X_FORWARDED_FOR)
            || is(name, &X_FORWARDED_PROTO)
            || is(name, &header::FORWARDED)
            || (host.is_some() && is(name, &X_FORWARDED_HOST))
            || (cookies && is(name, &header::COOKIE))
            || (mask_response
                && (is(name, &header::RANGE)
                    || is(name, &header::IF_RANGE)
                    || is(name, &header::ACCEPT_ENCODING)))
            || held_names(name)
    };
    for (name, value) in fields.clone() {
        if survives(name) && !set_here(name) {
            emit(name, value);
        }
    }
    // Each of pgmoat's own fields, unless a held credential of that name replaces it.
    let mut put = |name: &HeaderName, value: &[u8]| {
        if !held_names(name.as_str().as_bytes()) {
            emit(name.as_str().as_bytes(), value);
        }
    };
    if cookies {
        let kept: Vec<&str> = fields
            .clone()
            .filter(|(n, _)| survives(n) && is(n, &header::COOKIE))
            .filter_map(|(_, v)| text(Some(v)))
            .flat_map(|v| v.split(';'))
            .filter(|kv| !console_cookie(kv.split('=').next().unwrap_or("")))
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .collect();
        if !kept.is_empty() {
            put(&header::COOKIE, kept.join("; ").as_bytes());
        }
    }
    let proto = if tls { "https" } else { "http" };
    let ip = &peer.ip;
    let mut line = String::with_capacity(64);
    if let Some(prev) = text(xff) {
        line.push_str(prev);
        line.push_str(", ");
    }
    line.push_str(ip);
    put(&X_FORWARDED_FOR, line.as_bytes());
    put(&X_FORWARDED_PROTO, proto.as_bytes());
    if let Some(host) = host {
        put(&X_FORWARDED_HOST, host);
    }
    line.clear();
    if let Some(prev) = text(fwd) {
        line.push_str(prev);
        line.push_str(", ");
    }
    line.push_str("for=");
    if peer.addr.is_ipv6() {
        line.push_str("\"[");
        line.push_str(ip);
        line.push_str("]\"");
    } else {
        line.push_str(ip);
    }
    line.push_str(";proto=");
    line.push_str(proto);
    if let Some(name) = text(host) {
        if name.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            line.push_str(";host=\"");
            line.push_str(name);
            line.push('"');
        }
    }
    put(&header::FORWARDED, line.as_bytes());
    if mask_response {
        put(&header::ACCEPT_ENCODING, b"identity");
    }
    // The map keeps the last of two held fields of one name.
    for (i, (name, value)) in held.iter().enumerate() {
        if !held[i + 1..].iter().any(|(n, _)| n == name) {
            emit(name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// A header made from a string pgmoat built (no copy of its bytes).
fn set(h: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn client_credentials_and_hop_fields_stay_held_ones_go() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer client"));
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("host", HeaderValue::from_static("gw:8080"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let target = HttpTarget {
            name: "billing".into(),
            tenant: String::new(),
            url: "http://127.0.0.1:9".into(),
            ca: None,
            headers: vec![("authorization".into(), Secret::new("Bearer held"))],
        };
        upstream_request(
            &mut h,
            &held(&target),
            &Peer::new("192.0.2.7:5555".parse().unwrap()),
            false,
            true,
        );
        assert_eq!(h["authorization"], "Bearer held");
        assert!(h.get("x-secret").is_none() && h.get("te").is_none());
        assert!(h.get("connection").is_none() && h.get("host").is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["forwarded"], "for=192.0.2.7;proto=http;host=\"gw:8080\"");
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(h["accept"], "application/json");
    }

    #[test]
    fn a_name_that_is_not_text_hides_no_other_connection_name() {
        let mut map = HeaderMap::new();
        map.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"X-Internal, caf\xc3\xa9").unwrap(),
        );
        map.append("x-internal", HeaderValue::from_static("secret"));
        map.append("x-other", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut map);
        assert!(map.get("x-internal").is_none(), "{map:?}");
        assert!(map.get("x-other").is_some());
        let values = [&b"X-Internal, caf\xc3\xa9"[..]];
        let listed = connection_names(values.into_iter());
        assert!(!downstream_keeps(b"X-Internal", b"secret", &listed));
        // Past the four kept inline, every name is still listed, in order.
        let many = connection_names([&b"a, b,c"[..], b"d", b" e ,f"].into_iter());
        let want: [&[u8]; 6] = [b"a", b"b", b"c", b"d", b"e", b"f"];
        assert_eq!(&*many, &want[..]);
        let few = connection_names([&b"keep-alive"[..]].into_iter());
        assert_eq!(&*few, &[&b"keep-alive"[..]][..]);
        assert!(downstream_keeps(b"x-other", b"kept", &listed));
    }

    #[test]
    fn the_field_by_field_response_policy_is_the_header_maps() {
        let heads: &[&[(&str, &[u8])]] = &[
            &[
                ("Content-Type", b"application/json"),
                ("Connection", b"keep-alive, X-Secret"),
                ("x-secret", b"1"),
                ("Keep-Alive", b"timeout=5"),
                ("Transfer-Encoding", b"chunked"),
                ("TE", b"trailers"),
                ("Trailer", b"x"),
                ("Upgrade", b"h2c"),
                ("Proxy-Authenticate", b"Basic"),
                ("Proxy-Connection", b"keep-alive"),
                ("Set-Cookie", b"pgmoat_console=planted; Path=/"),
                ("set-cookie", b"=pgmoat_console=x"),
                ("Set-Cookie", b"app=1; Path=/"),
                ("Set-Cookie", b"caf\xc3\xa9=1"),
                ("X-Other", b"v"),
            ],
            &[
                ("connection", b"close"),
                ("connection", b" X-A ,x-b"),
                ("X-A", b"1"),
                ("X-B", b"2"),
                ("X-C", b"3"),
                ("Content-Length", b"5"),
            ],
            &[
                ("Connection", b"caf\xc3\xa9, x-d"),
                ("X-D", b"4"),
                ("X-E", b"5"),
            ],
        ];
        for head in heads {
            let mut map = HeaderMap::new();
            for (n, v) in *head {
                map.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_bytes(v).unwrap(),
                );
            }
            downstream_response(&mut map);
            let want: Vec<(String, Vec<u8>)> = map
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect();
            let listed = connection_names(
                head.iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                    .map(|(_, v)| *v),
            );
            let mut got: Vec<(String, Vec<u8>)> = head
                .iter()
                .filter(|(n, v)| downstream_keeps(n.as_bytes(), v, &listed))
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
                .collect();
            // A map groups a name's values together; the order of each name's
            // values is kept by both.
            let mut want = want;
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "{head:?}");
            assert!(!got.is_empty());
        }
    }

    #[test]
    fn the_field_by_field_request_policy_is_the_header_maps() {
        let heads: &[&[(&str, &[u8])]] = &[
            &[
                ("Host", b"gw:8080"),
                ("Authorization", b"Bearer client"),
                ("Connection", b"keep-alive, X-Secret"),
                ("X-Secret", b"1"),
                ("Keep-Alive", b"timeout=5"),
                ("TE", b"trailers"),
                ("Trailer", b"x"),
                ("Upgrade", b"h2c"),
                ("Proxy-Authorization", b"Basic eA=="),
                ("Proxy-Connection", b"keep-alive"),
                ("Transfer-Encoding", b"chunked"),
                ("Content-Length", b"5"),
                ("X-Forwarded-For", b"10.0.0.1"),
                ("x-forwarded-for", b"10.0.0.2"),
                ("Forwarded", b"for=10.0.0.1"),
                ("X-Forwarded-Proto", b"https"),
                ("X-Forwarded-Host", b"evil"),
                ("X_Forwarded_User", b"admin"),
                ("x-http-method-override", b"DELETE"),
                ("X-Original-URL", b"/admin"),
                ("Cookie", b"a=1; pgmoat_console=secret; b=2"),
                ("cookie", b"pgmoat_console_pre=x"),
                ("Range", b"bytes=0-1"),
                ("If-Range", b"x"),
                ("Accept-Encoding", b"gzip"),
                ("X-Api-Key", b"client-key"),
                ("Accept", b"application/json"),
                ("X-Other", b"1"),
                ("x-other", b"2"),
            ],
            // `Connection` names Host and X-Forwarded-For: they go first, so the
            // client's X-Forwarded-Host stays and no chain is continued.
            &[
                ("Connection", b"host, X-Forwarded-For"),
                ("Host", b"gw"),
                ("X-Forwarded-For", b"10.9.9.9"),
                ("X-Forwarded-Host", b"kept"),
                ("Cookie", b"a=1"),
                ("cookie", b"b=2"),
            ],
            // Values that are not text: not read, not continued.
            &[
                ("Host", b"caf\xc3\xa9"),
                ("X-Forwarded-For", b"caf\xc3\xa9"),
                ("X-Forwarded-For", b"10.0.0.3"),
                ("Forwarded", b"for=\xff"),
                ("Cookie", b"caf\xc3\xa9=1"),
                ("Cookie", b"c=3"),
                ("Connection", b"caf\xc3\xa9, x-d"),
                ("X-D", b"4"),
            ],
            &[("Host", b"a\"b"), ("Cookie", b"pgmoat_console=only")],
            &[("Accept", b"*/*")],
        ];
        let target = |headers: Vec<(String, Secret)>| HttpTarget {
            name: "t".into(),
            tenant: String::new(),
            url: "http://127.0.0.1:9".into(),
            ca: None,
            headers,
        };
        let helds = [
            held(&target(vec![])),
            held(&target(vec![
                ("authorization".into(), Secret::new("Bearer held")),
                ("x-api-key".into(), Secret::new("k")),
                ("x-forwarded-for".into(), Secret::new("held-chain")),
                ("cookie".into(), Secret::new("held=1")),
            ])),
        ];
        let peers = [
            Peer::new("192.0.2.7:5555".parse().unwrap()),
            Peer::new("[2001:db8::1]:5555".parse().unwrap()),
        ];
        let by_name = |mut v: Vec<(String, Vec<u8>)>| {
            // A map groups a name's values together; each name's order is kept.
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        for head in heads {
            for held in &helds {
                for peer in &peers {
                    for (tls, masking) in [(false, false), (true, true), (false, true)] {
                        let mut map = HeaderMap::new();
                        for (n, v) in *head {
                            map.append(
                                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                                HeaderValue::from_bytes(v).unwrap(),
                            );
                        }
                        upstream_request(&mut map, held, peer, tls, masking);
                        let want = by_name(
                            map.iter()
                                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                                .collect(),
                        );
                        let mut got = Vec::new();
                        let fields = head.iter().map(|(n, v)| (n.as_bytes(), *v));
                        upstream_fields(fields, held, peer, tls, masking, |n, v| {
                            let n = String::from_utf8(n.to_ascii_lowercase()).unwrap();
                            got.push((n, v.to_vec()));
                        });
                        let got = by_name(got);
                        assert_eq!(got, want, "{head:?} held {} {tls} {masking}", held.len());
                        assert!(got.iter().any(|(n, _)| n == "x-forwarded-for"));
                    }
                }
            }
        }
    }

    #[test]
    fn claimed_identities_and_the_consoles_cookies_never_reach_a_target() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-user", HeaderValue::from_static("admin"));
        h.insert(
            "x-auth-request-email",
            HeaderValue::from_static("ceo@example.com"),
        );
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; pgmoat_console=secret; b=2"),
        );
        h.append("cookie", HeaderValue::from_static("pgmoat_console_pre=x"));
        upstream_request(
            &mut h,
            &[],
            &Peer::new("192.0.2.7:5555".parse().unwrap()),
            false,
            false,
        );
        assert!(h.get("x-forwarded-user").is_none());
        assert!(h.get("x-auth-request-email").is_none());
        let cookies: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);

        let mut only = HeaderMap::new();
        only.insert("cookie", HeaderValue::from_static("pgmoat_console=secret"));
        upstream_request(
            &mut only,
            &[],
            &Peer::new("192.0.2.7:5555".parse().unwrap()),
            false,
            false,
        );
        assert!(only.get("cookie").is_none());

        let mut resp = HeaderMap::new();
        resp.append(
            "set-cookie",
            HeaderValue::from_static("pgmoat_console=planted; Path=/ui/approvals"),
        );
        resp.append("set-cookie", HeaderValue::from_static("app=1; Path=/"));
        downstream_response(&mut resp);
        let set: Vec<_> = resp.get_all("set-cookie").iter().collect();
        assert_eq!(set, ["app=1; Path=/"]);
    }
}
