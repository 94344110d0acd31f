//! What pgmoat reads from a server: framing, ErrorResponse/NoticeResponse fields and
//! ParameterStatus (checked by the session-settings guard).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmoat::protocol::backend;
use pgmoat::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use pgmoat::session::relay::runtime_setting_refusal;

fuzz_target!(|data: &[u8]| {
    let mut pos = 0;
    while let Ok(Some(h)) = frame::check(&data[pos..], Direction::Backend, LARGE_MESSAGE_LIMIT) {
        if data.len() - pos < h.total {
            break;
        }
        let body = &data[pos + 5..pos + h.total];
        match h.tag {
            b'E' | b'N' => {
                let fields = backend::parse_fields(body);
                let _ = backend::field(&fields, b'C');
            }
            b'S' => {
                let _ = backend::parse_parameter_status(body);
                let _ = runtime_setting_refusal(body);
            }
            _ => {}
        }
        pos += h.total;
    }
});
