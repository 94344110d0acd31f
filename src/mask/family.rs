//! Partitions and inheritance children: `SELECT ssn FROM parent` returns the
//! children's rows, and a child holds rows written through its parent. A column is
//! masked by any mask that names it in the relation itself, an ancestor or a
//! descendant (pg_inherits), so a mask naming the parent covers a DBA's partitions
//! and one naming a partition covers reads through the parent.

use std::collections::BTreeSet;

use super::Masking;
use crate::classify::lineage::Taint;

impl Masking {
    /// The taint masks give column `column` of relation `i`, through its family.
    pub(super) fn family_taint(&self, i: usize, column: &str) -> Taint {
        let r = &self.catalog.relations[i];
        let mut t = self.glob_taint(r, column);
        if self.catalog.inherits.is_empty() {
            return t;
        }
        for oid in self.family(r.oid) {
            if let Some(&j) = self.by_oid.get(&oid) {
                let other = &self.catalog.relations[j];
                // A child may have more columns than its parent, never fewer.
                if other.columns.iter().any(|(_, n, _)| n == column) {
                    t = t.join(self.glob_taint(other, column));
                }
            }
        }
        t
    }

    /// Every ancestor and descendant of `oid` (not siblings: a sibling's rows are not
    /// read through this relation).
    fn family(&self, oid: u32) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for up in [true, false] {
            let mut todo = vec![oid];
            while let Some(x) = todo.pop() {
                for &(parent, child) in &self.catalog.inherits {
                    let next = match up {
                        true if child == x => parent,
                        false if parent == x => child,
                        _ => continue,
                    };
                    if next != oid && out.insert(next) {
                        todo.push(next);
                    }
                }
            }
        }
        out
    }
}
