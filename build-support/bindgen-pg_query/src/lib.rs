//! The part of bindgen's API that pg_query's build script calls
//! (`Builder::default().header(h).generate()?.write_to_file(out)`), writing declarations
//! of libpg_query's C API that are maintained here by hand.
//!
//! Why: bindgen loads libclang to read the header, and a fresh Debian machine with only
//! Rust has no libclang, so `cargo run` failed before pgmoat's code was even compiled.
//! The declarations below follow `pg_query.h`, `postgres_deparse.h` and
//! `pg_query_scan_tokens.h` of libpg_query 18 (pg_query 18.1). `generate` checks the
//! header it is given still declares every function and field listed here, with the same
//! version number, so a pg_query upgrade that changes the API fails the build with a
//! clear message instead of miscompiling.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The version of libpg_query these declarations were written for.
const PG_VERSION_NUM: &str = "180006";

/// Text every header must contain (after whitespace is folded), one per declaration.
const EXPECTED: &[(&str, &str)] = &[
    ("pg_query.h", "#define PG_VERSION_NUM 180006"),
    ("pg_query.h", "typedef struct { char* message; char* funcname; char* filename; int lineno; int cursorpos; char* context; } PgQueryError;"),
    ("pg_query.h", "typedef struct { int length; bool *items; PgQueryError* error; } PgQueryIsUtilityResult;"),
    ("pg_query.h", "typedef struct { size_t len; char* data; } PgQueryProtobuf;"),
    ("pg_query.h", "typedef struct { PgQueryProtobuf pbuf; char* stderr_buffer; PgQueryError* error; } PgQueryScanResult;"),
    ("pg_query.h", "typedef struct { int start; int end; PgQueryToken token; PgQueryKeywordKind keyword_kind; } PgQueryScanToken;"),
    ("pg_query.h", "typedef struct { PgQueryScanToken* tokens; int n_tokens; PgQueryError* error; } PgQueryScanTokensResult;"),
    ("pg_query.h", "typedef struct { char* parse_tree; char* stderr_buffer; PgQueryError* error; } PgQueryParseResult;"),
    ("pg_query.h", "typedef struct { PgQueryProtobuf parse_tree; char* stderr_buffer; PgQueryError* error; } PgQueryProtobufParseResult;"),
    ("pg_query.h", "typedef struct { int stmt_location; int stmt_len; } PgQuerySplitStmt;"),
    ("pg_query.h", "typedef struct { PgQuerySplitStmt **stmts; int n_stmts; char* stderr_buffer; PgQueryError* error; } PgQuerySplitResult;"),
    ("pg_query.h", "typedef struct { char* query; PgQueryError* error; } PgQueryDeparseResult;"),
    ("pg_query.h", "typedef struct { PostgresDeparseComment **comments; size_t comment_count; PgQueryError* error; } PgQueryDeparseCommentsResult;"),
    ("pg_query.h", "typedef struct { char* plpgsql_funcs; PgQueryError* error; } PgQueryPlpgsqlParseResult;"),
    ("pg_query.h", "typedef struct { uint64_t fingerprint; char* fingerprint_str; char* stderr_buffer; PgQueryError* error; } PgQueryFingerprintResult;"),
    ("pg_query.h", "typedef struct { char* normalized_query; PgQueryError* error; } PgQueryNormalizeResult;"),
    ("pg_query.h", "typedef struct { PgQueryProtobuf summary; char* stderr_buffer; PgQueryError* error; } PgQuerySummaryParseResult;"),
    ("pg_query.h", "PgQueryNormalizeResult pg_query_normalize(const char* input);"),
    ("pg_query.h", "PgQueryNormalizeResult pg_query_normalize_utility(const char* input);"),
    ("pg_query.h", "PgQueryScanResult pg_query_scan(const char* input);"),
    ("pg_query.h", "PgQueryScanTokensResult pg_query_scan_tokens(const char* input);"),
    ("pg_query.h", "const char* pg_query_token_name(PgQueryToken token);"),
    ("pg_query.h", "const char* pg_query_keyword_kind_name(PgQueryKeywordKind keyword_kind);"),
    ("pg_query.h", "PgQueryParseResult pg_query_parse(const char* input);"),
    ("pg_query.h", "PgQueryParseResult pg_query_parse_opts(const char* input, int parser_options);"),
    ("pg_query.h", "PgQueryProtobufParseResult pg_query_parse_protobuf(const char* input);"),
    ("pg_query.h", "PgQueryProtobufParseResult pg_query_parse_protobuf_opts(const char* input, int parser_options);"),
    ("pg_query.h", "PgQueryPlpgsqlParseResult pg_query_parse_plpgsql(const char* input);"),
    ("pg_query.h", "PgQueryFingerprintResult pg_query_fingerprint(const char* input);"),
    ("pg_query.h", "PgQueryFingerprintResult pg_query_fingerprint_opts(const char* input, int parser_options, int fingerprint_options);"),
    ("pg_query.h", "PgQuerySplitResult pg_query_split_with_scanner(const char *input);"),
    ("pg_query.h", "PgQuerySplitResult pg_query_split_with_parser(const char *input);"),
    ("pg_query.h", "PgQueryDeparseResult pg_query_deparse_protobuf(PgQueryProtobuf parse_tree);"),
    ("pg_query.h", "PgQueryDeparseResult pg_query_deparse_protobuf_opts(PgQueryProtobuf parse_tree, struct PostgresDeparseOpts opts);"),
    ("pg_query.h", "PgQueryDeparseCommentsResult pg_query_deparse_comments_for_query(const char *query);"),
    ("pg_query.h", "PgQueryIsUtilityResult pg_query_is_utility_stmt(const char *query);"),
    ("pg_query.h", "PgQuerySummaryParseResult pg_query_summary(const char* input, int parser_options, int truncate_limit);"),
    ("pg_query.h", "void pg_query_free_normalize_result(PgQueryNormalizeResult result);"),
    ("pg_query.h", "void pg_query_free_scan_result(PgQueryScanResult result);"),
    ("pg_query.h", "void pg_query_free_scan_tokens_result(PgQueryScanTokensResult result);"),
    ("pg_query.h", "void pg_query_free_parse_result(PgQueryParseResult result);"),
    ("pg_query.h", "void pg_query_free_split_result(PgQuerySplitResult result);"),
    ("pg_query.h", "void pg_query_free_deparse_result(PgQueryDeparseResult result);"),
    ("pg_query.h", "void pg_query_free_deparse_comments_result(PgQueryDeparseCommentsResult result);"),
    ("pg_query.h", "void pg_query_free_protobuf_parse_result(PgQueryProtobufParseResult result);"),
    ("pg_query.h", "void pg_query_free_plpgsql_parse_result(PgQueryPlpgsqlParseResult result);"),
    ("pg_query.h", "void pg_query_free_fingerprint_result(PgQueryFingerprintResult result);"),
    ("pg_query.h", "void pg_query_free_is_utility_result(PgQueryIsUtilityResult result);"),
    ("pg_query.h", "void pg_query_free_summary_parse_result(PgQuerySummaryParseResult result);"),
    ("pg_query.h", "void pg_query_exit(void);"),
    ("pg_query.h", "void pg_query_init(void);"),
    ("postgres_deparse.h", "typedef struct PostgresDeparseComment { int match_location; int newlines_before_comment; int newlines_after_comment; char *str; } PostgresDeparseComment;"),
    ("postgres_deparse.h", "typedef struct PostgresDeparseOpts { PostgresDeparseComment **comments; size_t comment_count; bool pretty_print; int indent_size; int max_line_length; bool trailing_newline; bool commas_start_of_line; } PostgresDeparseOpts;"),
    ("pg_query_scan_tokens.h", "} PgQueryToken;"),
    ("pg_query_scan_tokens.h", "} PgQueryKeywordKind;"),
];

