//! A response that masks apply to, masked as a whole: shared by the hyper path
//! (`handler`) and the lean HTTP/1.1 path (`h1`), so a client gets the same bytes,
//! the same refusals and the same record whichever path served it. The callers read
//! the body (bounded by `max_masked_body`); this decides whether it may be read at
//! all, masks it, and fixes the headers that described the target's bytes.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};

use super::body_mask::{self, BodyKind, BodyMasks, MaskError};
use super::record::Trail;
use super::reply;

/// Bodies this small are masked on the request's own task; larger ones on the
/// blocking pool, so one big JSON document does not stall other clients.
const MASK_INLINE: usize = 64 * 1024;

/// A response pgmoat sends instead of the target's, and the error its record gets.
pub(crate) type Refused = (Response<Body>, String);

/// What masks apply to and pgmoat cannot read does not go out (fail closed): a part
/// of a body, a multipart body, or (where json: masks apply: the data they cover may
/// come in another format the client asked for) a binary type other than a picture,
/// sound, video or font. With detectors alone, binary bodies stream: detectors look
/// for text. Only asked when masks apply and the response has a body.
pub(crate) fn unmaskable(
    status: StatusCode,
    headers: &HeaderMap,
    kind: BodyKind,
    m: &BodyMasks,
) -> Option<Refused> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let refused = status == StatusCode::PARTIAL_CONTENT
        || media.starts_with("multipart/")
        || (kind == BodyKind::Opaque && m.has_json() && !body_mask::is_media(&media));
    refused.then(|| {
        let r = reply::error(
            StatusCode::BAD_GATEWAY,
            "pgmoat: the target's response cannot be masked (a partial, multipart or unreadable body)",
        );
        (r, format!("unmaskable response: {status} {media}"))
    })
}

/// The answer to a body over `max_masked_body` (declared or found so).
pub(crate) fn too_large(max: u64) -> Refused {
    let r = reply::error(
        StatusCode::BAD_GATEWAY,
        "pgmoat: the response is too large to be masked",
    );
    (r, format!("body over max_masked_body ({max} bytes)"))
}

/// The answer to a body that broke off before its end.
pub(crate) fn broke_off(e: &dyn std::fmt::Display) -> Refused {
    let r = reply::error(
        StatusCode::BAD_GATEWAY,
        "pgmoat: the target's response broke off",
    );
    (r, format!("upstream body: {e}"))
}

/// Mask the whole body `raw` (as the target sent it, compressed or not) of a
/// response with `headers` (the downstream ones). Returns the body to send: the
/// target's bytes when nothing was found, else the masked body, uncompressed, with
/// the validators of the old bytes removed from `headers` and the masks that fired
/// in the record. Content-Length is the caller's to write.
pub(crate) async fn mask_whole(
    target: &str,
    headers: &mut HeaderMap,
    raw: Bytes,
    kind: BodyKind,
    masks: Arc<BodyMasks>,
    max: u64,
    trail: &mut Trail,
) -> Result<Bytes, Refused> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let compressed = encoding.is_some();
    let work = {
        let raw = raw.clone();
        move || {
            let plain = body_mask::decode(encoding.as_deref(), raw.to_vec(), max)?;
            masks.mask(plain, kind)
        }
    };
    // Inline only when the work is known to be small: a compressed body's size says
    // nothing of what it decodes to (up to `max`), which would stall this worker's
    // other connections.
    let masked = if raw.len() <= MASK_INLINE && !compressed {
        work()
    } else {
        match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => Err(MaskError::Corrupt(format!("masking task: {e}"))),
        }
    };
    let (out, fired) = match masked {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(%target, "response not masked, refused: {e}");
            let r = match e {
                MaskError::TooLarge(_) => too_large(max).0,
                _ => reply::error(
                    StatusCode::BAD_GATEWAY,
                    "pgmoat: the response could not be masked",
                ),
            };
            return Err((r, e.to_string()));
        }
    };
    if fired.is_empty() {
        // Nothing found: the target's bytes as they came (compressed or not).
        return Ok(raw);
    }
    // The client gets the masked body plain; validators of the old bytes go.
    for h in [
        header::CONTENT_ENCODING,
        header::ETAG,
        header::CONTENT_RANGE,
    ] {
        headers.remove(h);
    }
    headers.remove("content-md5");
    headers.remove("digest");
    trail.rec.masked_fields = fired;
    Ok(Bytes::from(out))
}
