//! The embedded default: SQLite (the library compiled in), one file in WAL
//! mode so the writer and the readers do not block each other.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params_from_iter, types::Value as Lite};

use ccproxy_plugin_kit::logs::LogRow;

use crate::sql::{Col, Db, Dialect, SqlValue, single_row_insert};

/// A connection to the database file.
pub(crate) struct Sqlite {
    connection: Connection,
}

impl Sqlite {
    /// Opens `path` (created when missing; a symlink there is refused).
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|error| error.to_string())?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|error| format!("cannot set up {}: {error}", path.display()))?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Self { connection })
    }
}

fn lite(value: &SqlValue) -> Lite {
    match value {
        SqlValue::Int(Some(n)) => Lite::Integer(*n),
        SqlValue::Real(Some(x)) => Lite::Real(*x),
        SqlValue::Text(Some(text)) => Lite::Text(text.clone()),
        SqlValue::Int(None) | SqlValue::Real(None) | SqlValue::Text(None) => Lite::Null,
    }
}

impl Db for Sqlite {
    fn batch(&mut self, sql: &str) -> Result<(), String> {
        self.connection
            .execute_batch(sql)
            .map_err(|error| error.to_string())
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, String> {
        let mut statement = self
            .connection
            .prepare_cached(sql)
            .map_err(|error| error.to_string())?;
        statement
            .execute(params_from_iter(params.iter().map(lite)))
            .map(|changed| changed as u64)
            .map_err(|error| error.to_string())
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        columns: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, String> {
        let mut statement = self
            .connection
            .prepare_cached(sql)
            .map_err(|error| error.to_string())?;
        let mut rows = statement
            .query(params_from_iter(params.iter().map(lite)))
            .map_err(|error| error.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|error| error.to_string())? {
            let mut values = Vec::with_capacity(columns.len());
            for (index, column) in columns.iter().enumerate() {
                let value: Lite = row.get(index).map_err(|error| error.to_string())?;
                values.push(match (column, value) {
                    (Col::Int, Lite::Integer(n)) => SqlValue::Int(Some(n)),
                    (Col::Int, Lite::Real(x)) => SqlValue::Int(Some(x as i64)),
                    (Col::Int, _) => SqlValue::Int(None),
                    (Col::Real, Lite::Real(x)) => SqlValue::Real(Some(x)),
                    (Col::Real, Lite::Integer(n)) => SqlValue::Real(Some(n as f64)),
                    (Col::Real, _) => SqlValue::Real(None),
                    (Col::Text, Lite::Text(text)) => SqlValue::Text(Some(text)),
                    (Col::Text, _) => SqlValue::Text(None),
                });
            }
            out.push(values);
        }
        Ok(out)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    /// One prepared statement run per row, its values bound by reference:
    /// SQLite's fastest way in, with nothing copied.
    fn insert_rows(&mut self, rows: &[LogRow]) -> Result<(), String> {
        let mut statement = self
            .connection
            .prepare_cached(single_row_insert(Dialect::Sqlite))
            .map_err(|error| error.to_string())?;
        for row in rows {
            statement
                .execute(rusqlite::params![
                    row.request_id,
                    row.timestamp_ms,
                    row.method,
                    row.endpoint,
                    row.path,
                    row.query,
                    row.client_ip,
                    row.user_agent,
                    row.service_type,
                    row.provider,
                    row.model,
                    i64::from(row.streaming),
                    row.status_code,
                    row.duration_ms,
                    row.tokens_input,
                    row.tokens_output,
                    row.cache_read_tokens,
                    row.cache_write_tokens,
                    row.cost_usd,
                    row.session_id,
                ])
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }
}
