//! Bounded caches shared by every session: parse results by statement text or shape,
//! lineage by text, compiled masks by identity.
//!
//! Why not `Mutex<HashMap>`: every statement of every worker looked up under the one
//! lock, and a full map was emptied at once, so the next few thousand statements all
//! went back to the parser together (a latency cliff). Here lookups take one shard's
//! read lock (dashmap), and a full cache drops a tenth of its entries, a different
//! tenth each time, so what is hot is mostly kept and refilled a little at a time.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use dashmap::DashMap;

/// The maps' hasher: std's SipHash with this process's random keys. These caches are
/// shared by every session and keyed by what clients send (SQL texts, HTTP paths), so
/// their hash must not be one a client could aim collisions at from timing alone
/// (foldhash, cheaper, is kept to per-session tables, where a client could only slow
/// itself; review s35).
type Hasher = RandomState;

/// How many parts eviction cuts the keys into: one part goes per eviction.
const PARTS: u64 = 10;

pub struct Bounded<K, V> {
    map: DashMap<K, V, Hasher>,
    max: usize,
    /// Which part the next eviction drops.
    turn: AtomicUsize,
    /// Spreads keys over the parts independently of the map's own hashing.
    parts: RandomState,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    pub fn new(max: usize) -> Self {
        Bounded {
            map: DashMap::with_hasher(Hasher::default()),
            max: max.max(1),
            turn: AtomicUsize::new(0),
            parts: RandomState::new(),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|v| v.value().clone())
    }

    /// Insert; when the cache is full, a tenth of it goes first.
    pub fn insert(&self, key: K, value: V) {
        if self.map.len() >= self.max {
            self.evict();
        }
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn evict(&self) {
        let turn = (self.turn.fetch_add(1, Relaxed) as u64) % PARTS;
        self.map
            .retain(|k, _| self.parts.hash_one(k) % PARTS != turn);
        // A skewed part may have been small: never leave the cache over its bound.
        if self.map.len() >= self.max {
            self.map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_cache_drops_a_part_not_everything() {
        let c: Bounded<Box<str>, u32> = Bounded::new(1000);
        for i in 0..1000u32 {
            c.insert(format!("k{i}").into(), i);
        }
        assert_eq!(c.len(), 1000);
        c.insert("one more".into(), 0);
        // About nine tenths stay (the parts are a hash's, so not exactly).
        assert!(c.len() > 800 && c.len() < 990, "{}", c.len());
        assert_eq!(c.get("one more"), Some(0));
        // Entries left are the ones inserted, with their values.
        let kept = (0..1000u32)
            .filter(|i| c.get(format!("k{i}").as_str()) == Some(*i))
            .count();
        assert_eq!(kept + 1, c.len());
        // And it never grows past its bound.
        for i in 0..10_000u32 {
            c.insert(format!("n{i}").into(), i);
            assert!(c.len() <= 1000);
        }
    }

    #[test]
    fn workers_share_it() {
        let c: Arc<Bounded<Box<str>, u64>> = Arc::new(Bounded::new(10_000));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        let k: Box<str> = format!("{}", i % 500).into();
                        match c.get(&k) {
                            Some(v) => assert_eq!(v, i % 500),
                            None => c.insert(k, i % 500),
                        }
                        let _ = t;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.len(), 500);
    }
}
