//! An answer masks apply to, on the lean path: read whole in its framing (at most
//! `max_masked_body`), masked as the hyper path masks it (`gateway::masked`), and
//! written with its own Content-Length in one write.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{field, read_up, status_line, Answer, BodyBreak, UpConn, READ_ROOM};
use crate::gateway::body_mask::{BodyKind, BodyMasks};
use crate::gateway::h1::framing::{BodyLen, Chunked, Piece};
use crate::gateway::h1::{After, Lean};
use crate::gateway::masked;
use crate::gateway::record::Trail;

impl Lean<'_> {
    /// Relay an answer masks apply to: read whole (at most `max_masked_body`),
    /// masked, written with its Content-Length in one write.
    pub(super) async fn relay_masked(
        &mut self,
        mut up: UpConn,
        answer: Answer,
        kind: BodyKind,
        masks: Arc<BodyMasks>,
        mut trail: Trail,
        close: bool,
    ) -> After {
        let Answer {
            status,
            mut headers,
            body,
            keep_up,
        } = answer;
        let door = self.door;
        let max = door.config.max_masked_body;
        let raw = match read_whole(&mut up, body, max).await {
            Ok(raw) => raw,
            Err(refused) => {
                let (r, e) = match refused {
                    Whole::TooLarge => masked::too_large(max),
                    Whole::Broke(e) => masked::broke_off(&e),
                };
                return self.answer_recorded(r, trail, Some(e), close).await;
            }
        };
        let target = trail.rec.target.clone();
        let masked = masked::mask_whole(&target, &mut headers, raw, kind, masks, max, &mut trail);
        let body = match masked.await {
            Ok(b) => b,
            Err((r, e)) => return self.answer_recorded(r, trail, Some(e), close).await,
        };
        let out = &mut self.out;
        out.clear();
        status_line(out, status);
        for (name, value) in &headers {
            field(out, name.as_str(), value.as_bytes());
        }
        field(
            out,
            "content-length",
            itoa::Buffer::new().format(body.len()).as_bytes(),
        );
        if close {
            field(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        if self.io.write_all(&self.out).await.is_err() {
            let e = "the client went away before the body ended";
            trail.finish(status.as_u16(), 0, Some(e.into()));
            return After::Close;
        }
        trail.finish(status.as_u16(), body.len() as u64, None);
        self.answered(up, keep_up, close)
    }
}

/// Why a body was not read whole.
enum Whole {
    TooLarge,
    Broke(String),
}

/// A response body read whole in its framing, at most `max` bytes (the chunked
/// framing removed). Past `max` the rest is not read (the connection is dropped).
async fn read_whole(up: &mut UpConn, body: BodyLen, max: u64) -> Result<Bytes, Whole> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let broke = |e: BodyBreak| match e {
        BodyBreak::Upstream(e) => Whole::Broke(e),
        BodyBreak::Client | BodyBreak::Terminated => Whole::Broke("ended".into()),
    };
    match body {
        BodyLen::Empty => Ok(Bytes::new()),
        BodyLen::Length(n) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= limit)
                .ok_or(Whole::TooLarge)?;
            while up.buf.len() < n {
                read_up(up).await.map_err(broke)?;
            }
            Ok(up.buf.split_to(n).freeze())
        }
        BodyLen::Chunked => {
            let mut whole = BytesMut::new();
            let mut chunks = Chunked::default();
            loop {
                match chunks.next(&mut up.buf) {
                    Ok(Some(Piece::Data(d))) => {
                        if whole.len() + d.len() > limit {
                            return Err(Whole::TooLarge);
                        }
                        whole.extend_from_slice(&d);
                    }
                    Ok(Some(Piece::End)) => return Ok(whole.freeze()),
                    Ok(None) => read_up(up).await.map_err(broke)?,
                    Err(e) => return Err(Whole::Broke(e.to_string())),
                }
            }
        }
        BodyLen::UntilClose => loop {
            if up.buf.len() > limit {
                return Err(Whole::TooLarge);
            }
            up.buf.reserve(READ_ROOM);
            match up.io.read_buf(&mut up.buf).await {
                Ok(0) => return Ok(up.buf.split().freeze()),
                Ok(_) => {}
                Err(e) => return Err(Whole::Broke(e.to_string())),
            }
        },
    }
}
