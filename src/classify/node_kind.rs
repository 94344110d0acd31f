//! Node kinds, typed: the walkers match `NodeKind::SelectStmt`, not the string
//! `"SelectStmt"`, so a typo, or a node pg_query renames or drops, fails to compile
//! instead of silently never matching.
//!
//! The tree (`tree.rs`) is built through serde, which gives a node's variant by index
//! and name: the kind is found once per node when the tree is built (by index, checked
//! by name) and kept on the node's fields (`Map::kind`). The list below is pg_query's
//! node enum, whole and in its order: [`NodeKind::of`] matches that enum exhaustively,
//! so the list and pg_query cannot drift apart.

macro_rules! node_kinds {
    ($($kind:ident)*) => {
        /// The kind of a node (`Other`: a value that is not a node's body: an embedded
        /// message, or nothing, as the parent of a statement).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum NodeKind {
            $($kind,)*
            #[default]
            Other,
        }

        /// Every kind in pg_query's order (serde's variant index).
        const IN_ORDER: &[NodeKind] = &[$(NodeKind::$kind,)*];

        impl NodeKind {
            /// pg_query's name of it (serde's variant name); empty for `Other`.
            pub fn name(self) -> &'static str {
                match self {
                    $(NodeKind::$kind => stringify!($kind),)*
                    NodeKind::Other => "",
                }
            }

            /// The kind of one of pg_query's nodes. Exhaustive on purpose: a node
            /// pg_query adds or renames stops the build here.
            #[cfg_attr(not(test), allow(dead_code))]
            pub fn of(node: &pg_query::NodeEnum) -> NodeKind {
                match node {
                    $(pg_query::NodeEnum::$kind(_) => NodeKind::$kind,)*
                }
            }
        }

        /// One empty node of every kind.
        #[cfg(test)]
        fn every_node() -> Vec<pg_query::NodeEnum> {
            vec![$(pg_query::NodeEnum::$kind(Default::default()),)*]
        }
    };
}

node_kinds! {
    Alias RangeVar TableFunc IntoClause Var Param Aggref GroupingFunc WindowFunc
    WindowFuncRunCondition MergeSupportFunc SubscriptingRef FuncExpr NamedArgExpr OpExpr
    DistinctExpr NullIfExpr ScalarArrayOpExpr BoolExpr SubLink SubPlan AlternativeSubPlan
    FieldSelect FieldStore RelabelType CoerceViaIo ArrayCoerceExpr ConvertRowtypeExpr
    CollateExpr CaseExpr CaseWhen CaseTestExpr ArrayExpr RowExpr RowCompareExpr CoalesceExpr
    MinMaxExpr SqlvalueFunction XmlExpr JsonFormat JsonReturning JsonValueExpr
    JsonConstructorExpr JsonIsPredicate JsonBehavior JsonExpr JsonTablePath
    JsonTablePathScan JsonTableSiblingJoin NullTest BooleanTest MergeAction CoerceToDomain
    CoerceToDomainValue SetToDefault CurrentOfExpr NextValueExpr InferenceElem ReturningExpr
    TargetEntry RangeTblRef JoinExpr FromExpr OnConflictExpr Query TypeName ColumnRef
    ParamRef AExpr TypeCast CollateClause RoleSpec FuncCall AStar AIndices AIndirection
    AArrayExpr ResTarget MultiAssignRef SortBy WindowDef RangeSubselect RangeFunction
    RangeTableFunc RangeTableFuncCol RangeTableSample ColumnDef TableLikeClause IndexElem
    DefElem LockingClause XmlSerialize PartitionElem PartitionSpec PartitionBoundSpec
    PartitionRangeDatum PartitionCmd RangeTblEntry RtepermissionInfo RangeTblFunction
    TableSampleClause WithCheckOption SortGroupClause GroupingSet WindowClause RowMarkClause
    WithClause InferClause OnConflictClause CtesearchClause CtecycleClause CommonTableExpr
    MergeWhenClause ReturningOption ReturningClause TriggerTransition JsonOutput
    JsonArgument JsonFuncExpr JsonTablePathSpec JsonTable JsonTableColumn JsonKeyValue
    JsonParseExpr JsonScalarExpr JsonSerializeExpr JsonObjectConstructor
    JsonArrayConstructor JsonArrayQueryConstructor JsonAggConstructor JsonObjectAgg
    JsonArrayAgg RawStmt InsertStmt DeleteStmt UpdateStmt MergeStmt SelectStmt
    SetOperationStmt ReturnStmt PlassignStmt CreateSchemaStmt AlterTableStmt AlterTableCmd
    AtalterConstraint ReplicaIdentityStmt AlterCollationStmt AlterDomainStmt GrantStmt
    ObjectWithArgs AccessPriv GrantRoleStmt AlterDefaultPrivilegesStmt CopyStmt
    VariableSetStmt VariableShowStmt CreateStmt Constraint CreateTableSpaceStmt
    DropTableSpaceStmt AlterTableSpaceOptionsStmt AlterTableMoveAllStmt CreateExtensionStmt
    AlterExtensionStmt AlterExtensionContentsStmt CreateFdwStmt AlterFdwStmt
    CreateForeignServerStmt AlterForeignServerStmt CreateForeignTableStmt
    CreateUserMappingStmt AlterUserMappingStmt DropUserMappingStmt ImportForeignSchemaStmt
    CreatePolicyStmt AlterPolicyStmt CreateAmStmt CreateTrigStmt CreateEventTrigStmt
    AlterEventTrigStmt CreatePlangStmt CreateRoleStmt AlterRoleStmt AlterRoleSetStmt
    DropRoleStmt CreateSeqStmt AlterSeqStmt DefineStmt CreateDomainStmt CreateOpClassStmt
    CreateOpClassItem CreateOpFamilyStmt AlterOpFamilyStmt DropStmt TruncateStmt CommentStmt
    SecLabelStmt DeclareCursorStmt ClosePortalStmt FetchStmt IndexStmt CreateStatsStmt
    StatsElem AlterStatsStmt CreateFunctionStmt FunctionParameter AlterFunctionStmt DoStmt
    InlineCodeBlock CallStmt CallContext RenameStmt AlterObjectDependsStmt
    AlterObjectSchemaStmt AlterOwnerStmt AlterOperatorStmt AlterTypeStmt RuleStmt NotifyStmt
    ListenStmt UnlistenStmt TransactionStmt CompositeTypeStmt CreateEnumStmt CreateRangeStmt
    AlterEnumStmt ViewStmt LoadStmt CreatedbStmt AlterDatabaseStmt
    AlterDatabaseRefreshCollStmt AlterDatabaseSetStmt DropdbStmt AlterSystemStmt ClusterStmt
    VacuumStmt VacuumRelation ExplainStmt CreateTableAsStmt RefreshMatViewStmt
    CheckPointStmt DiscardStmt LockStmt ConstraintsSetStmt ReindexStmt CreateConversionStmt
    CreateCastStmt CreateTransformStmt PrepareStmt ExecuteStmt DeallocateStmt DropOwnedStmt
    ReassignOwnedStmt AlterTsdictionaryStmt AlterTsconfigurationStmt PublicationTable
    PublicationObjSpec CreatePublicationStmt AlterPublicationStmt CreateSubscriptionStmt
    AlterSubscriptionStmt DropSubscriptionStmt Integer Float Boolean String BitString List
    IntList OidList AConst
}

