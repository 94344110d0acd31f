//! One session channel: collect what it asks for (pty, then exec, shell or subsystem),
//! judge it, refuse or hold it, then open the same channel upstream and relay both
//! ways, recording as it goes.
//!
//! What the client sees: a refused request gets `pgmoat: blocked by rule "<id>": ...`
//! on stderr and exit status 126; a held one `pgmoat: waiting for approval ap-...`
//! first. The request itself was answered with success when it arrived (in `conn`, in
//! order with the channel's other requests), so the client shows the message and the
//! status instead of a bare "exec request failed". The connection and its other
//! channels carry on.

mod relay;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty};

use super::conn::Ctx;
use crate::approval::Resolution;
use crate::audit::event::{Approval, ApprovalState};
use crate::audit::ssh::SshChannel;
use crate::audit::Event;
use crate::policy::ssh::SshAsk;
use crate::policy::{Action, Decision, Subject};

/// Exit status of a refused request (the shell's "found but cannot run").
pub const EXIT_REFUSED: u32 = 126;
/// Exit status when pgmoat cannot reach or use the upstream (as `ssh` itself uses).
pub const EXIT_UPSTREAM: u32 = 255;
/// Client input kept while a request waits for its decision; past it, refused.
const MAX_PENDING: usize = 1 << 20;

enum Request {
    Exec(String),
    Shell,
    Subsystem(String),
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Shell => "shell",
            Request::Subsystem(_) => "subsystem",
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Request::Exec(c) | Request::Subsystem(c) => Some(c),
            Request::Shell => None,
        }
    }
}

struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
    pix: (u32, u32),
    modes: Vec<(Pty, u32)>,
}

struct Chan {
    ctx: Arc<Ctx>,
    id: ChannelId,
    number: u32,
    handle: Handle,
    tx: ChannelWriteHalf<Msg>,
    pty: Option<PtyRequest>,
    size: (u32, u32),
    /// Client input that arrived before the upstream channel was ready.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    client_eof: bool,
    started: Instant,
}

/// Serve one session channel to its end.
pub async fn run(ctx: Arc<Ctx>, channel: Channel<Msg>, handle: Handle) {
    let number = ctx.next_channel();
    ctx.channels.fetch_add(1, Relaxed);
    let id = channel.id();
    let (mut rx, tx) = channel.split();
    let mut ch = Chan {
        ctx,
        id,
        number,
        handle,
        tx,
        pty: None,
        size: (80, 24),
        pending: Vec::new(),
        pending_bytes: 0,
        client_eof: false,
        started: Instant::now(),
    };
    let Some(request) = ch.read_request(&mut rx).await else {
        if ch.pending_bytes > MAX_PENDING {
            // Not the client leaving: pgmoat ends the channel (see read_request).
            let _ = ch.tx.eof().await;
            let _ = ch.tx.close().await;
        }
        return;
    };
    ch.serve(request, rx).await;
}

