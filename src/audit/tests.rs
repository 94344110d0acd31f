//! Unit tests of the store: see the bottom of the brief in mod.rs.
