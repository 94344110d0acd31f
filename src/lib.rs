//! pgmoat: a Postgres wire-protocol firewall.
//!
//! # Layout
//!
//! - [`protocol`]: the wire codec, pure functions over bytes (framing, startup, SCRAM).
//! - [`config`]: `pgmoat.yaml`, raw serde form -> validated [`config::Config`].
//! - [`net`]: the listener, TLS, connection limit and graceful shutdown.
//! - [`session`]: one task per client: negotiation, authentication, the upstream
//!   connection with held credentials, and the relay loop with its interception points.
//! - [`auth`]: who is calling.
//! - [`admin`]: the admin HTTP API.
//! - [`metrics`]: counters behind `GET /metrics`.
//! - [`quickstart`]: the embedded demo.
//!
//! Dependencies point one way: `protocol` imports nothing of ours; `session` is the one
//! orchestrator; nothing imports `session` but `net`.
//!
//! # Life of a query
//!
//! Client bytes land in the session's read buffer. The relay scans message headers in
//! place; a Query or Parse is held until whole and handed to the interception point
//! (where the rule engine decides), then forwarded as the same bytes. Server messages
//! stream back the same way, batched into one write per read, with ReadyForQuery
//! tracked so that any response pgmoat composes lands in protocol order.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod classify;
pub mod config;
pub mod explain;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod protocol;
pub mod quickstart;
pub mod session;

pub use config::Config;
pub use net::Gateway;
