//! The shared statement caches under several workers: lookups of cached statements
//! (every statement pgmoat has seen before) from 1, 2 and 4 threads at once, through
//! `pgmoat::cache::Bounded` and through the `Mutex<HashMap>` it replaced.
//!
//!     cargo bench --bench cache

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pgmoat::cache::Bounded;

/// Statement texts in the cache, as a busy gateway's would be.
const KEYS: usize = 5_000;

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = $1 /* {i} */"))
        .collect()
}

/// `threads` threads each look up `per_thread` keys at once; the wall time of the whole.
fn run<F: Fn(&str) -> bool + Send + Sync + 'static>(
    threads: usize,
    per_thread: u64,
    keys: &Arc<Vec<String>>,
    lookup: Arc<F>,
) -> Duration {
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (keys, lookup, start) = (Arc::clone(keys), Arc::clone(&lookup), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut i = t * 7919;
                for _ in 0..per_thread {
                    i = (i + 31) % keys.len();
                    black_box(lookup(&keys[i]));
                }
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for h in handles {
        let _ = h.join();
    }
    t0.elapsed()
}

fn bench_lookups(c: &mut Criterion) {
    let keys = Arc::new(keys());
    let bounded: Arc<Bounded<Box<str>, Arc<u64>>> = Arc::new(Bounded::new(20_000));
    let locked: Arc<Mutex<HashMap<Box<str>, Arc<u64>>>> = Arc::new(Mutex::new(HashMap::new()));
    for (i, k) in keys.iter().enumerate() {
        bounded.insert(k.as_str().into(), Arc::new(i as u64));
        locked
            .lock()
            .unwrap()
            .insert(k.as_str().into(), Arc::new(i as u64));
    }
    let mut g = c.benchmark_group("cache_lookup");
    for threads in [1usize, 2, 4] {
        let b = Arc::clone(&bounded);
        let lookup = Arc::new(move |k: &str| b.get(k).is_some());
        g.bench_function(format!("bounded_{threads}_threads"), |bch| {
            bch.iter_custom(|n| run(threads, n, &keys, Arc::clone(&lookup)))
        });
        let m = Arc::clone(&locked);
        let lookup = Arc::new(move |k: &str| m.lock().unwrap().get(k).cloned().is_some());
        g.bench_function(format!("mutex_{threads}_threads"), |bch| {
            bch.iter_custom(|n| run(threads, n, &keys, Arc::clone(&lookup)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_lookups);
criterion_main!(benches);
