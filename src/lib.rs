//! pgmoat: a Postgres wire-protocol firewall.
//!
//! # Layout
//!
//! - [`protocol`]: the wire codec, pure functions over bytes (framing, startup, SCRAM,
//!   typed borrowed views of every message both ways).
//! - [`config`]: `pgmoat.yaml`, raw serde form -> validated [`config::Config`].
//! - [`net`]: the listener, TLS, connection limit and graceful shutdown; builds each
//!   tenant's runtime and joins the cluster.
//! - [`session`]: one task per client: negotiation, authentication (which finds the
//!   caller's tenant: its targets, rules, masks, approvals and trail), the upstream
//!   connection with held credentials, and the relay loop with its interception points.
//! - [`catalog`]: what a target's catalog says that judging needs (user operators, casts,
//!   domains, function bodies, views, what writing a table runs), loaded and cached per
//!   target.
//! - [`cluster`]: the state database replicas share (approvals, grants, heartbeats,
//!   login failures, audit heads), reached through tokio-postgres.
//! - [`classify`]: the only module that touches libpg_query: SQL -> per-statement facts,
//!   with an exact-text and a literal-insensitive shape cache.
//! - [`policy`]: rule files -> compiled rule set -> decisions; hot reload.
//! - [`explain`]: what the gateway would do with some SQL (CLI and admin API).
//! - [`auth`]: who is calling: SCRAM users, OIDC tokens, client certificates.
//! - [`login`]: `pgmoat login`, the device flow that gets a person a token.
//! - [`audit`]: the tamper-evident trail: hash-chained JSON-lines segments, one
//!   group-commit writer thread, crash repair of a torn tail, sinks (stdout, webhook,
//!   syslog) with head export, and the readers behind `pgmoat audit verify|sessions|replay`.
//! - [`mask`]: masks and detectors: per-identity compiled masks over a target's catalog,
//!   RowDescription -> result plan, in-place DataRow rewriting, scrubbing of server
//!   messages. Lineage itself is traced in `classify::lineage`.
//! - [`approval`]: statements held for approval: pending requests, grants, Slack and
//!   webhook notification, the `pgmoat approvals` CLI.
//! - [`admin`]: the admin HTTP API.
//! - [`gateway`]: the HTTP gateway: internal HTTP APIs behind the same identities,
//!   rules, masks, approvals and audit.
//! - [`metrics`]: counters behind `GET /metrics`.
//! - [`quickstart`]: the embedded demo.
//! - [`ssh`]: the SSH front door: stock ssh/scp/sftp through the same rules,
//!   approvals and audit, with asciicast recordings.
//!
//! Dependencies point one way: `protocol` imports nothing of ours; `session` is the one
//! orchestrator; nothing imports `session` but `net` and `catalog`,
//! which opens its side connection with the session's upstream code. `mask` reads the
//! catalog from `catalog`, not through `session`.
//!
//! # Life of a query
//!
//! Client bytes land in the session's read buffer. The relay scans message headers in
//! place; a Query or Parse is held until whole, classified (from cache when its text or
//! its shape was seen before; otherwise libpg_query on a parse thread) and decided
//! against the current rules. An allowed message is forwarded as the same bytes; a
//! refused one is replaced by a stand-in that fails on the server, whose error pgmoat
//! swaps for its own, so the server's transaction state stays exactly right; an
//! `approve` one waits in the session until someone decides (a prepared statement at
//! each Execute, with its parameters). Statement and portal names are followed as the
//! server sees them: a name changes hands only when the server's ParseComplete,
//! CloseComplete or CommandComplete says so. With an audit trail the
//! statement's record is durable before it is forwarded. Server messages stream back
//! the same way, batched into one write per read, with ReadyForQuery tracked so that any
//! response pgmoat composes lands in protocol order; for identities with masks, result
//! messages are held whole and rewritten where the plan says.

#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_sql;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod classify;
pub mod cluster;
pub mod config;
pub mod console;
pub mod explain;
pub mod gateway;
pub mod login;
pub mod mask;
pub mod mcp;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod protocol;
pub mod quickstart;
pub mod session;
pub mod setup;
pub mod ssh;

pub use config::Config;
pub use net::Gateway;
