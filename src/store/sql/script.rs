//! Write statements sent together. On SQLite every query is a hop to the connection's own thread
//! and back (sqlx runs each SQLite connection on a thread and answers through a channel), and on
//! a busy 2-core machine each hop waits for a core twice; a `Script` sends all its statements as
//! one query, whose values sqlx-sqlite binds across the statements in order. PostgreSQL's
//! extended protocol takes one statement with parameters per query, so there each statement is
//! its own query.

use sqlx::any::AnyArguments;
use sqlx::encode::Encode;
use sqlx::{Any, Arguments, AssertSqlSafe, Type};

use super::Backend;
use crate::store::StoreError;

pub(super) struct Script {
    backend: Backend,
    queries: Vec<(String, AnyArguments)>,
    /// The first value that could not be bound; `run` reports it instead of running.
    unbound: Option<String>,
}

impl Script {
    pub(super) fn new(backend: Backend) -> Script {
        Script { backend, queries: Vec::new(), unbound: None }
    }

    /// Appends a statement; its values follow with [`Script::bind`], in order.
    pub(super) fn statement(&mut self, sql: &str) -> &mut Script {
        match (self.backend, self.queries.last_mut()) {
            (Backend::Sqlite, Some((text, _))) => {
                text.push_str(";\n");
                text.push_str(sql);
            }
            _ => self.queries.push((sql.to_string(), AnyArguments::default())),
        }
        self
    }

    /// Binds the next value of the last statement.
    pub(super) fn bind<'q, T>(&mut self, value: T) -> &mut Script
    where
        T: Encode<'q, Any> + Type<Any> + 'q,
    {
        let Some((_, arguments)) = self.queries.last_mut() else {
            self.unbound.get_or_insert_with(|| "a value came before any statement".to_string());
            return self;
        };
        if let Err(error) = arguments.add(value) {
            self.unbound.get_or_insert(error.to_string());
        }
        self
    }

    /// Runs what has been appended so far and leaves the script empty.
    pub(super) async fn run(&mut self, connection: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        if let Some(error) = self.unbound.take() {
            self.queries.clear();
            return Err(StoreError::Database(format!("a value could not be bound: {error}")));
        }
        for (sql, arguments) in self.queries.drain(..) {
            sqlx::query_with(AssertSqlSafe(sql), arguments).execute(&mut *connection).await?;
        }
        Ok(())
    }
}
