//! The rule engine's costs: classifying a statement libpg_query has not seen (a cache
//! miss), and deciding one it has (a hit: cache lookup, rules snapshot, decision).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

// The allocator pgmoat ships with (src/main.rs): a miss allocates, so measure with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use pgmoat::classify::{classify_now, Classifier};
use pgmoat::policy::reload::RulesHandle;
use pgmoat::policy::{RuleSet, Subject};

const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const UPDATE: &str = "UPDATE pgbench_accounts SET abalance = abalance + -3126 WHERE aid = 80515;";
const INSERT: &str =
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 80515, -3126, CURRENT_TIMESTAMP);";

fn baseline() -> RuleSet {
    RuleSet::from_sources(&[(
        "baseline".into(),
        include_str!("../rules/baseline.yaml").into(),
    )])
    .unwrap()
}

fn bench_miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify_miss");
    for (name, sql) in [
        ("pgbench_select", SELECT),
        ("pgbench_update", UPDATE),
        ("pgbench_insert", INSERT),
    ] {
        g.bench_function(name, |b| b.iter(|| classify_now(black_box(sql)).unwrap()));
    }
    g.finish();
    // Where a miss goes: libpg_query's parse alone, and the tree's conversion (as
    // serde_json values, as before, and as the walkers' own tree).
    let mut g = c.benchmark_group("miss_parts");
    g.bench_function("parse_only/pgbench_update", |b| {
        b.iter(|| pg_query::parse(black_box(UPDATE), 0).unwrap())
    });
    let parsed = pg_query::parse(UPDATE, 0).unwrap();
    g.bench_function("to_json/pgbench_update", |b| {
        b.iter(|| serde_json::to_value(&black_box(&parsed).protobuf.stmts[0].stmt).unwrap())
    });
    g.bench_function("to_tree/pgbench_update", |b| {
        b.iter(|| {
            pgmoat::classify::tree::to_tree(&black_box(&parsed).protobuf.stmts[0].stmt).unwrap()
        })
    });
    g.finish();
}

fn bench_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let classifier = Classifier::start(1, 1 << 20);
    rt.block_on(async {
        classifier.classify(SELECT).await.unwrap();
    });
    let rules = RulesHandle::fixed(baseline());
    let groups = vec!["agents".to_string()];
    c.bench_function("decide_cache_hit_baseline", |b| {
        b.iter(|| {
            let classified = classifier.cached(black_box(SELECT)).unwrap();
            let set = rules.current();
            let who = Subject {
                user: "agent-1",
                groups: &groups,
                target: "bench",
                search_path_changed: false,
            };
            set.decide(&classified.statements, &who).action
        })
    });
    // The simple protocol inlines literals: a new text of a known shape is a scan, not a parse.
    let mut n = 0u32;
    c.bench_function("decide_shape_hit_baseline", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n};");
            let classified = classifier.cached(black_box(&sql)).unwrap();
            let set = rules.current();
            let who = Subject {
                user: "agent-1",
                groups: &groups,
                target: "bench",
                search_path_changed: false,
            };
            set.decide(&classified.statements, &who).action
        })
    });
}

criterion_group!(benches, bench_miss, bench_hit);
criterion_main!(benches);
