//! Rule files are written by people and posted to /api/v1/rules/validate: any bytes
//! must give rules or errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgmoat::policy::RuleSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RuleSet::from_sources(&[("fuzz.yaml".to_string(), text.to_string())]);
    }
});
