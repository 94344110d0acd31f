//! The console over the extended query protocol (Parse/Bind/Describe/Execute), which
//! drivers such as JDBC, pgAdmin's and tokio-postgres use for every query: a command
//! is read once at Parse, its result columns are known from its kind (so Describe
//! answers before anything runs), and Execute runs it as the simple protocol does.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::answer::{self, Console};
use super::command::{self, Command};
use crate::protocol::sqlstate;

/// Reads one console command per prepared statement.
pub struct ConsoleParser;

fn syntax(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        sqlstate::SYNTAX_ERROR.to_owned(),
        message,
    )))
}

#[async_trait]
impl QueryParser for ConsoleParser {
    type Statement = Command;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Command>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut commands = command::parse(sql).map_err(|e| syntax(e.0))?;
        if commands.len() > 1 {
            // As Postgres says for a Parse of several statements.
            return Err(syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        Ok(commands.pop())
    }

    fn get_parameter_types(&self, _stmt: &Command) -> PgWireResult<Vec<Type>> {
        // Console commands take their values inline: no $n parameters.
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        stmt: &Command,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.cloned().unwrap_or_default();
        Ok(answer::fields(answer::columns(stmt), &format))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Console {
    type Statement = Command;
    type QueryParser = ConsoleParser;

    fn query_parser(&self) -> Arc<ConsoleParser> {
        Arc::new(ConsoleParser)
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Command>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Command>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.note_running(&portal.statement.statement);
        let result = self
            .run(
                portal.statement.statement.clone(),
                &portal.result_column_format,
            )
            .await;
        self.note_running_done();
        result
    }
}
