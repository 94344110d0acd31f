//! What people type into the admin API, the CLI and config files: any bytes must give a
//! value or a one-line error, never a panic (an overflowing `for` once crashed the
//! admin handler).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for approve in [true, false] {
        if let Err(e) = pgmoat::admin::parse_decision(data, approve) {
            assert!(!e.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = pgmoat::config::parse_duration(text) {
            assert!(d <= pgmoat::config::MAX_DURATION);
            let _ = std::time::Instant::now() + d;
        }
        let _ = pgmoat::Config::from_yaml(text, "fuzz.yaml", std::path::Path::new("/"), &|_| {
            Some("x".to_string())
        });
    }
});
