//! System relations whose rows hold values of any column: the planner's statistics
//! (sampled values) and other sessions' SQL text. Masks read them as unknown, wholly or
//! column by column.

/// Planner statistics hold sampled column values (`most_common_vals`,
/// `histogram_bounds`): reading them is reading the columns.
pub(super) const STATISTICS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    // Other sessions' SQL text (see OPAQUE_FUNCTIONS): read as a whole, unknown.
    "pg_stat_activity",
];

/// The statistics views' columns (as of Postgres 17; 15 and 16 lack the range ones
/// at the end) and whether each carries sampled values of the column a row is about.
/// The others are names (`attname` names the column, it does not hold its values) and
/// numbers about the column as a whole, which are no more its values than `count(*)`.
pub(super) const PG_STATS: &[(&str, bool)] = &[
    ("schemaname", false),
    ("tablename", false),
    ("attname", false),
    ("inherited", false),
    ("null_frac", false),
    ("avg_width", false),
    ("n_distinct", false),
    ("most_common_vals", true),
    ("most_common_freqs", false),
    ("histogram_bounds", true),
    ("correlation", false),
    ("most_common_elems", true),
    ("most_common_elem_freqs", false),
    ("elem_count_histogram", false),
    ("range_length_histogram", true),
    ("range_empty_frac", false),
    ("range_bounds_histogram", true),
];
/// Columns Postgres 17 added to pg_stats.
pub(super) const PG_STATS_17: usize = 3;
pub(super) const PG_STATS_EXT: &[(&str, bool)] = &[
    ("schemaname", false),
    ("tablename", false),
    ("statistics_schemaname", false),
    ("statistics_name", false),
    ("statistics_owner", false),
    ("attnames", false),
    ("exprs", false),
    ("kinds", false),
    ("inherited", false),
    ("n_distinct", false),
    ("dependencies", false),
    ("most_common_vals", true),
    ("most_common_val_nulls", false),
    ("most_common_freqs", false),
    ("most_common_base_freqs", false),
];
pub(super) const PG_STATS_EXT_EXPRS: &[(&str, bool)] = &[
    ("schemaname", false),
    ("tablename", false),
    ("statistics_schemaname", false),
    ("statistics_name", false),
    ("statistics_owner", false),
    ("expr", false),
    ("inherited", false),
    ("null_frac", false),
    ("avg_width", false),
    ("n_distinct", false),
    ("most_common_vals", true),
    ("most_common_freqs", false),
    ("histogram_bounds", true),
    ("correlation", false),
    ("most_common_elems", true),
    ("most_common_elem_freqs", false),
    ("elem_count_histogram", false),
];
