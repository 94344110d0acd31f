//! The allowed channel: the same request upstream, then bytes both ways until either
//! side closes, every byte handed to the recording on its way.
//!
//! Flow control is russh's: each side's writes wait for the peer's window, and a side
//! that is not read stops being read from in turn, so memory per channel is a few
//! packets, however much flows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use russh::{ChannelMsg, ChannelReadHalf};

use super::{Chan, Request, EXIT_UPSTREAM};
use crate::policy::Decision;
use crate::ssh::recording::{CastOptions, Recorder, Recording, Tap};

/// How long the other direction may take to wind down once one side has closed.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Hand output to the recording, if there is one; false when recording failed (the
/// channel then ends: nothing runs unrecorded).
async fn record_output(tap: Option<&Tap>, data: &Bytes) -> bool {
    match tap {
        None => true,
        Some(t) => t.output(data.clone()).await,
    }
}

async fn record_input(tap: Option<&Tap>, data: &Bytes) -> bool {
    match tap {
        None => true,
        Some(t) => t.input(data.clone()).await,
    }
}

impl Chan {
    pub(super) async fn relay(mut self, request: Request, d: Decision, mut rx: ChannelReadHalf) {
        let upstream = match self.ctx.upstream().await {
            Ok(u) => u,
            Err(why) => {
                return self
                    .refuse(&request, &d, format!("pgmoat: {why}"), EXIT_UPSTREAM)
                    .await
            }
        };
        let up = match upstream.handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("pgmoat: the upstream refused a channel: {e}");
                return self.refuse(&request, &d, msg, EXIT_UPSTREAM).await;
            }
        };
        if let Some(p) = &self.pty {
            let _ = up
                .request_pty(false, &p.term, p.cols, p.rows, p.pix.0, p.pix.1, &p.modes)
                .await;
        }
        let sent = match &request {
            Request::Exec(line) => up.exec(true, line.as_bytes()).await,
            Request::Shell => up.request_shell(true).await,
            Request::Subsystem(n) => up.request_subsystem(true, n.as_str()).await,
        };
        let (mut up_rx, up_tx) = up.split();
        let mut early = Vec::new();
        let accepted = sent.is_ok()
            && loop {
                match up_rx.wait().await {
                    Some(ChannelMsg::Success) => break true,
                    Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => break false,
                    Some(other) => early.push(other),
                }
            };
        if !accepted {
            let _ = up_tx.close().await;
            let msg = format!(
                "pgmoat: the upstream refused the {} request",
                request.kind()
            );
            return self.refuse(&request, &d, msg, EXIT_UPSTREAM).await;
        }
        let mut recording = None;
        if let Some(dir) = self.ctx.audit.dir() {
            let title = format!(
                "{}@{}: {}",
                self.ctx.identity,
                self.ctx.target.name,
                request.text().unwrap_or("shell")
            );
            let opts = CastOptions {
                size: self.size,
                term: self.pty.as_ref().map(|p| p.term.as_str()),
                title: &title,
                // scp is sftp too (OpenSSH 9 and later).
                sftp: matches!(&request, Request::Subsystem(n) if n == "sftp"),
                max_bytes: self.ctx.door.config.max_recording_bytes,
            };
            match Recorder::create(dir, &self.ctx.id, self.number, &opts) {
                Ok(r) => recording = Some(Recording::start(r)),
                Err(e) => {
                    let _ = up_tx.close().await;
                    let msg = format!("pgmoat: the channel cannot be recorded ({e}); refused");
                    return self.refuse(&request, &d, msg, EXIT_UPSTREAM).await;
                }
            }
        }
        let out_tap = recording.as_ref().map(Recording::tap);
        // Input too, on every channel: text as typed, binary counted and hashed.
        let in_tap = recording.as_ref().map(Recording::tap);
        let resize_tap = recording.as_ref().map(Recording::tap);
        let running = match &request {
            Request::Shell => "(shell)".to_string(),
            Request::Exec(c) => c.clone(),
            Request::Subsystem(n) => format!("(subsystem {n})"),
        };
        self.ctx.registration.running(Some(&running));
        let bytes_in = AtomicU64::new(0);
        let bytes_out = AtomicU64::new(0);
        let exit = Mutex::new(None::<u32>);
        let failed = Mutex::new(None::<String>);
        let fail = |why: &str| {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert_with(|| why.to_owned());
            }
        };
        // What the client sent while the request was being judged goes first.
        let pending = std::mem::take(&mut self.pending);
        let client_eof = self.client_eof;
        let metrics = &self.ctx.door.shared.metrics.ssh;

        let client_to_up = async {
            // Moved in, so they go when this future goes (see `finish` below).
            let (in_tap, resize_tap) = (in_tap, resize_tap);
            for data in pending {
                bytes_in.fetch_add(data.len() as u64, Relaxed);
                if !record_input(in_tap.as_ref(), &data).await {
                    fail("recording failed");
                    return;
                }
                if up_tx.data_bytes(data).await.is_err() {
                    return;
                }
            }
            if client_eof {
                let _ = up_tx.eof().await;
            }
            while let Some(msg) = rx.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        bytes_in.fetch_add(data.len() as u64, Relaxed);
                        metrics.bytes_in.fetch_add(data.len() as u64, Relaxed);
                        if !record_input(in_tap.as_ref(), &data).await {
                            fail("recording failed");
                            break;
                        }
                        if up_tx.data_bytes(data).await.is_err() {
                            break;
                        }
                    }
                    ChannelMsg::Eof => {
                        let _ = up_tx.eof().await;
                    }
                    ChannelMsg::Close => break,
                    ChannelMsg::WindowChange {
                        col_width,
                        row_height,
                        pix_width,
                        pix_height,
                    } => {
                        if let Some(t) = &resize_tap {
                            if !t.resize(col_width, row_height).await {
                                fail("recording failed");
                                break;
                            }
                        }
                        let _ = up_tx
                            .window_change(col_width, row_height, pix_width, pix_height)
                            .await;
                    }
                    ChannelMsg::Signal { signal } => {
                        let _ = up_tx.signal(signal).await;
                    }
                    // Other requests were answered (refused) by the handler.
                    _ => {}
                }
            }
            let _ = up_tx.close().await;
        };

        let up_to_client = async {
            let out_tap = out_tap;
            let mut queue = early.into_iter();
            loop {
                let msg = match queue.next() {
                    Some(m) => m,
                    None => match up_rx.wait().await {
                        Some(m) => m,
                        None => break,
                    },
                };
                match msg {
                    ChannelMsg::Data { data } => {
                        bytes_out.fetch_add(data.len() as u64, Relaxed);
                        metrics.bytes_out.fetch_add(data.len() as u64, Relaxed);
                        if !record_output(out_tap.as_ref(), &data).await {
                            fail("recording failed");
                            break;
                        }
                        if self.tx.data_bytes(data).await.is_err() {
                            break;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext } => {
                        bytes_out.fetch_add(data.len() as u64, Relaxed);
                        if !record_output(out_tap.as_ref(), &data).await {
                            fail("recording failed");
                            break;
                        }
                        if self.tx.extended_data_bytes(ext, data).await.is_err() {
                            break;
                        }
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        if let Ok(mut e) = exit.lock() {
                            *e = Some(exit_status);
                        }
                        let _ = self.tx.exit_status(exit_status).await;
                    }
                    ChannelMsg::ExitSignal {
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    } => {
                        let _ = self
                            .handle
                            .exit_signal_request(
                                self.id,
                                signal_name,
                                core_dumped,
                                error_message,
                                lang_tag,
                            )
                            .await;
                    }
                    ChannelMsg::Eof => {
                        let _ = self.tx.eof().await;
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        };

        // Boxed rather than pinned in place, so they can be dropped before the end.
        let mut client_to_up = Box::pin(client_to_up);
        let mut up_to_client = Box::pin(up_to_client);
        tokio::select! {
            // The upstream is done: nothing the client still sends has anywhere to go.
            _ = &mut up_to_client => {}
            _ = &mut client_to_up => {
                let _ = tokio::time::timeout(WIND_DOWN, &mut up_to_client).await;
            }
        }
        let mut closed = self.record(&request, &d, "closed");
        closed.exit_status = exit.lock().ok().and_then(|e| *e);
        closed.bytes_in = Some(bytes_in.load(Relaxed));
        closed.bytes_out = Some(bytes_out.load(Relaxed));
        closed.error = failed.lock().ok().and_then(|f| f.clone());
        // The taps live in the two directions' futures: gone with them, so the
        // recording's queue closes once its last chunks are written.
        drop((client_to_up, up_to_client));
        let finished = match recording {
            Some(r) => Some(r.finish().await),
            None => None,
        };
        match finished {
            Some(Ok(done)) => {
                closed.recording = Some(done.name);
                closed.recording_sha256 = Some(done.sha256);
                closed.output_bytes = Some(done.output.bytes);
                closed.output_sha256 = Some(done.output.sha256);
                closed.input_bytes = Some(done.input.bytes);
                closed.input_sha256 = Some(done.input.sha256);
            }
            Some(Err(e)) => {
                closed.error = Some(format!("recording could not be completed: {e}"));
            }
            None => {}
        }
        self.ctx.registration.running(None);
        // Recorded before the client hears the channel is over: when `ssh` returns,
        // the trail is complete.
        self.closed(closed).await;
        let _ = self.tx.eof().await;
        let _ = self.tx.close().await;
    }
}
