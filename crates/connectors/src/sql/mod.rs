//! The SQL connectors, `postgres`, `mysql` (MariaDB too) and `sqlite`: steps read and write a
//! database with `uses: <connection>.query|execute|insert|upsert`.
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `query` | `sql`, `params` (a list) | `{rows: [{column: value}], count}` |
//! | `execute` | `sql`, `params` | `{rows_affected}` |
//! | `insert` | `table`, `rows` (an object or a list of objects with the same keys) | `{rows_affected}` |
//! | `upsert` | `table`, `rows`, `key` (conflict columns), `update` (columns to overwrite; default all others, `[]` keeps the existing row) | `{rows_affected}` |
//!
//! Values are always bound parameters (`$1`, `$2` … on PostgreSQL, `?` on MySQL and SQLite), never
//! spliced into SQL text: the lint refuses `${{ }}` inside `sql`, `table`, `key` and `update`, and
//! those names are quoted when Weft writes the statement. `insert` and `upsert` write many rows per
//! statement (up to 1,000, fewer for wide rows) and all of a step's rows in one transaction; an
//! `upsert` whose rows repeat a key keeps the last of them. MySQL's `rows_affected` counts an
//! updated row twice, as MySQL reports it.
//!
//! Column values become JSON as `value.rs` describes. Errors are classified at this boundary: a
//! refused or lost connection, a deadlock, a serialization failure, a lock timeout or a busy SQLite
//! file is retryable; bad SQL, a violated constraint or a value that does not fit is fatal, with
//! the database's code and message in the step's error.
//!
//! To make a write happen once even if its step runs twice after a crash, key it on the run
//! (`params: ["${{ .run.id }}", …]` into a unique column, with `ON CONFLICT DO NOTHING`).

mod config;
mod mysql;
mod postgres;
mod sqlite;
pub mod statement;
mod value;

pub use config::{Dialect, SqlConfig, Target};

use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use sqlx::{AssertSqlSafe, Either, Executor, SqlSafeStr, SqlStr, Statement};
use weft_core::yaml::{Kind, Node};
use weft_core::{ActionSpec, Connection, ConnectorSpec, Diagnostics, json_kind};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector};
use statement::{Rows, Upsert};

const QUERY_INPUTS: &[&str] = &["sql", "params"];
const INSERT_INPUTS: &[&str] = &["table", "rows"];
const UPSERT_INPUTS: &[&str] = &["table", "rows", "key", "update"];

static ACTIONS: [ActionSpec; 4] = [
    ActionSpec {
        name: "query",
        summary: "Runs SQL that returns rows; returns {rows, count}, each row an object of typed columns.",
        inputs: QUERY_INPUTS,
        required: &["sql"],
        check_inputs: check_sql_inputs,
    },
    ActionSpec {
        name: "execute",
        summary: "Runs SQL that changes data; returns {rows_affected}.",
        inputs: QUERY_INPUTS,
        required: &["sql"],
        check_inputs: check_sql_inputs,
    },
    ActionSpec {
        name: "insert",
        summary: "Inserts rows (objects of column values) into a table, in batches in one transaction.",
        inputs: INSERT_INPUTS,
        required: &["table", "rows"],
        check_inputs: check_sql_inputs,
    },
    ActionSpec {
        name: "upsert",
        summary: "Inserts rows, updating those whose key columns exist already.",
        inputs: UPSERT_INPUTS,
        required: &["table", "rows", "key"],
        check_inputs: check_sql_inputs,
    },
];

/// The `postgres` connector's description.
pub static POSTGRES: ConnectorSpec = ConnectorSpec {
    probe: Some("connects and asks the database for its version"),
    type_name: "postgres",
    summary: "A PostgreSQL database: queries, statements, batch inserts and upserts with bound parameters.",
    actions: &ACTIONS,
    check: |node, diags| {
        SqlConfig::decode(Dialect::Postgres, node, diags);
    },
    consume: None,
};

/// The `mysql` connector's description (MySQL and MariaDB).
pub static MYSQL: ConnectorSpec = ConnectorSpec {
    probe: Some("connects and asks the database for its version"),
    type_name: "mysql",
    summary: "A MySQL or MariaDB database: queries, statements, batch inserts and upserts with bound parameters.",
    actions: &ACTIONS,
    check: |node, diags| {
        SqlConfig::decode(Dialect::Mysql, node, diags);
    },
    consume: None,
};