impl Chan {
    /// Everything up to the exec, shell or subsystem request. None: the client left.
    async fn read_request(&mut self, rx: &mut ChannelReadHalf) -> Option<Request> {
        while let Some(msg) = rx.wait().await {
            match msg {
                ChannelMsg::RequestPty {
                    term,
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                    terminal_modes,
                    ..
                } => {
                    self.size = (col_width, row_height);
                    self.pty = Some(PtyRequest {
                        term,
                        cols: col_width,
                        rows: row_height,
                        pix: (pix_width, pix_height),
                        modes: terminal_modes,
                    });
                }
                ChannelMsg::Exec { command, .. } => {
                    return Some(Request::Exec(
                        // Not UTF-8: judged as text with U+FFFD, which no rule
                        // written for real commands matches, and run as sent.
                        String::from_utf8(command)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    ));
                }
                ChannelMsg::RequestShell { .. } => return Some(Request::Shell),
                ChannelMsg::RequestSubsystem { name, .. } => return Some(Request::Subsystem(name)),
                other => {
                    if !self.side_message(other).await {
                        return None;
                    }
                    // Input streamed before any request: a client that will not say
                    // what it wants does not get pgmoat's memory either.
                    if self.pending_bytes > MAX_PENDING {
                        tracing::info!("ssh: over {MAX_PENDING} bytes of input before any request; channel closed");
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Messages that may come at any time before the relay: false when the client
    /// closed the channel.
    async fn side_message(&mut self, msg: ChannelMsg) -> bool {
        match msg {
            ChannelMsg::Data { data } => {
                // Kept up to MAX_PENDING only: past it the request is refused (or,
                // before any request, the channel closed), never buffered on.
                self.pending_bytes += data.len();
                if self.pending_bytes <= MAX_PENDING {
                    self.pending.push(data);
                }
            }
            ChannelMsg::Eof => self.client_eof = true,
            ChannelMsg::Close => return false,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => self.size = (col_width, row_height),
            // Requests are answered by the connection's handler as they arrive (see
            // `conn`): forwarding refused, the environment not passed on.
            _ => {}
        }
        true
    }

    fn newline(&self) -> &'static str {
        if self.pty.is_some() {
            "\r\n"
        } else {
            "\n"
        }
    }

    fn record(&self, request: &Request, d: &Decision, phase: &str) -> SshChannel {
        SshChannel {
            channel: self.number,
            phase: phase.into(),
            request: request.kind().into(),
            command: request.text().map(str::to_owned),
            action: d.action.as_str().into(),
            rules: d.rules.clone(),
            rule: d.deciding_rule.clone(),
            exit_status: None,
            bytes_in: None,
            bytes_out: None,
            duration_ms: None,
            recording: None,
            recording_sha256: None,
            output_bytes: None,
            output_sha256: None,
            input_bytes: None,
            input_sha256: None,
            error: None,
        }
    }

    async fn serve(mut self, request: Request, mut rx: ChannelReadHalf) {
        let asks = match &request {
            Request::Exec(line) => super::command::split(line),
            Request::Shell => vec![SshAsk::Shell],
            Request::Subsystem(n) => vec![SshAsk::Subsystem(n.clone())],
        };
        let rules = self.ctx.tenant.rules.current();
        let subject = Subject {
            user: &self.ctx.identity,
            groups: &self.ctx.groups,
            target: &self.ctx.target.name,
            search_path_changed: false,
        };
        let decision = rules.decide_ssh(&asks, &subject);
        let approvers = rules
            .rules
            .iter()
            .find(|r| r.id == decision.deciding_rule)
            .map(|r| r.approvers.clone())
            .unwrap_or_default();
        drop(rules);
        self.ctx.door.shared.metrics.ssh.channel(decision.action);
        self.ctx.registration.count(1);
        tracing::info!(
            session = %self.ctx.id, channel = self.number, request = request.kind(),
            command = request.text().unwrap_or(""), action = decision.action.as_str(),
            rule = %decision.deciding_rule, "ssh request judged"
        );
        let decided = self.record(&request, &decision, "decided");
        if let Err(e) = self
            .ctx
            .audit
            .append(Some(&self.ctx.id), Event::SshChannel(decided))
            .await
        {
            let msg = format!("pgmoat: the audit trail cannot record this request ({e}); refused");
            return self.refuse(&request, &decision, msg, EXIT_REFUSED).await;
        }
        match decision.action {
            Action::Block => {
                let mut msg = format!("pgmoat: blocked by rule \"{}\"", decision.deciding_rule);
                if !decision.description.is_empty() {
                    msg.push_str(": ");
                    msg.push_str(&decision.description);
                }
                return self.refuse(&request, &decision, msg, EXIT_REFUSED).await;
            }
            Action::Approve => match self.hold(&request, &decision, &approvers, &mut rx).await {
                Held::Approved => {}
                Held::Refused(msg) => {
                    return self.refuse(&request, &decision, msg, EXIT_REFUSED).await
                }
                Held::Gone => {
                    let mut closed = self.record(&request, &decision, "closed");
                    closed.error = Some("the client left while waiting for approval".into());
                    return self.closed(closed).await;
                }
            },
            Action::Allow => {}
        }
        self.relay(request, decision, rx).await;
    }

    /// Tell the client why on stderr, end the channel with `status`, record it.
    async fn refuse(&self, request: &Request, d: &Decision, msg: String, status: u32) {
        let text = format!("{msg}{}", self.newline());
        let _ = self.tx.extended_data_bytes(1, Bytes::from(text)).await;
        let _ = self.tx.exit_status(status).await;
        let _ = self.tx.eof().await;
        let _ = self.tx.close().await;
        let mut closed = self.record(request, d, "closed");
        closed.exit_status = Some(status);
        closed.error = Some(msg);
        self.closed(closed).await;
    }

    async fn closed(&self, mut record: SshChannel) {
        record.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        if let Err(e) = self
            .ctx
            .audit
            .append(Some(&self.ctx.id), Event::SshChannel(record))
            .await
        {
            tracing::error!(session = %self.ctx.id, channel = self.number, "audit: ssh_channel not recorded: {e}");
        }
    }

    async fn approval_record(
        &self,
        id: &str,
        state: ApprovalState,
        by: Option<String>,
        reason: Option<String>,
    ) -> bool {
        let event = Event::Approval(Approval {
            id: id.to_owned(),
            statement: u64::from(self.number),
            state,
            by,
            reason,
            grant_until: None,
        });
        match self.ctx.audit.append(Some(&self.ctx.id), event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(approval = %id, "audit: approval not recorded: {e}");
                false
            }
        }
    }
}

enum Held {
    Approved,
    Refused(String),
    /// The client closed the channel or left: the request was withdrawn.
    Gone,
}

impl Chan {
    /// Hold the request until an approver decides, it expires, or the client leaves.
    async fn hold(
        &mut self,
        request: &Request,
        d: &Decision,
        approvers: &[String],
        rx: &mut ChannelReadHalf,
    ) -> Held {
        let Some(approvals) = self.ctx.tenant.approvals.clone() else {
            return Held::Refused(format!(
                "pgmoat: rule \"{}\" needs an approval, but approvals are not configured",
                d.deciding_rule
            ));
        };
        let asked = match request {
            Request::Exec(c) => c.clone(),
            Request::Shell => "(interactive shell)".into(),
            Request::Subsystem(n) => format!("(subsystem {n})"),
        };
        let mut ticket = approvals.request(
            &self.ctx.identity,
            &self.ctx.groups,
            &self.ctx.target.name,
            &asked,
            Vec::new(),
            &d.deciding_rule,
            approvers,
            crate::approval::FrontDoor::Ssh,
            true,
        );
        let id = ticket.request.id.clone();
        if let Err(e) = approvals.publish(&ticket).await {
            return Held::Refused(format!("pgmoat: approvals unavailable ({e})"));
        }
        if !self
            .approval_record(&id, ApprovalState::Requested, None, None)
            .await
        {
            return Held::Refused("pgmoat: the audit trail cannot record the hold; refused".into());
        }
        let note = format!(
            "pgmoat: waiting for approval {id} (rule \"{}\"){}",
            d.deciding_rule,
            self.newline()
        );
        let _ = self.tx.extended_data_bytes(1, Bytes::from(note)).await;
        let mut shutdown = self.ctx.door.shared.shutdown.clone();
        let (state, by, reason, outcome) = loop {
            tokio::select! {
                r = ticket.wait() => break match r {
                    Resolution::Approved { by, reason, .. } => (ApprovalState::Approved, Some(by), Some(reason), Held::Approved),
                    Resolution::Denied { by, reason } => {
                        let msg = if reason.is_empty() {
                            format!("pgmoat: approval {id} denied by {by}")
                        } else {
                            format!("pgmoat: approval {id} denied by {by}: {reason}")
                        };
                        (ApprovalState::Denied, Some(by), Some(reason), Held::Refused(msg))
                    }
                    Resolution::Expired => (ApprovalState::Expired, None, None, Held::Refused(format!(
                        "pgmoat: approval {id} timed out: nobody approved the request in time"))),
                    Resolution::Withdrawn => (ApprovalState::Withdrawn, None, None, Held::Gone),
                },
                msg = rx.wait() => match msg {
                    None => break (ApprovalState::Withdrawn, None, Some("the client disconnected".to_string()), Held::Gone),
                    Some(m) => {
                        if !self.side_message(m).await {
                            break (ApprovalState::Withdrawn, None, Some("the client closed the channel".to_string()), Held::Gone);
                        }
                        if self.pending_bytes > MAX_PENDING {
                            break (ApprovalState::Withdrawn, None, Some("too much input while waiting".to_string()), Held::Refused(
                                format!("pgmoat: more than {MAX_PENDING} bytes of input while waiting for approval {id}; refused")));
                        }
                    }
                },
                // (The watch guard is dropped inside: it must not live in a Send future.)
                _ = async { let _ = shutdown.wait_for(|s| *s).await.is_ok(); } => break (ApprovalState::Withdrawn, None, Some("gateway shutting down".to_string()),
                    Held::Refused(format!("pgmoat: the gateway is shutting down; approval {id} withdrawn"))),
            }
        };
        drop(ticket);
        let recorded = self
            .approval_record(&id, state, by, reason.filter(|r| !r.is_empty()))
            .await;
        match outcome {
            Held::Approved if !recorded => {
                Held::Refused("pgmoat: the audit trail cannot record the approval; refused".into())
            }
            o => o,
        }
    }
}
