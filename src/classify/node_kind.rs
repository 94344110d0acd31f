//! Node kinds, typed: the walkers match `NodeKind::SelectStmt`, not the string
//! `"SelectStmt"`, so a typo, or a node pg_query renames or drops, fails to compile
//! instead of silently never matching.
//!
//! The tree (`tree.rs`) is built through serde, which names a node only by its
//! variant's name: the kind is looked up once per node when the tree is built and kept
//! on the node's fields (`Map::kind`). The list below is pg_query's node enum, whole
//! and in its names' byte order: [`NodeKind::of`] matches that enum exhaustively, so
//! the list and pg_query cannot drift apart.

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

        /// Every kind by its name, sorted (for a binary search).
        const BY_NAME: &[(&str, NodeKind)] = &[$((stringify!($kind), NodeKind::$kind),)*];

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
    };
}

node_kinds! {
    AArrayExpr AConst AExpr AIndices AIndirection AStar AccessPriv Aggref Alias
    AlterCollationStmt AlterDatabaseRefreshCollStmt AlterDatabaseSetStmt AlterDatabaseStmt
    AlterDefaultPrivilegesStmt AlterDomainStmt AlterEnumStmt AlterEventTrigStmt
    AlterExtensionContentsStmt AlterExtensionStmt AlterFdwStmt AlterForeignServerStmt
    AlterFunctionStmt AlterObjectDependsStmt AlterObjectSchemaStmt AlterOpFamilyStmt
    AlterOperatorStmt AlterOwnerStmt AlterPolicyStmt AlterPublicationStmt AlterRoleSetStmt
    AlterRoleStmt AlterSeqStmt AlterStatsStmt AlterSubscriptionStmt AlterSystemStmt
    AlterTableCmd AlterTableMoveAllStmt AlterTableSpaceOptionsStmt AlterTableStmt
    AlterTsconfigurationStmt AlterTsdictionaryStmt AlterTypeStmt AlterUserMappingStmt
    AlternativeSubPlan ArrayCoerceExpr ArrayExpr AtalterConstraint BitString BoolExpr
    Boolean BooleanTest CallContext CallStmt CaseExpr CaseTestExpr CaseWhen CheckPointStmt
    ClosePortalStmt ClusterStmt CoalesceExpr CoerceToDomain CoerceToDomainValue CoerceViaIo
    CollateClause CollateExpr ColumnDef ColumnRef CommentStmt CommonTableExpr
    CompositeTypeStmt Constraint ConstraintsSetStmt ConvertRowtypeExpr CopyStmt CreateAmStmt
    CreateCastStmt CreateConversionStmt CreateDomainStmt CreateEnumStmt CreateEventTrigStmt
    CreateExtensionStmt CreateFdwStmt CreateForeignServerStmt CreateForeignTableStmt
    CreateFunctionStmt CreateOpClassItem CreateOpClassStmt CreateOpFamilyStmt
    CreatePlangStmt CreatePolicyStmt CreatePublicationStmt CreateRangeStmt CreateRoleStmt
    CreateSchemaStmt CreateSeqStmt CreateStatsStmt CreateStmt CreateSubscriptionStmt
    CreateTableAsStmt CreateTableSpaceStmt CreateTransformStmt CreateTrigStmt
    CreateUserMappingStmt CreatedbStmt CtecycleClause CtesearchClause CurrentOfExpr
    DeallocateStmt DeclareCursorStmt DefElem DefineStmt DeleteStmt DiscardStmt DistinctExpr
    DoStmt DropOwnedStmt DropRoleStmt DropStmt DropSubscriptionStmt DropTableSpaceStmt
    DropUserMappingStmt DropdbStmt ExecuteStmt ExplainStmt FetchStmt FieldSelect FieldStore
    Float FromExpr FuncCall FuncExpr FunctionParameter GrantRoleStmt GrantStmt GroupingFunc
    GroupingSet ImportForeignSchemaStmt IndexElem IndexStmt InferClause InferenceElem
    InlineCodeBlock InsertStmt IntList Integer IntoClause JoinExpr JsonAggConstructor
    JsonArgument JsonArrayAgg JsonArrayConstructor JsonArrayQueryConstructor JsonBehavior
    JsonConstructorExpr JsonExpr JsonFormat JsonFuncExpr JsonIsPredicate JsonKeyValue
    JsonObjectAgg JsonObjectConstructor JsonOutput JsonParseExpr JsonReturning
    JsonScalarExpr JsonSerializeExpr JsonTable JsonTableColumn JsonTablePath
    JsonTablePathScan JsonTablePathSpec JsonTableSiblingJoin JsonValueExpr List ListenStmt
    LoadStmt LockStmt LockingClause MergeAction MergeStmt MergeSupportFunc MergeWhenClause
    MinMaxExpr MultiAssignRef NamedArgExpr NextValueExpr NotifyStmt NullIfExpr NullTest
    ObjectWithArgs OidList OnConflictClause OnConflictExpr OpExpr Param ParamRef
    PartitionBoundSpec PartitionCmd PartitionElem PartitionRangeDatum PartitionSpec
    PlassignStmt PrepareStmt PublicationObjSpec PublicationTable Query RangeFunction
    RangeSubselect RangeTableFunc RangeTableFuncCol RangeTableSample RangeTblEntry
    RangeTblFunction RangeTblRef RangeVar RawStmt ReassignOwnedStmt RefreshMatViewStmt
    ReindexStmt RelabelType RenameStmt ReplicaIdentityStmt ResTarget ReturnStmt
    ReturningClause ReturningExpr ReturningOption RoleSpec RowCompareExpr RowExpr
    RowMarkClause RtepermissionInfo RuleStmt ScalarArrayOpExpr SecLabelStmt SelectStmt
    SetOperationStmt SetToDefault SortBy SortGroupClause SqlvalueFunction StatsElem String
    SubLink SubPlan SubscriptingRef TableFunc TableLikeClause TableSampleClause TargetEntry
    TransactionStmt TriggerTransition TruncateStmt TypeCast TypeName UnlistenStmt UpdateStmt
    VacuumRelation VacuumStmt Var VariableSetStmt VariableShowStmt ViewStmt WindowClause
    WindowDef WindowFunc WindowFuncRunCondition WithCheckOption WithClause XmlExpr
    XmlSerialize
}

impl NodeKind {
    /// The kind named so by serde (`Other` for a name that is no node).
    pub fn from_name(name: &str) -> NodeKind {
        BY_NAME
            .binary_search_by(|(n, _)| n.cmp(&name))
            .map_or(NodeKind::Other, |i| BY_NAME[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_for_the_search() {
        assert!(BY_NAME.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(NodeKind::from_name("SelectStmt"), NodeKind::SelectStmt);
        assert_eq!(NodeKind::from_name("AArrayExpr"), NodeKind::AArrayExpr);
        assert_eq!(NodeKind::from_name("Sval"), NodeKind::Other);
    }
}
