//! What DDL a node is: the statement kind a node type gives, and which ALTER
//! sub-commands drop something.

use super::{b, i, nonempty, s, Map};
use crate::classify::facts::Kind;

/// Map a node type to the kind it gives a statement, if any.
pub(super) fn kind_of(ty: &str, body: &Map, parent: &str) -> Option<Kind> {
    Some(match ty {
        "SelectStmt" => {
            // The VALUES list of an INSERT is a SelectStmt too, but not a read.
            let only_values = nonempty(body, "values_lists") && !nonempty(body, "target_list");
            if only_values && parent == "InsertStmt" {
                return None;
            }
            Kind::Select
        }
        "InsertStmt" => Kind::Insert,
        "UpdateStmt" => Kind::Update,
        "DeleteStmt" => Kind::Delete,
        "MergeStmt" => Kind::Merge,
        "CopyStmt" => {
            if b(body, "is_from") {
                Kind::CopyFrom
            } else {
                Kind::CopyTo
            }
        }
        "CreateExtensionStmt" | "AlterExtensionStmt" | "AlterExtensionContentsStmt" => {
            Kind::Extension
        }
        "AlterSystemStmt" => Kind::AlterSystem,
        "ViewStmt" | "IndexStmt" | "RuleStmt" | "CompositeTypeStmt" | "DefineStmt"
        | "CreatedbStmt" => Kind::Create,
        t if t.starts_with("Create") => Kind::Create,
        t if t.starts_with("Alter") => Kind::Alter,
        "DropStmt" => {
            if i(body, "remove_type") == pg_query::protobuf::ObjectType::ObjectExtension as i64 {
                Kind::Extension
            } else {
                Kind::Drop
            }
        }
        t if t.starts_with("Drop") => Kind::Drop,
        "TruncateStmt" => Kind::Truncate,
        "GrantStmt" | "GrantRoleStmt" => {
            if b(body, "is_grant") {
                Kind::Grant
            } else {
                Kind::Revoke
            }
        }
        "CommentStmt" => Kind::Comment,
        // ALTER TABLE/SCHEMA/DOMAIN/FUNCTION ... RENAME: a change like any ALTER (and
        // one the catalog must be read again after).
        "RenameStmt" | "AlterObjectSchemaStmt" | "AlterOwnerStmt" => Kind::Alter,
        // ALTER SYSTEM/ROLE/DATABASE ... SET carry a VariableSetStmt: their settings
        // count, but they are not themselves a SET.
        "VariableSetStmt" if parent.starts_with("Alter") => return None,
        "VariableSetStmt" => match s(body, "name").to_ascii_lowercase().as_str() {
            "role" | "session_authorization" => Kind::SetRole,
            _ => Kind::Set,
        },
        "VariableShowStmt" => Kind::Show,
        "ExplainStmt" => Kind::Explain,
        "PrepareStmt" => Kind::Prepare,
        "ExecuteStmt" => Kind::Execute,
        "DeallocateStmt" => Kind::Deallocate,
        "DoStmt" => Kind::Do,
        "CallStmt" => Kind::Call,
        "ListenStmt" | "UnlistenStmt" => Kind::Listen,
        "NotifyStmt" => Kind::Notify,
        "LockStmt" => Kind::Lock,
        "VacuumStmt" => {
            if b(body, "is_vacuumcmd") {
                Kind::Vacuum
            } else {
                Kind::Analyze
            }
        }
        "ClusterStmt" => Kind::Cluster,
        "ReindexStmt" => Kind::Reindex,
        "RefreshMatViewStmt" => Kind::Refresh,
        "TransactionStmt" => Kind::Transaction,
        "DiscardStmt" => Kind::Discard,
        "CheckPointStmt" => Kind::Checkpoint,
        "LoadStmt" => Kind::Load,
        _ => return None,
    })
}

/// Whether an ALTER node (or a part of one) drops something.
pub(super) fn alter_drops(ty: &str, body: &Map) -> bool {
    use pg_query::protobuf::AlterTableType as A;
    match ty {
        "AlterTableCmd" => {
            const DROPS: [A; 9] = [
                A::AtDropColumn,
                A::AtDropConstraint,
                A::AtDropNotNull,
                A::AtDropExpression,
                A::AtDropIdentity,
                A::AtDropInherit,
                A::AtDropOf,
                A::AtDropCluster,
                A::AtDropOids,
            ];
            let sub = i(body, "subtype");
            DROPS.iter().any(|d| *d as i64 == sub)
        }
        _ => false,
    }
}
