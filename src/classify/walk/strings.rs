//! Functions that run SQL given to them as text, or read a relation, schema, cursor
//! or page named by a value: what they read is not a relation the rules (or masks)
//! see, so a call of one cannot be judged statically.

/// Built-in and extension functions, by bare name (lower case).
const SQL_IN_STRING_FUNCTIONS: &[&str] = &[
    "ts_stat",
    "ts_rewrite",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    // They read a table, a schema or the whole database named as a string, or
    // through a cursor: what is read is not a relation the rules see.
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    // dblink runs SQL given as text on a connection of its own, and builds
    // statements from a row of a relation named as a string.
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_fetch",
    "dblink_send_query",
    "dblink_get_result",
    "dblink_build_sql_insert",
    "dblink_build_sql_update",
    "dblink_build_sql_delete",
    // tablefunc: connectby reads a relation named as a string (crosstab, below,
    // runs SQL given as text).
    "connectby",
    // pageinspect reads a relation's pages (rows included) by its name, and its
    // decoders turn those pages into values.
    "get_raw_page",
    "page_header",
    "heap_page_items",
    "heap_page_item_attrs",
    "tuple_data_split",
    "bt_metap",
    "bt_page_stats",
    "bt_multi_page_stats",
    "bt_page_items",
    "brin_page_type",
    "brin_metapage_info",
    "brin_revmap_data",
    "brin_page_items",
    "gin_metapage_info",
    "gin_page_opaque_info",
    "gin_leafpage_items",
    "hash_page_type",
    "hash_page_stats",
    "hash_page_items",
    "hash_bitmap_info",
    "hash_metapage_info",
    "fsm_page_contents",
    // pg_walinspect: the WAL's block data and full-page images hold rows.
    "pg_get_wal_block_info",
    "pg_get_wal_fpi_info",
    // xml2: builds and runs a query from a relation and columns named as strings.
    "xpath_table",
    // Logical decoding: a slot's changes are the rows written to every table, by
    // anyone (with wal_level = logical, as CDC setups have it; review s36 Y7).
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_create_logical_replication_slot",
    "pg_copy_logical_replication_slot",
];

/// Name prefixes: tablefunc's `crosstab`, `crosstab2` .. `crosstab4`, and the
/// `crosstab_*` wrappers its documentation tells users to declare over it.
const PREFIXES: &[&str] = &["crosstab"];

/// Whether a function (its bare name, lower case) runs SQL held in a string or
/// reads a relation named by a value.
pub fn runs_sql_in_string(bare: &str) -> bool {
    SQL_IN_STRING_FUNCTIONS.contains(&bare) || PREFIXES.iter().any(|p| bare.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::runs_sql_in_string;

    #[test]
    fn extension_readers_are_listed() {
        for f in [
            "crosstab",
            "crosstab3",
            "crosstab_float_8",
            "connectby",
            "dblink_build_sql_delete",
            "get_raw_page",
            "heap_page_items",
            "gin_leafpage_items",
            "pg_get_wal_block_info",
            "xpath_table",
            "table_to_xml",
            "pg_logical_slot_peek_changes",
            "pg_logical_slot_get_binary_changes",
        ] {
            assert!(runs_sql_in_string(f), "{f}");
        }
        for f in ["upper", "pg_read_file", "dblink_connect", "xpath"] {
            assert!(!runs_sql_in_string(f), "{f}");
        }
    }
}
