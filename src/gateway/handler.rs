//! One request through the HTTP gateway: who is calling, which target, the rules'
//! decision on the normalised method and path, a hold for approval, then the target's
//! answer, masked when masks apply or streamed as it comes; one `http_request` record.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::auth::{self, Caller};
use super::body_mask::{self, BodyKind, BodyMasks};
use super::judged::Judged;
use super::masked;
use super::own_upstream::OwnUpstreams;
use super::peer::Peer;
use super::record::{Counted, Metered, Trail};
use super::{headers, hold, reply, Door};
use crate::audit::http_request::HttpRequest;
use crate::config::HttpTarget;
use crate::policy::{normalize_path, Action, NormalPath, Subject};

/// The id of the request's audit record, on every answer after authentication.
pub(crate) const REQUEST_ID: &str = "pgmoat-request";

pub async fn handle(
    door: Arc<Door>,
    peer: Arc<Peer>,
    own: Arc<OwnUpstreams>,
    req: Request<Incoming>,
) -> Response<Body> {
    door.shared
        .metrics
        .http
        .hyper_requests
        .fetch_add(1, Relaxed);
    let (parts, body) = req.into_parts();
    let authorization = parts.headers.get(header::AUTHORIZATION);
    let authorization = authorization.map(HeaderValue::as_bytes);
    let go = match admit(
        &door,
        &peer,
        &parts.method,
        &parts.uri,
        authorization,
        false,
    )
    .await
    {
        Admitted::Go(go) => go,
        Admitted::Answered(r) => return r,
        // Only the lean path is ever handed a request back.
        Admitted::Fallback => {
            return reply::error(StatusCode::INTERNAL_SERVER_ERROR, "pgmoat: not served")
        }
    };
    // An HTTP/2 client's requests run as tasks of their own, not in the task that
    // drives the connection's own upstream connections: they use the pooled client.
    let own_conns = (parts.version < Version::HTTP_2).then_some(own);
    let Go {
        mut trail,
        caller,
        target,
        method,
        np,
        query,
        judged,
    } = go;
    let masks = judged.masks.clone();
    let body = match judged.action {
        Action::Approve => {
            let asked = hold::Asked {
                tenant: &caller.tenant,
                identity: &caller.identity,
                target: &target.name,
                method: method.as_str(),
                path: &np,
                query: query.as_deref(),
                rule: &judged.deciding_rule,
                approvers: judged.approvers.clone(),
            };
            match hold::hold(&door, asked, &parts.headers, body, &mut trail).await {
                Ok(b) => b,
                Err(r) => return finish(r, trail, None),
            }
        }
        // Blocked requests were answered in `admit`.
        _ => Body::new(Counted::new(body, Arc::clone(&trail.bytes_in))),
    };
    let up = Upstream {
        target,
        method,
        path: &np,
        query: query.as_deref(),
        headers: parts.headers,
        peer: &peer,
        own: own_conns,
    };
    forward(&door, up, body, masks, trail).await
}

/// What `admit` makes of a request's head.
// One per request, moved once: boxing would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Admitted<'d> {
    /// Answered by pgmoat (refused, or not authenticated), recorded where it is
    /// recorded.
    Answered(Response<Body>),
    /// Asked by the lean HTTP/1.1 path (`lean`), for a request it leaves to hyper
    /// (masks, a hold, an `https` target). Nothing was recorded or registered.
    Fallback,
    /// Allowed or held: to be forwarded; the `decided` record is in the trail.
    Go(Go<'d>),
}

/// An admitted request.
pub(crate) struct Go<'d> {
    pub trail: Trail,
    /// Who is calling (identity, tenant).
    pub caller: Arc<Caller>,
    pub target: &'d HttpTarget,
    /// Upper-cased, judged as such.
    pub method: Method,
    pub np: NormalPath,
    pub query: Option<Arc<str>>,
    pub judged: Arc<Judged>,
}

