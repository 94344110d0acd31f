//! What DDL a node is: the statement kind a node type gives, and which ALTER
//! sub-commands drop something.
//!
//! SPEC §4: `ALTER TABLE ... DROP COLUMN` is alter and drop. That holds for every
//! sub-command of every ALTER that drops or detaches part of an object, whether or not
//! it says DROP:
//! - ALTER TABLE / VIEW / MATERIALIZED VIEW / FOREIGN TABLE / TYPE / INDEX: DROP
//!   COLUMN / ATTRIBUTE / CONSTRAINT / NOT NULL / EXPRESSION / IDENTITY, ALTER COLUMN
//!   DROP DEFAULT, NO INHERIT, NOT OF, SET WITHOUT CLUSTER / OIDS, DETACH PARTITION
//!   (the partition's rows leave the table);
//! - ALTER DOMAIN DROP CONSTRAINT / DEFAULT / NOT NULL;
//! - ALTER EXTENSION ... DROP object, ALTER OPERATOR FAMILY ... DROP, ALTER TEXT SEARCH
//!   CONFIGURATION ... DROP MAPPING, ALTER GROUP ... DROP USER;
//! - ALTER PUBLICATION ... DROP and SET (SET drops whatever it does not list), ALTER
//!   SUBSCRIPTION ... DROP and SET PUBLICATION (likewise);
//! - `OPTIONS (DROP name)` of ALTER SERVER / FOREIGN DATA WRAPPER / USER MAPPING /
//!   FOREIGN TABLE and its columns.
//!
//! Not drop: `RESET` of a setting or storage parameter (back to the default, nothing
//! removed), `ALTER SEQUENCE ... OWNED BY NONE` and `NO MINVALUE` (no object or data
//! goes), `NO DEPENDS ON EXTENSION`, `ALTER DEFAULT PRIVILEGES ... REVOKE` and
//! `REVOKE` (revoke, their own kind), `ALTER POLICY` (no sub-command drops).

use crate::classify::facts::Kind;
use crate::classify::node::{bool_field as b, int_field as i, node, nonempty, str_field as s};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// Map a node type to the kind it gives a statement, if any.
pub(super) fn kind_of(ty: NodeKind, body: &Map, parent: NodeKind) -> Option<Kind> {
    Some(match ty {
        NodeKind::SelectStmt => {
            // The VALUES list of an INSERT is a SelectStmt too, but not a read.
            let only_values = nonempty(body, "values_lists") && !nonempty(body, "target_list");
            if only_values && parent == NodeKind::InsertStmt {
                return None;
            }
            Kind::Select
        }
        NodeKind::InsertStmt => Kind::Insert,
        NodeKind::UpdateStmt => Kind::Update,
        NodeKind::DeleteStmt => Kind::Delete,
        NodeKind::MergeStmt => Kind::Merge,
        NodeKind::CopyStmt => {
            if b(body, "is_from") {
                Kind::CopyFrom
            } else {
                Kind::CopyTo
            }
        }
        NodeKind::CreateExtensionStmt
        | NodeKind::AlterExtensionStmt
        | NodeKind::AlterExtensionContentsStmt => Kind::Extension,
        NodeKind::AlterSystemStmt => Kind::AlterSystem,
        NodeKind::ViewStmt
        | NodeKind::IndexStmt
        | NodeKind::RuleStmt
        | NodeKind::CompositeTypeStmt
        | NodeKind::DefineStmt
        | NodeKind::CreatedbStmt => Kind::Create,
        t if t.name().starts_with("Create") => Kind::Create,
        t if t.name().starts_with("Alter") => Kind::Alter,
        NodeKind::DropStmt => {
            if i(body, "remove_type") == pg_query::protobuf::ObjectType::ObjectExtension as i64 {
                Kind::Extension
            } else {
                Kind::Drop
            }
        }
        t if t.name().starts_with("Drop") => Kind::Drop,
        NodeKind::TruncateStmt => Kind::Truncate,
        NodeKind::GrantStmt | NodeKind::GrantRoleStmt => {
            if b(body, "is_grant") {
                Kind::Grant
            } else {
                Kind::Revoke
            }
        }
        NodeKind::CommentStmt => Kind::Comment,
        // ALTER TABLE/SCHEMA/DOMAIN/FUNCTION ... RENAME: a change like any ALTER (and
        // one the catalog must be read again after).
        NodeKind::RenameStmt | NodeKind::AlterObjectSchemaStmt | NodeKind::AlterOwnerStmt => {
            Kind::Alter
        }
        // ALTER SYSTEM/ROLE/DATABASE ... SET carry a VariableSetStmt: their settings
        // count, but they are not themselves a SET.
        NodeKind::VariableSetStmt if parent.name().starts_with("Alter") => return None,
        NodeKind::VariableSetStmt => match s(body, "name").to_ascii_lowercase().as_str() {
            "role" | "session_authorization" => Kind::SetRole,
            _ => Kind::Set,
        },
        NodeKind::VariableShowStmt => Kind::Show,
        NodeKind::ExplainStmt => Kind::Explain,
        NodeKind::PrepareStmt => Kind::Prepare,
        NodeKind::ExecuteStmt => Kind::Execute,
        NodeKind::DeallocateStmt => Kind::Deallocate,
        NodeKind::DoStmt => Kind::Do,
        NodeKind::CallStmt => Kind::Call,
        NodeKind::ListenStmt | NodeKind::UnlistenStmt => Kind::Listen,
        NodeKind::NotifyStmt => Kind::Notify,
        NodeKind::LockStmt => Kind::Lock,
        NodeKind::VacuumStmt => {
            if b(body, "is_vacuumcmd") {
                Kind::Vacuum
            } else {
                Kind::Analyze
            }
        }
        NodeKind::ClusterStmt => Kind::Cluster,
        NodeKind::ReindexStmt => Kind::Reindex,
        NodeKind::RefreshMatViewStmt => Kind::Refresh,
        NodeKind::TransactionStmt => Kind::Transaction,
        NodeKind::DiscardStmt => Kind::Discard,
        NodeKind::CheckPointStmt => Kind::Checkpoint,
        NodeKind::LoadStmt => Kind::Load,
        _ => return None,
    })
}

/// PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED (see `Facts::two_phase`).
pub(super) fn two_phase(ty: NodeKind, body: &Map) -> bool {
    use pg_query::protobuf::TransactionStmtKind as K;
    ty == NodeKind::TransactionStmt
        && [
            K::TransStmtPrepare,
            K::TransStmtCommitPrepared,
            K::TransStmtRollbackPrepared,
        ]
        .iter()
        .any(|k| *k as i64 == i(body, "kind"))
}

/// Whether an ALTER node (or a part of one) drops something (see the module's
/// comment). Every such node is recognised by its own type, wherever it sits.
pub(super) fn alter_drops(ty: NodeKind, body: &Map) -> bool {
    use pg_query::protobuf::{
        AlterPublicationAction as P, AlterSubscriptionType as S, AlterTableType as A,
        AlterTsConfigType as T, DefElemAction as D,
    };
    // Most nodes are neither: one cheap test on the hot path.
    if !(ty.name().starts_with("Alter") || ty == NodeKind::DefElem) {
        return false;
    }
    let is = |field: &str, v: i64| i(body, field) == v;
    match ty {
        NodeKind::AlterTableCmd => {
            const DROPS: [A; 11] = [
                A::AtDropColumn,
                A::AtDropConstraint,
                A::AtDropNotNull,
                A::AtDropExpression,
                A::AtDropIdentity,
                A::AtDropInherit,
                A::AtDropOf,
                A::AtDropCluster,
                A::AtDropOids,
                A::AtDetachPartition,
                A::AtDetachPartitionFinalize,
            ];
            let sub = i(body, "subtype");
            DROPS.iter().any(|d| *d as i64 == sub)
                // ALTER COLUMN ... DROP DEFAULT: a default command without one.
                || (sub == A::AtColumnDefault as i64 && !present(body, "def"))
        }
        // 'X' DROP CONSTRAINT, 'N' DROP NOT NULL, 'T' without a default: DROP DEFAULT.
        NodeKind::AlterDomainStmt => match s(body, "subtype") {
            "X" | "N" => true,
            "T" => !present(body, "def"),
            _ => false,
        },
        // ALTER EXTENSION ... DROP: action -1 (ADD is +1).
        NodeKind::AlterExtensionContentsStmt => is("action", -1),
        NodeKind::AlterOpFamilyStmt => b(body, "is_drop"),
        NodeKind::AlterTsconfigurationStmt => is("kind", T::AlterTsconfigDropMapping as i64),
        NodeKind::AlterPublicationStmt => {
            is("action", P::ApDropObjects as i64) || is("action", P::ApSetObjects as i64)
        }
        NodeKind::AlterSubscriptionStmt => {
            is("kind", S::AlterSubscriptionDropPublication as i64)
                || is("kind", S::AlterSubscriptionSetPublication as i64)
        }
        // ALTER GROUP ... DROP USER: action -1 (ADD USER is +1).
        NodeKind::AlterRoleStmt => is("action", -1),
        // OPTIONS (DROP name).
        NodeKind::DefElem => is("defaction", D::DefelemDrop as i64),
        _ => false,
    }
}

/// `ALTER TABLE ... ALTER COLUMN ... TYPE ... USING <expr>`: every row's value is
/// rewritten by an expression of the statement's choosing, as an UPDATE without a WHERE
/// would (without USING, the server only converts each value to the new type).
pub(super) fn rewrites_every_row(ty: NodeKind, body: &Map) -> bool {
    use pg_query::protobuf::AlterTableType as A;
    if ty != NodeKind::AlterTableCmd || i(body, "subtype") != A::AtAlterColumnType as i64 {
        return false;
    }
    match body.get("def").and_then(node) {
        Some((NodeKind::ColumnDef, c)) => present(c, "raw_default"),
        _ => false,
    }
}

/// A field that holds a value (not absent, not null, not an empty list).
fn present(body: &Map, key: &str) -> bool {
    nonempty(body, key) && !matches!(body.get(key), Some(Value::Null))
}

/// The relation a CREATE TABLE, CREATE TABLE AS or SELECT INTO makes, when `body` is
/// its RangeVar: `schema.name`, `pg_temp.name` for a temporary one named bare (for
/// masks, which tell a temporary table code fills from a permanent one).
pub(super) fn created(
    parent: NodeKind,
    field: &str,
    body: &Map,
    schema: Option<&str>,
) -> Option<String> {
    if !matches!(
        (parent, field),
        (NodeKind::CreateStmt, "relation") | (NodeKind::IntoClause, "rel")
    ) {
        return None;
    }
    let temp = s(body, "relpersistence") == "t";
    let schema = schema.unwrap_or(if temp { "pg_temp" } else { "public" });
    Some(format!("{schema}.{}", s(body, "relname")))
}

/// The domain an ALTER DOMAIN gives a new CHECK ('C') or default ('T'), or whose
/// NOT VALID CHECK it validates ('V'): what the expression calls runs over the
/// domain's values (masks judge it; the catalog folds in its existing checks).
pub(super) fn domain_changed(body: &Map) -> Option<String> {
    if !matches!(s(body, "subtype"), "C" | "T" | "V") {
        return None;
    }
    let names = crate::classify::node::name_list(body.get("type_name"));
    names.last().map(|d| d.to_ascii_lowercase())
}