impl NodeKind {
    /// The kind serde names by `index` and `name` (`Other` for no node). The index
    /// finds it; the name confirms it, and is searched for should pg_query's order and
    /// the list's ever differ.
    pub fn from_variant(index: u32, name: &str) -> NodeKind {
        match IN_ORDER.get(index as usize) {
            Some(kind) if kind.name() == name => *kind,
            _ => {
                #[cfg(test)]
                SEARCHED.with(|n| n.set(n.get() + 1));
                IN_ORDER
                    .iter()
                    .copied()
                    .find(|k| k.name() == name)
                    .unwrap_or(NodeKind::Other)
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// How many kinds were searched for by name (the index did not find them).
    static SEARCHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::node::node;
    use crate::classify::tree::to_tree;

    /// Every node pg_query has gets its own kind in the tree, found by its index.
    #[test]
    fn every_kind_is_found_in_the_tree() {
        SEARCHED.with(|n| n.set(0));
        let nodes = every_node();
        assert_eq!(nodes.len(), IN_ORDER.len());
        for (i, n) in nodes.into_iter().enumerate() {
            let kind = NodeKind::of(&n);
            assert_eq!(IN_ORDER[i], kind, "pg_query's order");
            let tree = to_tree(&pg_query::protobuf::Node { node: Some(n) }).unwrap();
            assert_eq!(node(&tree).map(|(k, _)| k), Some(kind));
        }
        assert_eq!(
            SEARCHED.with(|n| n.get()),
            0,
            "serde's index is not the list's"
        );
    }

    #[test]
    fn a_name_decides_over_an_index() {
        assert_eq!(NodeKind::from_variant(1, "RangeVar"), NodeKind::RangeVar);
        assert_eq!(NodeKind::from_variant(0, "RangeVar"), NodeKind::RangeVar);
        assert_eq!(
            NodeKind::from_variant(9999, "SelectStmt"),
            NodeKind::SelectStmt
        );
        assert_eq!(NodeKind::from_variant(0, "Sval"), NodeKind::Other);
    }
}