/// The Rust declarations written for pg_query (what bindgen would have produced for the
/// items pg_query uses: C enums as `c_uint` aliases, structs `#[repr(C)]`).
const DECLARATIONS: &str = r#"
use ::std::os::raw::{c_char, c_int, c_uint};

pub const PG_VERSION_NUM: u32 = @VERSION@;

pub type PgQueryToken = c_uint;
pub type PgQueryKeywordKind = c_uint;

#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryError {
    pub message: *mut c_char,
    pub funcname: *mut c_char,
    pub filename: *mut c_char,
    pub lineno: c_int,
    pub cursorpos: c_int,
    pub context: *mut c_char,
}
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryIsUtilityResult { pub length: c_int, pub items: *mut bool, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryProtobuf { pub len: usize, pub data: *mut c_char }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryScanResult { pub pbuf: PgQueryProtobuf, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryScanToken { pub start: c_int, pub end: c_int, pub token: PgQueryToken, pub keyword_kind: PgQueryKeywordKind }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryScanTokensResult { pub tokens: *mut PgQueryScanToken, pub n_tokens: c_int, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryParseResult { pub parse_tree: *mut c_char, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryProtobufParseResult { pub parse_tree: PgQueryProtobuf, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQuerySplitStmt { pub stmt_location: c_int, pub stmt_len: c_int }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQuerySplitResult { pub stmts: *mut *mut PgQuerySplitStmt, pub n_stmts: c_int, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryDeparseResult { pub query: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PostgresDeparseComment { pub match_location: c_int, pub newlines_before_comment: c_int, pub newlines_after_comment: c_int, pub str_: *mut c_char }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PostgresDeparseOpts {
    pub comments: *mut *mut PostgresDeparseComment,
    pub comment_count: usize,
    pub pretty_print: bool,
    pub indent_size: c_int,
    pub max_line_length: c_int,
    pub trailing_newline: bool,
    pub commas_start_of_line: bool,
}
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryDeparseCommentsResult { pub comments: *mut *mut PostgresDeparseComment, pub comment_count: usize, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryPlpgsqlParseResult { pub plpgsql_funcs: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryFingerprintResult { pub fingerprint: u64, pub fingerprint_str: *mut c_char, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQueryNormalizeResult { pub normalized_query: *mut c_char, pub error: *mut PgQueryError }
#[repr(C)] #[derive(Debug, Copy, Clone)]
pub struct PgQuerySummaryParseResult { pub summary: PgQueryProtobuf, pub stderr_buffer: *mut c_char, pub error: *mut PgQueryError }

extern "C" {
    pub fn pg_query_normalize(input: *const c_char) -> PgQueryNormalizeResult;
    pub fn pg_query_normalize_utility(input: *const c_char) -> PgQueryNormalizeResult;
    pub fn pg_query_scan(input: *const c_char) -> PgQueryScanResult;
    pub fn pg_query_scan_tokens(input: *const c_char) -> PgQueryScanTokensResult;
    pub fn pg_query_token_name(token: PgQueryToken) -> *const c_char;
    pub fn pg_query_keyword_kind_name(keyword_kind: PgQueryKeywordKind) -> *const c_char;
    pub fn pg_query_parse(input: *const c_char) -> PgQueryParseResult;
    pub fn pg_query_parse_opts(input: *const c_char, parser_options: c_int) -> PgQueryParseResult;
    pub fn pg_query_parse_protobuf(input: *const c_char) -> PgQueryProtobufParseResult;
    pub fn pg_query_parse_protobuf_opts(input: *const c_char, parser_options: c_int) -> PgQueryProtobufParseResult;
    pub fn pg_query_parse_plpgsql(input: *const c_char) -> PgQueryPlpgsqlParseResult;
    pub fn pg_query_fingerprint(input: *const c_char) -> PgQueryFingerprintResult;
    pub fn pg_query_fingerprint_opts(input: *const c_char, parser_options: c_int, fingerprint_options: c_int) -> PgQueryFingerprintResult;
    pub fn pg_query_split_with_scanner(input: *const c_char) -> PgQuerySplitResult;
    pub fn pg_query_split_with_parser(input: *const c_char) -> PgQuerySplitResult;
    pub fn pg_query_deparse_protobuf(parse_tree: PgQueryProtobuf) -> PgQueryDeparseResult;
    pub fn pg_query_deparse_protobuf_opts(parse_tree: PgQueryProtobuf, opts: PostgresDeparseOpts) -> PgQueryDeparseResult;
    pub fn pg_query_deparse_comments_for_query(query: *const c_char) -> PgQueryDeparseCommentsResult;
    pub fn pg_query_is_utility_stmt(query: *const c_char) -> PgQueryIsUtilityResult;
    pub fn pg_query_summary(input: *const c_char, parser_options: c_int, truncate_limit: c_int) -> PgQuerySummaryParseResult;
    pub fn pg_query_free_normalize_result(result: PgQueryNormalizeResult);
    pub fn pg_query_free_scan_result(result: PgQueryScanResult);
    pub fn pg_query_free_scan_tokens_result(result: PgQueryScanTokensResult);
    pub fn pg_query_free_parse_result(result: PgQueryParseResult);
    pub fn pg_query_free_split_result(result: PgQuerySplitResult);
    pub fn pg_query_free_deparse_result(result: PgQueryDeparseResult);
    pub fn pg_query_free_deparse_comments_result(result: PgQueryDeparseCommentsResult);
    pub fn pg_query_free_protobuf_parse_result(result: PgQueryProtobufParseResult);
    pub fn pg_query_free_plpgsql_parse_result(result: PgQueryPlpgsqlParseResult);
    pub fn pg_query_free_fingerprint_result(result: PgQueryFingerprintResult);
    pub fn pg_query_free_is_utility_result(result: PgQueryIsUtilityResult);
    pub fn pg_query_free_summary_parse_result(result: PgQuerySummaryParseResult);
    pub fn pg_query_exit();
    pub fn pg_query_init();
}
"#;

/// Why the declarations could not be written.
#[derive(Debug)]
pub struct BindgenError(String);

impl fmt::Display for BindgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindgenError {}

/// bindgen's builder, reduced to what pg_query's build script uses.
#[derive(Debug, Default)]
pub struct Builder {
    header: Option<PathBuf>,
}

impl Builder {
    pub fn header<T: Into<String>>(mut self, header: T) -> Builder {
        self.header = Some(PathBuf::from(header.into()));
        self
    }

    /// Checks the header still matches the declarations, then hands them out.
    pub fn generate(self) -> Result<Bindings, BindgenError> {
        let header = self.header.ok_or_else(|| BindgenError("no header given".into()))?;
        let dir = header.parent().unwrap_or(Path::new("."));
        for (file, expected) in EXPECTED {
            let path = if *file == "pg_query.h" { header.clone() } else { dir.join(file) };
            let text = fs::read_to_string(&path)
                .map_err(|e| BindgenError(format!("reading {}: {e}", path.display())))?;
            if !fold(&strip_comments(&text)).contains(&fold(expected)) {
                return Err(BindgenError(format!(
                    "pgmoat's pg_query declarations (build-support/bindgen-pg_query) no longer \
                     match {}: `{expected}` is missing; update them for this pg_query version",
                    path.display()
                )));
            }
        }
        Ok(Bindings { text: DECLARATIONS.replace("@VERSION@", PG_VERSION_NUM) })
    }
}

/// The declarations, ready to be written where pg_query's `include!` expects them.
#[derive(Debug)]
pub struct Bindings {
    text: String,
}

impl Bindings {
    pub fn write_to_file<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        fs::write(path, &self.text)
    }
}

/// Removes `//` and `/* */` comments, so the header's explanations do not get in the way.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("//") {
            rest = tail.find('\n').map_or("", |n| &tail[n..]);
        } else if tail.starts_with("/*") {
            rest = tail[2..].find("*/").map_or("", |n| &tail[n + 4..]);
            out.push(' ');
        } else {
            out.push('/');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Folds every run of white space to one space and drops spaces next to punctuation, so
/// declarations compare by their tokens alone.
fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            let prev = out.chars().last().unwrap_or(' ');
            if is_word(prev) && is_word(c) {
                out.push(' ');
            }
        }
        space = false;
        out.push(c);
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '#'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_layout_and_comments() {
        let header = "typedef struct {\n\tchar* message; // why\n\tint lineno; /* x */\n} E;";
        assert_eq!(fold(&strip_comments(header)), fold("typedef struct { char *message; int lineno; } E;"));
    }
}
