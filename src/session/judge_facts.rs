//! What the judge reads of a statement's facts for an identity with masks: large
//! objects written or read, and writes to relations with masked columns (whose errors
//! can print values). Kept apart from `judge` so that file stays one responsibility.

use crate::mask::Masking;

/// The bare, lowercase name of a function as the facts record it (`pg_catalog.f`).
fn bare_function(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Functions that write into a large object (`lo_import`, from a server file, is the
/// baseline's to refuse).
const LARGE_OBJECT_WRITERS: &[&str] = &["lo_from_bytea", "lo_put", "lowrite"];

/// The large-object writer a statement calls, if any.
pub(super) fn writes_large_object(f: &crate::classify::Facts) -> Option<&'static str> {
    f.functions.iter().find_map(|n| {
        let bare = bare_function(n);
        LARGE_OBJECT_WRITERS
            .iter()
            .find(|w| bare.eq_ignore_ascii_case(w))
            .copied()
    })
}

/// It reads the catalog table that holds large objects' pages (superusers only;
/// `lo_get` and `loread` are opaque functions to the masks).
pub(super) fn reads_large_objects(f: &crate::classify::Facts) -> bool {
    f.tables_read
        .iter()
        .any(|t| bare_function(t).eq_ignore_ascii_case("pg_largeobject"))
}

/// Whether a statement writes or changes (INSERT, UPDATE, MERGE, COPY FROM, ALTER
/// TABLE, CREATE INDEX, ...) a relation with masked columns, or one the catalog does
/// not know: its errors print values it never read (a duplicate key's DETAIL, a
/// failing CHECK's row, an index expression's argument).
pub(super) fn writes_masked_relation(
    m: &Masking,
    f: &crate::classify::Facts,
    path_changed: bool,
) -> bool {
    let copy_from = f.kinds.contains(&crate::classify::Kind::CopyFrom);
    if f.tables_written.is_empty() && !copy_from {
        return false;
    }
    let mut targets = f.tables_written.clone();
    if copy_from {
        targets.extend(f.tables_read.iter().cloned());
    }
    let only_targets = crate::classify::Facts {
        tables_written: targets,
        unqualified_tables: f.unqualified_tables.clone(),
        ..Default::default()
    };
    m.may_touch(&only_targets, path_changed)
}