/// Who is calling, which target, the rules' decision on the normalised method and
/// path, and the `decided` record: everything before the body moves, shared by the
/// hyper path and the lean one (`super::h1`), so both judge exactly alike. With
/// `lean`, a request that needs a hold or the pooled client comes back as
/// `Fallback` before anything is recorded. Of the request's fields it reads only
/// `authorization`, the first `Authorization` field's value (the lean path keeps no
/// `HeaderMap`).
pub(crate) async fn admit<'d>(
    door: &'d Door,
    peer: &Peer,
    method: &Method,
    uri: &http::Uri,
    authorization: Option<&[u8]>,
    lean: bool,
) -> Admitted<'d> {
    let started = Instant::now();
    let caller = match auth::identify(
        &door.shared,
        &door.verified,
        peer.addr,
        door.tls,
        authorization,
        started,
    )
    .await
    {
        Ok(c) => c,
        Err(r) => return Admitted::Answered(r),
    };
    let (identity, tenant) = (&caller.identity, &caller.tenant);
    let answered = Admitted::Answered;
    // `/<target>/<path>`: the target is the first segment, judged apart so `..` in
    // the rest can never climb into another target.
    let full = uri.path();
    let after = full.strip_prefix('/').unwrap_or(full);
    let (seg, rest) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, "/"),
    };
    // The caller's own tenant's target, never another's.
    let own = |name: &str| door.target(&tenant.name, name);
    let target = if seg.contains('%') || seg == "." || seg == ".." {
        normalize_path(&format!("/{seg}"))
            .ok()
            .and_then(|n| own(n.decoded.trim_matches('/')))
    } else {
        // Nothing to decode or resolve: the segment is the name.
        own(seg)
    };
    let Some(target) = target else {
        return answered(reply::error(
            StatusCode::NOT_FOUND,
            "pgmoat: no such target",
        ));
    };
    // Method names are case-sensitive in HTTP, but a target may not treat them so:
    // judged and forwarded upper-cased.
    // (A copy only when there is a lower-case letter: the common methods come as
    // `http`'s own upper-case constants.)
    let upper: Cow<'_, str> = match method.as_str() {
        m if m.bytes().any(|b| b.is_ascii_lowercase()) => m.to_ascii_uppercase().into(),
        m => m.into(),
    };
    // TRACE echoes the request, held credentials included; CONNECT tunnels past
    // every rule. Neither reaches a target.
    if matches!(&*upper, "TRACE" | "TRACK" | "CONNECT") {
        return answered(reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "pgmoat: this method is not forwarded",
        ));
    }
    // `?_method=DELETE` runs a DELETE on frameworks that honour it (Laravel, Rails
    // forms); what runs must be what was judged.
    if uri
        .query()
        .is_some_and(|q| q.split('&').any(overrides_method))
    {
        return answered(reply::error(
            StatusCode::BAD_REQUEST,
            "pgmoat: a _method override is not accepted",
        ));
    }
    // The record's texts are shared, not copied (see `Caller`, `Route::name`).
    let route = door.route(&target.tenant, &target.name);
    let target_name: Arc<str> = match route {
        Some(r) => Arc::clone(&r.name),
        None => target.name.as_str().into(),
    };
    let method_text: Cow<'static, str> = match standard_method(&upper) {
        Some(m) => Cow::Borrowed(m),
        None => Cow::Owned(upper.to_string()),
    };
    let rec = |path: &str| HttpRequest {
        user: Arc::clone(&caller.user),
        groups: Arc::clone(&caller.groups),
        target: Arc::clone(&target_name),
        client: Arc::clone(&peer.text),
        method: method_text.clone(),
        path: path.to_owned(),
        ..Default::default()
    };
    let np = match normalize_path(rest) {
        Ok(np) => np,
        Err(e) => {
            let mut trail = Trail::new(tenant.audit.clone(), started, rec(rest));
            trail.rec.action = "block".into();
            trail.rec.rule = "path".into();
            let r = reply::error(StatusCode::BAD_REQUEST, &format!("pgmoat: {e}"));
            return answered(finish(r, trail, None));
        }
    };
    let rules = tenant.rules.current();
    let who = Subject {
        user: &identity.name,
        groups: &identity.groups,
        target: &target.name,
        search_path_changed: false,
    };
    let judged = door.judged.judge(&rules, &who, &upper, &np.decoded);
    if lean && (judged.action == Action::Approve || route.is_some_and(|r| r.plain_addr.is_none())) {
        return Admitted::Fallback;
    }
    let mut trail = Trail::new(tenant.audit.clone(), started, rec(&np.decoded));
    let reg = door
        .shared
        .sessions
        .register(crate::session::registry::Entry {
            tenant: Arc::clone(&caller.tenant_name),
            identity: Arc::clone(&caller.user),
            target: target_name,
            client: peer.addr,
            protocol: "http",
        });
    // What the console shows as running: `METHOD /path`.
    reg.running_parts(&[&upper, " ", &np.decoded]);
    reg.count(1);
    trail.register(reg);
    trail.rec.action = judged.action.as_str().into();
    trail.rec.rule = Arc::clone(&judged.deciding_rule);
    let query: Option<Arc<str>> = uri.query().map(Arc::from);
    trail.rec.query.clone_from(&query);
    // What is to reach the target (or wait for approval) is in the trail first, as
    // durably as `audit.durability` promises (batch: queued; fsync: on disk); a
    // request the trail cannot hold goes nowhere (SPEC section 6).
    if judged.action != Action::Block && trail.audit().is_enabled() {
        if let Err(e) = trail.append_decided().await {
            tracing::error!(user = %identity.name, target = %target.name, method = %upper, "audit: http_request not recorded, refused: {e}");
            let r = reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "pgmoat: the audit trail cannot record this request; refused",
            );
            return answered(finish(r, trail, Some(format!("audit: {e}"))));
        }
    }
    if judged.action == Action::Block {
        tracing::info!(user = %identity.name, target = %target.name, method = %upper, path = %np.decoded, rule = %judged.deciding_rule, "http request blocked");
        let r = reply::blocked(&judged.deciding_rule, &judged.description);
        return answered(finish(r, trail, None));
    }
    let Ok(method) = Method::from_bytes(upper.as_bytes()) else {
        let r = reply::error(StatusCode::BAD_REQUEST, "pgmoat: bad method");
        return answered(finish(r, trail, None));
    };
    Admitted::Go(Go {
        trail,
        caller,
        target,
        method,
        np,
        query,
        judged,
    })
}

