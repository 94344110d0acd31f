//! A statement's identity for return-mode approvals (SPEC section 7): the parse tree
//! with its literals, so a retry that is reformatted (whitespace, comments, keyword
//! case, unquoted identifier case) matches the approved statement, while one that
//! changes a value, a table or an operator does not. The grant fingerprint
//! ([`super::shape_key`]) folds literals away, which is right for a standing grant
//! but would let an approved `DELETE ... WHERE id = 1` cover `... WHERE id = 2`.

/// The statement as libpg_query deparses its own parse tree: one canonical text per
/// tree. None when the text does not parse (such a statement is never held: the
/// judge refuses it first) or the tree cannot be deparsed. Deep trees need a deep
/// stack: call it on a parse thread ([`super::Classifier::on_parse_thread`]).
pub fn tree_key(sql: &str) -> Option<String> {
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    pg_query::deparse(&parsed.protobuf, pg_query::DeparseOptions::default()).ok()
}

#[cfg(test)]
mod tests {
    use super::tree_key;

    #[test]
    fn reformatting_keeps_the_key() {
        let a = tree_key("DELETE FROM orders WHERE id = 7").unwrap();
        for same in [
            "delete   from Orders\n where id=7",
            "/* retry */ DELETE FROM orders -- again\n WHERE id = 7;",
        ] {
            assert_eq!(tree_key(same).unwrap(), a, "{same}");
        }
    }

    #[test]
    fn literals_tables_and_operators_change_it() {
        let a = tree_key("DELETE FROM orders WHERE id = 7").unwrap();
        for other in [
            "DELETE FROM orders WHERE id = 8",
            "DELETE FROM orders WHERE id = '7'",
            "DELETE FROM orders WHERE id > 7",
            "DELETE FROM \"Orders\" WHERE id = 7",
            "DELETE FROM orders WHERE id = 7 OR true",
        ] {
            assert_ne!(tree_key(other).unwrap(), a, "{other}");
        }
        assert!(tree_key("DELETE FROM WHERE").is_none());
    }
}
