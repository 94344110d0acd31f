//! Partitions and inheritance children: `SELECT ssn FROM parent` returns the
//! children's rows, and a child holds rows written through its parent. A column is
//! masked by any mask that names it in the relation itself, an ancestor or a
//! descendant (pg_inherits), so a mask naming the parent covers a DBA's partitions
//! and one naming a partition covers reads through the parent.

use std::collections::{BTreeSet, HashMap};

use super::Masking;
use crate::classify::lineage::Taint;

impl Masking {
    /// The taint masks give each column of relation `i` (in attnum order), through
    /// its family.
    pub(super) fn family_taints(&self, i: usize) -> Vec<Taint> {
        let r = &self.catalog.relations[i];
        if self.has_whole_descendant(r.oid) {
            return vec![Taint::UNKNOWN; r.columns.len()];
        }
        let mut out: Vec<Taint> = r
            .columns
            .iter()
            .map(|(_, n, _)| self.glob_taint(r, n))
            .collect();
        let family = self.family(r.oid);
        for j in family.iter().filter_map(|oid| self.by_oid.get(oid)) {
            let other = &self.catalog.relations[*j];
            // A child may have more columns than its parent, never fewer.
            for ((_, n, _), t) in r.columns.iter().zip(out.iter_mut()) {
                if other.columns.iter().any(|(_, m, _)| m == n) {
                    *t = t.join(self.glob_taint(other, n));
                }
            }
        }
        out
    }

    /// Whether reading relation `oid` reads rows of a descendant that is masked
    /// whole wherever it is read (a foreign table, a session's temporary table, a view
    /// being changed), or one the catalog did not load: a temporary child of a
    /// permanent table, filled from masked data by code, must not come back clean
    /// through its parent, nor a postgres_fdw partition through its partitioned table.
    fn has_whole_descendant(&self, oid: u32) -> bool {
        reach(&self.catalog.children, oid)
            .iter()
            .any(|d| match self.by_oid.get(d) {
                None => true,
                Some(&j) => {
                    let d = &self.catalog.relations[j];
                    d.kind == b'f'
                        || d.definition_unread
                        || d.being_changed
                        || (d.schema.starts_with("pg_temp_") && d.view_definition.is_none())
                }
            })
    }

    /// Every ancestor and descendant of `oid` (not siblings: a sibling's rows are not
    /// read through this relation).
    fn family(&self, oid: u32) -> BTreeSet<u32> {
        let mut out = reach(&self.catalog.parents, oid);
        out.extend(reach(&self.catalog.children, oid));
        out
    }
}

/// Every relation reached from `oid` by `links`, `oid` itself left out.
fn reach(links: &HashMap<u32, Vec<u32>>, oid: u32) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let mut todo = vec![oid];
    while let Some(x) = todo.pop() {
        for &next in links_of(links, x) {
            if next != oid && out.insert(next) {
                todo.push(next);
            }
        }
    }
    out
}

fn links_of(links: &HashMap<u32, Vec<u32>>, oid: u32) -> &[u32] {
    links.get(&oid).map(Vec::as_slice).unwrap_or(&[])
}