/// The method's name as a `'static` text when it is one of the common ones, so a
/// request's records do not copy it.
fn standard_method(m: &str) -> Option<&'static str> {
    const COMMON: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    COMMON.into_iter().find(|c| *c == m)
}

/// Whether a query pair names a method override (`_method=...`, any case, encoded
/// or not).
fn overrides_method(pair: &str) -> bool {
    let key = pair.split('=').next().unwrap_or("");
    key.eq_ignore_ascii_case("_method") || key.eq_ignore_ascii_case("%5fmethod")
}

/// Answer with a response pgmoat made, recording it.
pub(crate) fn finish(mut r: Response<Body>, trail: Trail, error: Option<String>) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(trail.id()) {
        r.headers_mut().insert(REQUEST_ID, v);
    }
    let len = hyper::body::Body::size_hint(r.body()).exact().unwrap_or(0);
    trail.finish(r.status().as_u16(), len, error);
    r
}

/// What goes to the target.
struct Upstream<'a> {
    target: &'a HttpTarget,
    method: Method,
    path: &'a NormalPath,
    query: Option<&'a str>,
    headers: HeaderMap,
    peer: &'a Peer,
    /// The client connection's own upstream connections (HTTP/1 clients).
    own: Option<Arc<OwnUpstreams>>,
}