/// The `sqlite` connector's description.
pub static SQLITE: ConnectorSpec = ConnectorSpec {
    probe: Some("opens the database file and asks SQLite for its version"),
    type_name: "sqlite",
    summary: "A SQLite database file: queries, statements, batch inserts and upserts with bound parameters.",
    actions: &ACTIONS,
    check: |node, diags| {
        SqlConfig::decode(Dialect::Sqlite, node, diags);
    },
    consume: None,
};

fn has_expression(node: &Node) -> bool {
    match &node.kind {
        Kind::Str(s) => s.value.contains("${{"),
        Kind::Seq(items) => items.iter().any(has_expression),
        Kind::Map(entries) => entries.iter().any(|(_, v)| has_expression(v)),
        _ => false,
    }
}

/// The lint's check of SQL inputs: SQL text and names are fixed, values go through parameters.
fn check_sql_inputs(with: &Node, diags: &mut Diagnostics) {
    let Kind::Map(entries) = &with.kind else {
        diags.error(
            with.pos,
            "SQL actions need `with` written out as a mapping, so that the SQL text can be checked; put expressions in `params` or `rows`",
        );
        return;
    };
    for (key, value) in entries {
        if !has_expression(value) {
            continue;
        }
        match key.name.as_str() {
            "sql" => diags.error(
                value.pos,
                "`sql` must be fixed text: `${{ }}` would splice values into the SQL; bind them with `params` ($1, $2 … on PostgreSQL, ? on MySQL and SQLite) instead",
            ),
            name @ ("table" | "key" | "update") => diags.error(
                value.pos,
                format!("`{name}` must be written in the file, not computed: table and column names become part of the SQL text"),
            ),
            _ => {}
        }
    }
}

/// A failure inside the SQL connector, before it is classified.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The step's input or a value did not fit: fatal.
    #[error("{0}")]
    Input(String),
    /// The database or the driver failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn sql_str(sql: &str) -> SqlStr {
    AssertSqlSafe(sql.to_string()).into_sql_str()
}

/// What a step asked for, checked.
#[derive(Debug)]
enum Request {
    Query {
        sql: String,
        params: Vec<Value>,
    },
    Execute {
        sql: String,
        params: Vec<Value>,
    },
    Write {
        table: String,
        rows: Rows,
        /// Conflict columns and columns to overwrite, for `upsert`.
        upsert: Option<(Vec<String>, Vec<String>)>,
    },
}

fn names(input: &Value, key: &str) -> Result<Option<Vec<String>>, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "`{key}` must list column names, found {}",
                    json_kind(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!(
            "`{key}` must be a column name or a list of them, found {}",
            json_kind(other)
        )),
    }
}

fn parse(action: &str, input: &Value) -> Result<Request, String> {
    let text = |key: &str| -> Result<String, String> {
        match input.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("`{key}` is empty")),
            Some(other) => Err(format!("`{key}` must be text, found {}", json_kind(other))),
            None => Err(format!("{action} needs `with.{key}`")),
        }
    };
    let params = || -> Result<Vec<Value>, String> {
        match input.get("params") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(other) => Err(format!(
                "`params` must be a list of values, found {}",
                json_kind(other)
            )),
        }
    };
    match action {
        "query" => Ok(Request::Query {
            sql: text("sql")?,
            params: params()?,
        }),
        "execute" => Ok(Request::Execute {
            sql: text("sql")?,
            params: params()?,
        }),
        "insert" | "upsert" => {
            let table = text("table")?;
            let mut rows = statement::rows(input.get("rows").unwrap_or(&Value::Null))?;
            let upsert = if action == "upsert" {
                let key = names(input, "key")?.filter(|k| !k.is_empty()).ok_or(
                    "upsert needs `with.key`: the columns of a primary key or unique index",
                )?;
                if !rows.values.is_empty() {
                    statement::last_per_key(&mut rows, &key)?;
                }
                let update = match names(input, "update")? {
                    Some(update) => update,
                    None => rows
                        .columns
                        .iter()
                        .filter(|c| !key.contains(c))
                        .cloned()
                        .collect(),
                };
                for column in &update {
                    if !rows.values.is_empty() && !rows.columns.contains(column) {
                        return Err(format!(
                            "`update` names `{column}`, which is not among the rows' columns [{}]",
                            rows.columns.join(", ")
                        ));
                    }
                }
                Some((key, update))
            } else {
                None
            };
            Ok(Request::Write {
                table,
                rows,
                upsert,
            })
        }
        other => Err(format!("SQL connections have no action `{other}`")),
    }
}

