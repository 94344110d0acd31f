//! The DataRow rewriter and the RowDescription reader against arbitrary server bytes:
//! never a panic, and a rewritten row is always a well-formed DataRow.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgmoat::mask::method::Method;
use pgmoat::mask::rewrite::{rewrite_data_row, ColumnMask, ResultPlan, Scratch};

fuzz_target!(|data: &[u8]| {
    let _ = pgmoat::mask::wire::row_description(data);
    let Some((&n, rest)) = data.split_first() else { return };
    let n = (n % 12) as usize;
    let plan = ResultPlan {
        columns: (0..n)
            .map(|i| {
                (i % 2 == 0).then(|| ColumnMask {
                    method: if i % 4 == 0 { Method::Partial { keep_last: 4 } } else { Method::Email },
                    mask_id: "f".into(),
                })
            })
            .collect(),
        text_like: (0..n).map(|i| i % 3 != 0).collect(),
        binary: vec![false; n],
        detectors: None,
        fail_closed: n % 2 == 0,
    };
    let mut msg = vec![b'D', 0, 0, 0, 0];
    msg.extend_from_slice(rest);
    let len = (msg.len() - 1) as i32;
    msg[1..5].copy_from_slice(&len.to_be_bytes());
    let mut out = BytesMut::new();
    if let Ok(o) = rewrite_data_row(&msg, &plan, &mut Scratch::default(), &mut out) {
        if o.rewritten {
            let declared = i32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
            assert_eq!(declared + 1, out.len());
            let mut check = BytesMut::new();
            let again = rewrite_data_row(&out, &ResultPlan::default(), &mut Scratch::default(), &mut check);
            assert!(again.is_ok(), "rewritten row must parse");
        }
    }
});