async fn forward(
    door: &Door,
    up: Upstream<'_>,
    body: Body,
    masks: Option<Arc<BodyMasks>>,
    mut trail: Trail,
) -> Response<Body> {
    let Some(route) = door.route(&up.target.tenant, &up.target.name) else {
        let r = reply::error(StatusCode::BAD_GATEWAY, "pgmoat: target unavailable");
        return finish(r, trail, None);
    };
    // Plain `http` targets from HTTP/1 clients: on the client connection's own
    // upstream connection; otherwise through the target's pooled client.
    let own = match (&up.own, &route.plain_addr) {
        (Some(own), Some(addr)) => Some((own, addr)),
        _ => None,
    };
    let Some(uri) = route.uri(&up.path.encoded, up.query, own.is_some()) else {
        let r = reply::error(StatusCode::BAD_REQUEST, "pgmoat: bad request URI");
        return finish(r, trail, None);
    };
    let mut headers = up.headers;
    let head = up.method == Method::HEAD;
    headers::upstream_request(
        &mut headers,
        &route.held,
        up.peer,
        door.tls,
        masks.is_some(),
    );
    if own.is_some() {
        headers.insert(header::HOST, route.host.clone());
    }
    let mut req = Request::new(body);
    *req.method_mut() = up.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    *req.version_mut() = Version::HTTP_11;
    let wait = door.config.upstream_timeout;
    let sent = async {
        match own {
            Some((own, addr)) => own
                .send(route.id, addr, route.connect_timeout, req)
                .await
                .map_err(|e| e.to_string()),
            None => route.client.request(req).await.map_err(|e| e.to_string()),
        }
    };
    let resp = match tokio::time::timeout(wait, sent).await {
        Ok(Ok(r)) => r,
        Err(_) => {
            tracing::warn!(target = %up.target.name, "http target did not answer within {wait:?}");
            let r = reply::error(
                StatusCode::GATEWAY_TIMEOUT,
                "pgmoat: the target did not answer in time",
            );
            return finish(
                r,
                trail,
                Some(format!("upstream: no answer within {wait:?}")),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(target = %up.target.name, "http target did not answer: {e}");
            let r = reply::error(StatusCode::BAD_GATEWAY, "pgmoat: the target did not answer");
            return finish(r, trail, Some(format!("upstream: {e}")));
        }
    };
    let (mut parts, body) = resp.into_parts();
    headers::downstream_response(&mut parts.headers);
    let status = parts.status;
    if let Ok(v) = HeaderValue::from_str(trail.id()) {
        parts.headers.insert(REQUEST_ID, v);
    }
    let kind = body_mask::kind_of(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let bodiless = head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if let Some(m) = masks.as_deref().filter(|_| !bodiless) {
        if let Some((r, e)) = masked::unmaskable(status, &parts.headers, kind, m) {
            return finish(r, trail, Some(e));
        }
    }
    let masks = match masks {
        Some(m) if kind != BodyKind::Opaque && !bodiless => m,
        // Nothing to mask: the body streams through as it comes.
        _ => {
            let body = Body::new(Metered::new(body, status.as_u16(), trail));
            return Response::from_parts(parts, body);
        }
    };
    let max = door.config.max_masked_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        let (r, e) = masked::too_large(max);
        return finish(r, trail, Some(e));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let raw = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            let over = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let (r, e) = if over {
                masked::too_large(max)
            } else {
                masked::broke_off(&e)
            };
            return finish(r, trail, Some(e));
        }
    };
    let target = &up.target.name;
    let masked = masked::mask_whole(
        target,
        &mut parts.headers,
        raw,
        kind,
        masks,
        max,
        &mut trail,
    );
    let body = match masked.await {
        Ok(b) => b,
        Err((r, e)) => return finish(r, trail, Some(e)),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let len = body.len() as u64;
    trail.finish(status.as_u16(), len, None);
    Response::from_parts(parts, Body::from(body))
}