/// One row as a JSON object, each column read by `column`; a column that cannot be read is a
/// fatal error naming it and its type.
fn row_json<R: sqlx::Row>(
    row: &R,
    column: impl Fn(&R, usize) -> Result<Value, String>,
) -> Result<serde_json::Map<String, Value>, SqlError> {
    use sqlx::{Column, TypeInfo};
    let mut out = serde_json::Map::with_capacity(row.len());
    for (i, c) in row.columns().iter().enumerate() {
        let value = column(row, i).map_err(|m| {
            SqlError::Input(format!(
                "column `{}` ({}): {m}",
                c.name(),
                c.type_info().name()
            ))
        })?;
        out.insert(c.name().to_string(), value);
    }
    Ok(out)
}

/// Runs a request on one kind of pool; `$args` binds parameters on a connection.
macro_rules! run_on {
    ($pool:expr, $dialect:expr, $args:path, $column_json:path, $request:expr) => {{
        match $request {
            Request::Query { sql, params } => {
                let mut conn = $pool.acquire().await?;
                let args = $args(&mut *conn, sql, params).await?;
                let rows = sqlx::query_with(sql_str(sql), args)
                    .fetch_all(&mut *conn)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    out.push(Value::Object(row_json(row, $column_json)?));
                }
                Ok(json!({"rows": out, "count": rows.len()}))
            }
            Request::Execute { sql, params } => {
                let mut conn = $pool.acquire().await?;
                let args = $args(&mut *conn, sql, params).await?;
                let done = sqlx::query_with(sql_str(sql), args)
                    .execute(&mut *conn)
                    .await?;
                Ok(json!({"rows_affected": done.rows_affected()}))
            }
            Request::Write {
                table,
                rows,
                upsert,
            } => {
                if rows.values.is_empty() {
                    return Ok(json!({"rows_affected": 0}));
                }
                let upsert = upsert.as_ref().map(|(key, update)| Upsert { key, update });
                let mut tx = $pool.begin().await?;
                let mut affected = 0;
                for chunk in rows.values.chunks(statement::batch_rows(rows.columns.len())) {
                    let sql = statement::insert(
                        $dialect,
                        table,
                        &rows.columns,
                        chunk.len(),
                        upsert.as_ref(),
                    )
                    .map_err(SqlError::Input)?;
                    let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
                    let args = $args(&mut *tx, &sql, &params).await?;
                    affected += sqlx::query_with(sql_str(&sql), args)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(json!({"rows_affected": affected}))
            }
        }
    }};
}

enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

/// A live SQL connection: a pool, opened on first use.
pub struct SqlConnector {
    config: SqlConfig,
    dir: PathBuf,
    pool: tokio::sync::OnceCell<Pool>,
    secrets: Secrets,
}

impl SqlConnector {
    /// Builds the connector from a connection's settings; `dir` is the project folder, which a
    /// SQLite `path` is relative to. Nothing is opened until the first call.
    pub fn build(
        connection: &Connection,
        dir: &Path,
        secrets: &Secrets,
    ) -> Result<SqlConnector, String> {
        let dialect = match connection.type_name.as_str() {
            "postgres" => Dialect::Postgres,
            "mysql" => Dialect::Mysql,
            "sqlite" => Dialect::Sqlite,
            other => return Err(format!("`{other}` is not a SQL connection type")),
        };
        crate::settings::connection(connection, |node, diags| {
            SqlConfig::decode(dialect, node, diags)
        })
        .map(|config| SqlConnector {
            secrets: secrets.clone(),
            ..SqlConnector::new(config, dir)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: SqlConfig, dir: &Path) -> SqlConnector {
        SqlConnector {
            config,
            dir: dir.to_path_buf(),
            pool: tokio::sync::OnceCell::new(),
            secrets: Secrets::new(),
        }
    }

    fn url(&self) -> Result<String, ActionError> {
        match &self.config.target {
            Target::Url(url) => Ok(url.to_string()),
            Target::UrlFrom(secret) => {
                let text = self.secrets.resolve(secret).map_err(ActionError::fatal)?;
                let url = reqwest::Url::parse(&text).map_err(|e| {
                    ActionError::fatal(format!(
                        "the database URL from {secret:?} is not valid: {e}"
                    ))
                })?;
                config::check_scheme(self.config.dialect, &url).map_err(ActionError::fatal)?;
                Ok(text)
            }
            Target::Path(_) => Err(ActionError::fatal("a sqlite connection has no URL")),
        }
    }

    fn password(&self) -> Result<Option<String>, ActionError> {
        self.config
            .password
            .as_ref()
            .map(|p| self.secrets.resolve(p).map_err(ActionError::fatal))
            .transpose()
    }

    fn open(&self) -> Result<Pool, ActionError> {
        let c = &self.config;
        let bad = |e: sqlx::Error| ActionError::fatal(format!("invalid database URL: {e}"));
        Ok(match c.dialect {
            Dialect::Postgres => {
                let mut options = PgConnectOptions::from_str(&self.url()?)
                    .map_err(bad)?
                    .application_name("weft");
                if let Some(password) = self.password()? {
                    options = options.password(&password);
                }
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(c.max_connections)
                        .acquire_timeout(c.timeout)
                        .connect_lazy_with(options),
                )
            }
            Dialect::Mysql => {
                let mut options = MySqlConnectOptions::from_str(&self.url()?).map_err(bad)?;
                if let Some(password) = self.password()? {
                    options = options.password(&password);
                }
                Pool::Mysql(
                    MySqlPoolOptions::new()
                        .max_connections(c.max_connections)
                        .acquire_timeout(c.timeout)
                        .connect_lazy_with(options),
                )
            }
            Dialect::Sqlite => {
                let Target::Path(path) = &c.target else {
                    return Err(ActionError::fatal("a sqlite connection needs a `path`"));
                };
                let options = SqliteConnectOptions::new()
                    .filename(self.dir.join(path))
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(c.timeout);
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(c.max_connections)
                        .acquire_timeout(c.timeout)
                        .connect_lazy_with(options),
                )
            }
        })
    }

