//! Everything pgmoat reads from an untrusted client before and after startup: the
//! opening packet, the message framing the relay scans, SASL messages and `options`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmoat::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use pgmoat::protocol::scram::{ScramServer, Verifier};
use pgmoat::protocol::startup;
use pgmoat::session::params;

fuzz_target!(|data: &[u8]| {
    // Opening packet: length word, then whatever it claims.
    if let Ok(Some(len)) = startup::packet_len(data) {
        if data.len() >= len {
            if let Ok(startup::Initial::Startup(s)) = startup::parse(&data[..len]) {
                let _ = params::check_startup(&s.params);
            }
        }
    }
    // The relay's header scan, with a small cap as well as the protocol's own.
    for max in [LARGE_MESSAGE_LIMIT, 4096] {
        let mut pos = 0;
        while let Ok(Some(h)) = frame::check(&data[pos..], Direction::Frontend, max) {
            assert!(h.total >= 5 && h.total <= max.max(5) + 1);
            if data.len() - pos < h.total {
                break;
            }
            pos += h.total;
        }
    }
    // SASL exchange with arbitrary client messages.
    let (a, b) = data.split_at(data.len() / 2);
    let mut server = ScramServer::new(Verifier::mock("fuzz", b"k"));
    if server.client_first(a).is_ok() {
        let _ = server.client_final(b);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = params::parse_options(text);
        let _ = Verifier::parse(text);
    }
});
