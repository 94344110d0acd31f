//! Masking's costs: rewriting DataRows (2 of 10 columns masked) and scanning text
//! with the content detectors. Throughput is in bytes of row (or text) per second.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pgmoat::mask::detect::{Detector, Detectors, Kind};
use pgmoat::mask::method::Method;
use pgmoat::mask::rewrite::{rewrite_data_row, ColumnMask, ResultPlan, Scratch};

/// A DataRow of ten ~20-byte text columns, like a users row.
fn row() -> Vec<u8> {
    let values: [&[u8]; 10] = [
        b"48213",
        b"Ada Lovelace",
        b"ada.lovelace@example.com",
        b"123-45-6789",
        b"4111 1111 1111 1111",
        b"2026-11-30 10:00:00+00",
        b"London, United Kingdom",
        b"analytical engine",
        b"true",
        b"note: nothing special here",
    ];
    let mut b = BytesMut::new();
    b.put_u8(b'D');
    b.put_i32(0);
    b.put_u16(values.len() as u16);
    for v in values {
        b.put_i32(v.len() as i32);
        b.extend_from_slice(v);
    }
    let n = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&n.to_be_bytes());
    b.to_vec()
}

fn plan(masked: &[usize], detectors: Option<Detectors>) -> ResultPlan {
    ResultPlan {
        columns: (0..10)
            .map(|i| {
                masked.contains(&i).then(|| ColumnMask {
                    method: Method::Partial { keep_last: 4 },
                    mask_id: "pii".into(),
                })
            })
            .collect(),
        text_like: vec![true; 10],
        binary: vec![false; 10],
        detectors: detectors.map(std::sync::Arc::new),
        fail_closed: true,
    }
}

fn detectors(n: usize) -> Detectors {
    let kinds = [
        Kind::CreditCard,
        Kind::Email,
        Kind::UsSsn,
        Kind::Iban,
        Kind::Jwt,
        Kind::AwsAccessKey,
    ];
    let mut list: Vec<Detector> = kinds
        .iter()
        .map(|&kind| Detector {
            id: format!("{kind:?}"),
            kind,
            method: Method::Redact,
            regex: None,
        })
        .collect();
    for i in 0..n.saturating_sub(kinds.len()) {
        list.push(Detector {
            id: format!("re{i}"),
            kind: Kind::Regex,
            method: Method::Redact,
            regex: Some(regex::bytes::Regex::new(&format!("EMP{i}-[0-9]{{6}}")).unwrap()),
        });
    }
    Detectors::new(list)
}

fn bench_rewrite(c: &mut Criterion) {
    let msg = row();
    let mut g = c.benchmark_group("datarow");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    let masked = plan(&[3, 4], None);
    let mut scratch = Scratch::default();
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("2_of_10_masked", |b| {
        b.iter(|| {
            out.clear();
            black_box(rewrite_data_row(black_box(&msg), &masked, &mut scratch, &mut out).unwrap());
        })
    });
    let none = plan(&[], None);
    g.bench_function("none_masked_checked", |b| {
        b.iter(|| {
            out.clear();
            black_box(rewrite_data_row(black_box(&msg), &none, &mut scratch, &mut out).unwrap());
        })
    });
    g.finish();
}

fn bench_detectors(c: &mut Criterion) {
    // Ordinary text with a few numbers and an address, 64 KiB.
    let chunk = "The quick brown fox jumps over the lazy dog; order 42 shipped on 2026-11-30 \
                 to Baker Street 221b. Contact: support at example dot com. ";
    let text: String = chunk.repeat(65536 / chunk.len() + 1);
    let text = text.as_bytes();
    let mut g = c.benchmark_group("detectors");
    g.throughput(Throughput::Bytes(text.len() as u64));
    let d = detectors(10);
    let mut out = Vec::with_capacity(text.len());
    g.bench_function("10_patterns_clean_text", |b| {
        b.iter(|| black_box(d.scan(black_box(text), &mut out)))
    });
    let d6 = detectors(6);
    g.bench_function("6_builtin_clean_text", |b| {
        b.iter(|| black_box(d6.scan(black_box(text), &mut out)))
    });
    g.finish();
}

criterion_group!(benches, bench_rewrite, bench_detectors);
criterion_main!(benches);
