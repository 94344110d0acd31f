//! The Postgres wire protocol, version 3.0, as pure functions over bytes: no I/O.
//!
//! Framing is check-then-parse: [`frame::check`] looks at a header in place and says
//! whether a whole message is there, without copying or allocating. Encoders append to
//! a caller's `BytesMut` and back-fill the length.

pub mod answers;
pub mod backend;
pub mod frame;
pub mod scram;
pub mod sqlstate;
pub mod startup;

pub use frame::{Direction, FrameError, Header};