    async fn run(&self, request: &Request) -> Result<Value, SqlError> {
        let pool = match self.pool.get_or_try_init(|| async { self.open() }).await {
            Ok(pool) => pool,
            Err(e) => return Err(SqlError::Input(e.to_string())),
        };
        match pool {
            Pool::Postgres(pool) => {
                run_on!(
                    pool,
                    Dialect::Postgres,
                    postgres::arguments,
                    postgres::column_json,
                    request
                )
            }
            Pool::Mysql(pool) => {
                run_on!(
                    pool,
                    Dialect::Mysql,
                    mysql_arguments,
                    mysql::column_json,
                    request
                )
            }
            Pool::Sqlite(pool) => {
                run_on!(
                    pool,
                    Dialect::Sqlite,
                    sqlite_arguments,
                    sqlite::column_json,
                    request
                )
            }
        }
    }
}

/// Checks the parameter count of prepared SQL against the values given.
fn check_count(
    expected: Option<Either<&[impl Sized], usize>>,
    given: usize,
) -> Result<(), SqlError> {
    let expected = match expected {
        Some(Either::Right(n)) => n,
        Some(Either::Left(types)) => types.len(),
        None => return Ok(()),
    };
    if expected != given {
        return Err(SqlError::Input(format!(
            "the SQL has {expected} parameter{} but `params` has {given} value{}",
            if expected == 1 { "" } else { "s" },
            if given == 1 { "" } else { "s" },
        )));
    }
    Ok(())
}

async fn mysql_arguments(
    conn: &mut MySqlConnection,
    sql: &str,
    params: &[Value],
) -> Result<sqlx::mysql::MySqlArguments, SqlError> {
    let statement = conn.prepare(sql_str(sql)).await?;
    check_count(statement.parameters(), params.len())?;
    mysql::arguments(params)
}

async fn sqlite_arguments(
    conn: &mut SqliteConnection,
    sql: &str,
    params: &[Value],
) -> Result<sqlx::sqlite::SqliteArguments, SqlError> {
    let statement = conn.prepare(sql_str(sql)).await?;
    check_count(statement.parameters(), params.len())?;
    sqlite::arguments(params)
}

/// Whether a database error is worth trying again: connection trouble, deadlocks, serialization
/// failures, lock timeouts, a server shutting down or out of resources, a busy SQLite file.
fn transient(dialect: Dialect, code: Option<&str>, mysql_number: Option<u16>) -> bool {
    match dialect {
        Dialect::Postgres => code.is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(c, "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03")
        }),
        Dialect::Mysql => {
            code.is_some_and(|c| c == "40001" || c.starts_with("08"))
                || mysql_number.is_some_and(|n| matches!(n, 1205 | 1213 | 1040 | 2006 | 2013))
        }
        Dialect::Sqlite => code
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
    }
}

