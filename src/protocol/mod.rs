//! The Postgres wire protocol, version 3.0, as pure functions over bytes: no I/O.
//!
//! Framing is check-then-parse: [`frame::check`] looks at a header in place and says
//! whether a whole message is there, without copying or allocating. Encoders append to
//! a caller's `BytesMut` and back-fill the length. Readers are typed views borrowed
//! over the read buffer ([`frontend`] for client messages, [`backend_view`] for the
//! server's), built on one cursor ([`reader`]): nothing outside this module counts
//! bytes or looks for a NUL.

pub mod answers;
pub mod backend;
pub mod backend_view;
pub mod formats;
pub mod frame;
pub mod frontend;
pub mod reader;
pub mod scram;
pub mod sqlstate;
pub mod startup;

pub use frame::{Direction, FrameError, Header};
pub use reader::{CStrings, Int16s, MessageError, Oids, Values};