fn classify(dialect: Dialect, error: SqlError) -> ActionError {
    let e = match error {
        SqlError::Input(message) => return ActionError::fatal(message),
        SqlError::Db(e) => e,
    };
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string());
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            let details = json!({
                "code": code,
                "constraint": db.constraint(),
                "table": db.table(),
            });
            let message = format!(
                "{} error{}: {}",
                dialect.type_name(),
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
                db.message()
            );
            if transient(dialect, code.as_deref(), number) {
                ActionError::Retryable {
                    message,
                    retry_after: None,
                    details,
                }
            } else {
                ActionError::Fatal { message, details }
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ActionError::retryable(format!(
            "cannot reach the {} database: {e}",
            dialect.type_name()
        )),
        _ => ActionError::fatal(format!("{}: {e}", dialect.type_name())),
    }
}

/// Counts the bytes a value would take as JSON, to enforce the output limit without a copy.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Notifications on one PostgreSQL channel, for a poll's `listen`: each one wakes the poll.
struct Notifications {
    listener: sqlx::postgres::PgListener,
}

/// Nothing to settle: a notification only wakes a poll, and a missed one is made up by `every`.
struct Unsettled;

#[async_trait]
impl crate::Settle for Unsettled {
    async fn ack(self: Box<Self>) -> Result<(), ActionError> {
        Ok(())
    }
    async fn reject(self: Box<Self>, _reason: &str) -> Result<(), ActionError> {
        Ok(())
    }
}

#[async_trait]
impl crate::Subscription for Notifications {
    async fn next(&mut self) -> Result<crate::Delivery, ActionError> {
        let n = self
            .listener
            .recv()
            .await
            .map_err(|e| ActionError::retryable(format!("postgres: listening: {e}")))?;
        let mut meta = serde_json::Map::new();
        meta.insert("channel".into(), json!(n.channel()));
        Ok(crate::Delivery {
            payload: n.payload().as_bytes().to_vec(),
            meta,
            id: None,
            settle: Box::new(Unsettled),
        })
    }
}

#[async_trait]
impl Connector for SqlConnector {
    /// PostgreSQL only, for a poll's `listen`: `settings` is `{channel}`.
    async fn subscribe(
        &self,
        _consumer: &str,
        settings: &Value,
    ) -> Result<Box<dyn crate::Subscription>, ActionError> {
        let channel = settings["channel"]
            .as_str()
            .ok_or_else(|| ActionError::fatal("listening needs a `channel`"))?;
        let pool = self.pool.get_or_try_init(|| async { self.open() }).await?;
        let Pool::Postgres(pool) = pool else {
            return Err(ActionError::fatal(
                "only postgres connections can listen for notifications",
            ));
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(|e| ActionError::retryable(format!("postgres: cannot listen: {e}")))?;
        listener
            .listen(channel)
            .await
            .map_err(|e| ActionError::retryable(format!("postgres: cannot listen: {e}")))?;
        Ok(Box::new(Notifications { listener }))
    }

    async fn probe(&self) -> Result<String, ActionError> {
        let sql = match self.config.dialect {
            Dialect::Postgres => "SELECT version()",
            Dialect::Mysql => "SELECT CONCAT('MySQL-compatible ', VERSION())",
            Dialect::Sqlite => "SELECT 'SQLite ' || sqlite_version()",
        };
        let output = self
            .call(Call {
                action: "query",
                input: json!({ "sql": sql }),
                idempotency_key: "probe",
                max_output_bytes: 64 * 1024,
            })
            .await?;
        let version = output["rows"][0]
            .as_object()
            .and_then(|row| row.values().next())
            .and_then(Value::as_str)
            .unwrap_or("the database");
        Ok(format!("connected; {version} answered a query"))
    }

    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        let request = parse(call.action, &call.input).map_err(ActionError::fatal)?;
        let dialect = self.config.dialect;
        let output = match tokio::time::timeout(self.config.timeout, self.run(&request)).await {
            Ok(result) => result.map_err(|e| classify(dialect, e))?,
            Err(_) => {
                return Err(ActionError::retryable(format!(
                    "the {} action did not finish within {:?} (the connection's timeout)",
                    call.action, self.config.timeout
                )));
            }
        };
        let mut size = Counter(0);
        let _ = serde_json::to_writer(&mut size, &output);
        if size.0 > call.max_output_bytes {
            return Err(ActionError::fatal(format!(
                "the result is larger than {} bytes (limits.max_output_bytes); nothing was cut short, the step failed; select fewer rows or columns",
                call.max_output_bytes
            )));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests;
