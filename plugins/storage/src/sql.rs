//! The store's SQL, one text for SQLite and PostgreSQL: every value travels
//! as a bound parameter ([`Sql::param`]), never inside the text, and the
//! only differences between the two are the placeholder (`?N` or `$N`) and
//! the engines' own set-up, kept in `sqlite.rs` and `postgres.rs`.
//!
//! Three tables: `access_logs`, one row per finished request (the original's
//! `AccessLog` columns), indexed by time; and two rollups, `access_log_hours`
//! and `access_log_minutes`, one row per period and (model, provider,
//! service type, status, streaming) with counts, sums and a duration
//! histogram, kept up to date by every insert (an additive upsert, so several
//! proxies may write one PostgreSQL store). `/logs/analytics` reads the hour
//! rollup for the whole hours of its window, the minute rollup for the whole
//! minutes at its edges and the rows themselves only for the partial minutes
//! at the very edges ([`plan`]), so it answers in time that grows with the
//! hours of its window, not the requests in it.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    sync::LazyLock,
};

use ccproxy_plugin_abi::{Value, json};
use ccproxy_plugin_kit::logs::{
    AnalyticsRequest, Cursor, LogRow, Order, QueryRequest, RowFilter, histogram, rfc3339,
};

/// A value bound to a placeholder, or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlValue {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

impl SqlValue {
    pub(crate) fn int(&self) -> i64 {
        match self {
            SqlValue::Int(Some(n)) => *n,
            SqlValue::Real(Some(x)) => *x as i64,
            _ => 0,
        }
    }

    pub(crate) fn real(&self) -> f64 {
        match self {
            SqlValue::Real(Some(x)) => *x,
            SqlValue::Int(Some(n)) => *n as f64,
            _ => 0.0,
        }
    }

    pub(crate) fn opt_real(&self) -> Option<f64> {
        match self {
            SqlValue::Real(value) => *value,
            SqlValue::Int(value) => value.map(|n| n as f64),
            SqlValue::Text(_) => None,
        }
    }

    pub(crate) fn text(&self) -> Option<String> {
        match self {
            SqlValue::Text(value) => value.clone(),
            _ => None,
        }
    }
}

/// What a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    Int,
    Real,
    Text,
}

/// Which engine a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A database connection, as the store uses it. Errors are one line.
pub(crate) trait Db: Send {
    /// Runs statements without parameters (schema, transactions).
    fn batch(&mut self, sql: &str) -> Result<(), String>;
    /// Runs one statement; answers the rows it changed.
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, String>;
    /// Runs one query; each row read as `columns`.
    fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        columns: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, String>;
    /// The engine.
    fn dialect(&self) -> Dialect;
    /// Inserts `rows` into `access_logs` (inside the caller's transaction).
    /// Default: multi-row `INSERT`s, one round trip per hundred rows.
    fn insert_rows(&mut self, rows: &[LogRow]) -> Result<(), String> {
        insert_rows_in_chunks(self, rows)
    }
}

/// A statement being built: text with numbered placeholders and their values.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: Vec<SqlValue>,
    dialect: Dialect,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect, text: &str) -> Self {
        Self {
            text: text.to_owned(),
            params: Vec::new(),
            dialect,
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn param(&mut self, value: SqlValue) -> &mut Self {
        self.params.push(value);
        push_placeholder(&mut self.text, self.dialect, self.params.len());
        self
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.param(SqlValue::Int(Some(value)))
    }
}

/// Appends placeholder number `n` (`?n` or `$n`), written in place: no
/// string of its own per parameter.
fn push_placeholder(text: &mut String, dialect: Dialect, n: usize) {
    let sigil = match dialect {
        Dialect::Sqlite => '?',
        Dialect::Postgres => '$',
    };
    // Writing to a String cannot fail.
    let _ = write!(text, "{sigil}{n}");
}

/// The columns of `access_logs`, in [`row_values`] order.
const ROW_COLUMNS: [&str; 20] = [
    "request_id",
    "timestamp_ms",
    "method",
    "endpoint",
    "path",
    "query",
    "client_ip",
    "user_agent",
    "service_type",
    "provider",
    "model",
    "streaming",
    "status_code",
    "duration_ms",
    "tokens_input",
    "tokens_output",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "session_id",
];

const ROW_TYPES: [Col; 20] = [
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Real,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Real,
    Col::Text,
];

/// The rollup's key columns; text ones hold `''` for unknown (NULLs would
/// never conflict in a unique key).
const KEY_COLUMNS: [&str; 6] = [
    "period_ms",
    "model",
    "provider",
    "service_type",
    "status_code",
    "streaming",
];

/// The rollup's additive columns besides the histogram.
const SUM_COLUMNS: [&str; 7] = [
    "requests",
    "tokens_input",
    "tokens_output",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "duration_ms_sum",
];

fn histogram_columns() -> impl Iterator<Item = String> {
    (0..histogram::BUCKETS).map(|bucket| format!("h{bucket}"))
}

/// The schema, for both engines (SQLite reads `BIGINT` as INTEGER and
/// `DOUBLE PRECISION` as REAL).
pub(crate) fn schema() -> String {
    let histogram: String = histogram_columns()
        .map(|column| format!(", {column} BIGINT NOT NULL DEFAULT 0"))
        .collect();
    let mut schema = "CREATE TABLE IF NOT EXISTS access_logs (
            request_id TEXT NOT NULL, timestamp_ms BIGINT NOT NULL, method TEXT NOT NULL,
            endpoint TEXT NOT NULL, path TEXT NOT NULL, query TEXT NOT NULL, client_ip TEXT,
            user_agent TEXT, service_type TEXT, provider TEXT, model TEXT,
            streaming BIGINT NOT NULL, status_code BIGINT NOT NULL,
            duration_ms DOUBLE PRECISION NOT NULL, tokens_input BIGINT NOT NULL,
            tokens_output BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION, session_id TEXT);
        CREATE INDEX IF NOT EXISTS access_logs_time ON access_logs (timestamp_ms, request_id);"
        .to_owned();
    for (table, _) in ROLLUPS {
        schema.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
            period_ms BIGINT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
            service_type TEXT NOT NULL, status_code BIGINT NOT NULL, streaming BIGINT NOT NULL,
            requests BIGINT NOT NULL, tokens_input BIGINT NOT NULL, tokens_output BIGINT NOT NULL,
            cache_read_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL,
            cost_usd DOUBLE PRECISION NOT NULL, duration_ms_sum DOUBLE PRECISION NOT NULL
            {histogram},
            PRIMARY KEY (period_ms, model, provider, service_type, status_code, streaming));"
        ));
    }
    schema
}

fn row_values(row: &LogRow) -> [SqlValue; 20] {
    let text = |value: &str| SqlValue::Text(Some(value.to_owned()));
    [
        text(&row.request_id),
        SqlValue::Int(Some(row.timestamp_ms)),
        text(&row.method),
        text(&row.endpoint),
        text(&row.path),
        text(&row.query),
        SqlValue::Text(row.client_ip.clone()),
        SqlValue::Text(row.user_agent.clone()),
        SqlValue::Text(row.service_type.clone()),
        SqlValue::Text(row.provider.clone()),
        SqlValue::Text(row.model.clone()),
        SqlValue::Int(Some(i64::from(row.streaming))),
        SqlValue::Int(Some(row.status_code)),
        SqlValue::Real(Some(row.duration_ms)),
        SqlValue::Int(Some(row.tokens_input)),
        SqlValue::Int(Some(row.tokens_output)),
        SqlValue::Int(Some(row.cache_read_tokens)),
        SqlValue::Int(Some(row.cache_write_tokens)),
        SqlValue::Real(row.cost_usd),
        SqlValue::Text(row.session_id.clone()),
    ]
}

fn row_from_values(values: &[SqlValue]) -> LogRow {
    LogRow {
        request_id: values[0].text().unwrap_or_default(),
        timestamp_ms: values[1].int(),
        method: values[2].text().unwrap_or_default(),
        endpoint: values[3].text().unwrap_or_default(),
        path: values[4].text().unwrap_or_default(),
        query: values[5].text().unwrap_or_default(),
        client_ip: values[6].text(),
        user_agent: values[7].text(),
        service_type: values[8].text(),
        provider: values[9].text(),
        model: values[10].text(),
        streaming: values[11].int() != 0,
        status_code: values[12].int(),
        duration_ms: values[13].real(),
        tokens_input: values[14].int(),
        tokens_output: values[15].int(),
        cache_read_tokens: values[16].int(),
        cache_write_tokens: values[17].int(),
        cost_usd: values[18].opt_real(),
        session_id: values[19].text(),
    }
}

/// Rows per `INSERT` (20 parameters each).
const ROWS_PER_INSERT: usize = 100;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// The rollups, finest first: table and period.
const ROLLUPS: [(&str, i64); 2] = [
    ("access_log_minutes", MINUTE_MS),
    ("access_log_hours", HOUR_MS),
];

fn floor_to(time: i64, period: i64) -> i64 {
    time.div_euclid(period) * period
}

fn ceil_to(time: i64, period: i64) -> i64 {
    floor_to(time, period)
        + if time.rem_euclid(period) == 0 {
            0
        } else {
            period
        }
}

/// Where to read `[from, to)` from, for a timeline of `bucket_ms`: the
/// coarsest rollup for its whole periods (only rollups whose period divides
/// the bucket, so no period straddles two buckets), finer ones for the
/// edges, the rows (`None`) for what is left.
pub(crate) fn plan(from: i64, to: i64, bucket_ms: i64) -> Vec<(Option<&'static str>, i64, i64)> {
    fn split(
        from: i64,
        to: i64,
        levels: &[(&'static str, i64)],
        out: &mut Vec<(Option<&'static str>, i64, i64)>,
    ) {
        if from >= to {
            return;
        }
        let Some((&(table, period), finer)) = levels.split_last() else {
            out.push((None, from, to));
            return;
        };
        let (first, last) = (ceil_to(from, period), floor_to(to, period));
        if first >= last {
            return split(from, to, finer, out);
        }
        split(from, first, finer, out);
        out.push((Some(table), first, last));
        split(last, to, finer, out);
    }
    let levels: Vec<(&'static str, i64)> = ROLLUPS
        .iter()
        .copied()
        .filter(|(_, period)| bucket_ms % period == 0)
        .collect();
    let mut out = Vec::new();
    split(from, to, &levels, &mut out);
    out
}

/// The additive part of a rollup row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Totals {
    pub(crate) requests: i64,
    pub(crate) tokens_input: i64,
    pub(crate) tokens_output: i64,
    pub(crate) cache_read_tokens: i64,
    pub(crate) cache_write_tokens: i64,
    pub(crate) cost_usd: f64,
    pub(crate) duration_ms_sum: f64,
    pub(crate) histogram: Vec<i64>,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            requests: 0,
            tokens_input: 0,
            tokens_output: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_usd: 0.0,
            duration_ms_sum: 0.0,
            histogram: vec![0; histogram::BUCKETS],
        }
    }
}

impl Totals {
    fn add_row(&mut self, row: &LogRow) {
        self.requests += 1;
        self.tokens_input += row.tokens_input;
        self.tokens_output += row.tokens_output;
        self.cache_read_tokens += row.cache_read_tokens;
        self.cache_write_tokens += row.cache_write_tokens;
        self.cost_usd += row.cost_usd.unwrap_or(0.0);
        self.duration_ms_sum += row.duration_ms;
        self.histogram[histogram::bucket(row.duration_ms)] += 1;
    }

    fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.tokens_input += other.tokens_input;
        self.tokens_output += other.tokens_output;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.cost_usd += other.cost_usd;
        self.duration_ms_sum += other.duration_ms_sum;
        for (mine, theirs) in self.histogram.iter_mut().zip(&other.histogram) {
            *mine += theirs;
        }
    }

    /// Read from the 7 sums and the histogram, starting at `values[0]`.
    fn from_values(values: &[SqlValue]) -> Self {
        Self {
            requests: values[0].int(),
            tokens_input: values[1].int(),
            tokens_output: values[2].int(),
            cache_read_tokens: values[3].int(),
            cache_write_tokens: values[4].int(),
            cost_usd: values[5].real(),
            duration_ms_sum: values[6].real(),
            histogram: values[7..7 + histogram::BUCKETS]
                .iter()
                .map(SqlValue::int)
                .collect(),
        }
    }

    fn avg_duration_ms(&self) -> f64 {
        if self.requests > 0 {
            self.duration_ms_sum / self.requests as f64
        } else {
            0.0
        }
    }
}

/// Writes `rows` and adds them to the rollup, in one transaction.
pub(crate) fn insert(db: &mut dyn Db, rows: &[LogRow]) -> Result<(), String> {
    if rows.is_empty() {
        return Ok(());
    }
    db.batch("BEGIN")?;
    let written = insert_in_transaction(db, rows);
    match written {
        Ok(()) => db.batch("COMMIT"),
        Err(error) => {
            let _ = db.batch("ROLLBACK");
            Err(error)
        }
    }
}

fn insert_in_transaction(db: &mut dyn Db, rows: &[LogRow]) -> Result<(), String> {
    db.insert_rows(rows)?;
    let dialect = db.dialect();
    for table in 0..ROLLUPS.len() {
        upsert_rollup(db, dialect, table, rows)?;
    }
    Ok(())
}

/// `INSERT INTO access_logs` of one row, for engines that prepare it once:
/// built once per engine (the statement cache finds it by its text, so each
/// batch used to build the same 500 bytes again).
pub(crate) fn single_row_insert(dialect: Dialect) -> &'static str {
    static TEXTS: LazyLock<[String; 2]> = LazyLock::new(|| {
        [Dialect::Sqlite, Dialect::Postgres].map(|dialect| {
            let mut text = format!(
                "INSERT INTO access_logs ({}) VALUES (",
                ROW_COLUMNS.join(", ")
            );
            for n in 1..=ROW_COLUMNS.len() {
                if n > 1 {
                    text.push_str(", ");
                }
                push_placeholder(&mut text, dialect, n);
            }
            text.push(')');
            text
        })
    });
    &TEXTS[dialect as usize]
}

fn insert_rows_in_chunks<D: Db + ?Sized>(db: &mut D, rows: &[LogRow]) -> Result<(), String> {
    static PREFIX: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO access_logs ({}) VALUES ",
            ROW_COLUMNS.join(", ")
        )
    });
    let dialect = db.dialect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = Sql::new(dialect, &PREFIX);
        for (index, row) in chunk.iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" });
            for (column, value) in row_values(row).into_iter().enumerate() {
                if column > 0 {
                    sql.push(", ");
                }
                sql.param(value);
            }
            sql.push(")");
        }
        db.execute(&sql.text, &sql.params)?;
    }
    Ok(())
}

/// The additive upsert of one key into rollup `table` (an index of
/// [`ROLLUPS`]): the same text for every key and batch, so it is built once
/// per engine and table (61 columns: building it per batch cost more than
/// the batch's own inserts) and SQLite prepares it once.
fn rollup_upsert(dialect: Dialect, table: usize) -> &'static str {
    static TEXTS: LazyLock<[[String; ROLLUPS.len()]; 2]> = LazyLock::new(|| {
        [Dialect::Sqlite, Dialect::Postgres]
            .map(|dialect| ROLLUPS.map(|(table, _)| rollup_upsert_text(dialect, table)))
    });
    &TEXTS[dialect as usize][table]
}

fn rollup_upsert_text(dialect: Dialect, table: &str) -> String {
    let value_columns: Vec<String> = KEY_COLUMNS
        .iter()
        .chain(SUM_COLUMNS.iter())
        .map(|column| (*column).to_owned())
        .chain(histogram_columns())
        .collect();
    let updates: Vec<String> = SUM_COLUMNS
        .iter()
        .map(|column| (*column).to_owned())
        .chain(histogram_columns())
        .map(|column| format!("{column} = {table}.{column} + excluded.{column}"))
        .collect();
    let mut text = format!(
        "INSERT INTO {table} ({}) VALUES (",
        value_columns.join(", ")
    );
    for n in 1..=value_columns.len() {
        if n > 1 {
            text.push_str(", ");
        }
        push_placeholder(&mut text, dialect, n);
    }
    let _ = write!(
        text,
        ") ON CONFLICT ({}) DO UPDATE SET {}",
        KEY_COLUMNS.join(", "),
        updates.join(", ")
    );
    text
}

/// A rollup row's key, borrowing the rows' strings: period start, model,
/// provider, service type, status, streaming.
type RollupKey<'a> = (i64, &'a str, &'a str, &'a str, i64, i64);

/// Adds `rows` to rollup `table` (an index of [`ROLLUPS`]).
fn upsert_rollup(
    db: &mut dyn Db,
    dialect: Dialect,
    table: usize,
    rows: &[LogRow],
) -> Result<(), String> {
    let period = ROLLUPS[table].1;
    let mut periods: BTreeMap<RollupKey<'_>, Totals> = BTreeMap::new();
    for row in rows {
        let key = (
            floor_to(row.timestamp_ms, period),
            row.model.as_deref().unwrap_or_default(),
            row.provider.as_deref().unwrap_or_default(),
            row.service_type.as_deref().unwrap_or_default(),
            row.status_code,
            i64::from(row.streaming),
        );
        periods.entry(key).or_default().add_row(row);
    }
    let sql = rollup_upsert(dialect, table);
    let text = |value: &str| SqlValue::Text(Some(value.to_owned()));
    // One key per statement: a key is never upserted twice in one statement
    // (which PostgreSQL refuses).
    let mut params = Vec::with_capacity(KEY_COLUMNS.len() + SUM_COLUMNS.len() + histogram::BUCKETS);
    for ((start, model, provider, service_type, status, streaming), totals) in &periods {
        params.clear();
        params.extend([
            SqlValue::Int(Some(*start)),
            text(model),
            text(provider),
            text(service_type),
            SqlValue::Int(Some(*status)),
            SqlValue::Int(Some(*streaming)),
            SqlValue::Int(Some(totals.requests)),
            SqlValue::Int(Some(totals.tokens_input)),
            SqlValue::Int(Some(totals.tokens_output)),
            SqlValue::Int(Some(totals.cache_read_tokens)),
            SqlValue::Int(Some(totals.cache_write_tokens)),
            SqlValue::Real(Some(totals.cost_usd)),
            SqlValue::Real(Some(totals.duration_ms_sum)),
        ]);
        params.extend(
            totals
                .histogram
                .iter()
                .map(|count| SqlValue::Int(Some(*count))),
        );
        db.execute(sql, &params)?;
    }
    Ok(())
}

/// Appends ` AND …` for every condition of `filter` on the table with time
/// column `time` (`access_logs`: `timestamp_ms`; the rollup has no
/// durations, and its time bounds are set by the caller).
fn push_filter(sql: &mut Sql, filter: &RowFilter, time: Option<&str>) {
    if let Some(time) = time {
        if let Some(start) = filter.start_ms {
            sql.push(&format!(" AND {time} >= ")).int(start);
        }
        if let Some(end) = filter.end_ms {
            sql.push(&format!(" AND {time} <= ")).int(end);
        }
    }
    for (column, value) in [
        ("model", &filter.model),
        ("provider", &filter.provider),
        ("service_type", &filter.service_type),
    ] {
        if let Some(value) = value {
            sql.push(&format!(" AND {column} = "))
                .param(SqlValue::Text(Some(value.clone())));
        }
    }
    if let Some(status) = filter.status_code {
        sql.push(" AND status_code = ").int(status);
    }
    if let Some(min) = filter.min_status {
        sql.push(" AND status_code >= ").int(min);
    }
    if let Some(max) = filter.max_status {
        sql.push(" AND status_code <= ").int(max);
    }
    if let Some(streaming) = filter.streaming {
        sql.push(" AND streaming = ").int(i64::from(streaming));
    }
    if time.is_some() {
        if let Some(min) = filter.min_duration_ms {
            sql.push(" AND duration_ms >= ")
                .param(SqlValue::Real(Some(min)));
        }
        if let Some(max) = filter.max_duration_ms {
            sql.push(" AND duration_ms <= ")
                .param(SqlValue::Real(Some(max)));
        }
    }
}

/// `GET /logs/query`: a page of rows and the cursor of the next one.
pub(crate) fn query(db: &mut dyn Db, request: &QueryRequest) -> Result<Value, String> {
    let mut sql = Sql::new(
        db.dialect(),
        &format!(
            "SELECT {} FROM access_logs WHERE 1 = 1",
            ROW_COLUMNS.join(", ")
        ),
    );
    push_filter(&mut sql, &request.filter, Some("timestamp_ms"));
    let (after, direction) = match request.order {
        Order::Desc => ("<", "DESC"),
        Order::Asc => (">", "ASC"),
    };
    if let Some(cursor) = &request.cursor {
        sql.push(&format!(" AND (timestamp_ms {after} "))
            .int(cursor.timestamp_ms)
            .push(" OR (timestamp_ms = ")
            .int(cursor.timestamp_ms)
            .push(&format!(" AND request_id {after} "))
            .param(SqlValue::Text(Some(cursor.request_id.clone())))
            .push("))");
    }
    sql.push(&format!(
        " ORDER BY timestamp_ms {direction}, request_id {direction} LIMIT "
    ))
    .int(i64::from(request.limit) + 1);
    let mut rows: Vec<LogRow> = db
        .query(&sql.text, &sql.params, &ROW_TYPES)?
        .iter()
        .map(|values| row_from_values(values))
        .collect();
    let has_more = rows.len() > request.limit as usize;
    rows.truncate(request.limit as usize);
    let next_cursor = has_more.then(|| rows.last()).flatten().map(|last| {
        Cursor {
            timestamp_ms: last.timestamp_ms,
            request_id: last.request_id.clone(),
        }
        .encode()
    });
    Ok(json!({
        "results": rows.iter().map(LogRow::to_json).collect::<Vec<_>>(),
        "count": rows.len(),
        "next_cursor": next_cursor,
        "has_more": has_more,
    }))
}

/// A group of the analysis: timeline bucket, model, provider, status.
type GroupKey = (i64, String, String, i64);

/// `GET /logs/analytics`.
pub(crate) fn analytics(db: &mut dyn Db, request: &AnalyticsRequest) -> Result<Value, String> {
    let bucket_ms = request.bucket_seconds.max(60) * 1000;
    let to_exclusive = request.to_ms.saturating_add(1);
    let mut groups: HashMap<GroupKey, Totals> = HashMap::new();
    let mut add = |key: GroupKey, totals: &Totals| groups.entry(key).or_default().add(totals);
    for (source, start, end) in plan(request.from_ms, to_exclusive, bucket_ms) {
        match source {
            Some(table) => {
                let mut sql = Sql::new(db.dialect(), "SELECT (period_ms / ");
                sql.int(bucket_ms).push(") * ").int(bucket_ms);
                sql.push(", model, provider, status_code");
                for column in SUM_COLUMNS {
                    let kind = if column == "cost_usd" || column == "duration_ms_sum" {
                        "DOUBLE PRECISION"
                    } else {
                        "BIGINT"
                    };
                    sql.push(&format!(", CAST(SUM({column}) AS {kind})"));
                }
                for column in histogram_columns() {
                    sql.push(&format!(", CAST(SUM({column}) AS BIGINT)"));
                }
                sql.push(&format!(" FROM {table} WHERE period_ms >= "))
                    .int(start)
                    .push(" AND period_ms < ")
                    .int(end);
                push_filter(&mut sql, &request.filter, None);
                sql.push(" GROUP BY 1, 2, 3, 4");
                let mut columns = vec![Col::Int, Col::Text, Col::Text, Col::Int];
                columns.extend([Col::Int; 5]);
                columns.extend([Col::Real; 2]);
                columns.extend(std::iter::repeat_n(Col::Int, histogram::BUCKETS));
                for values in db.query(&sql.text, &sql.params, &columns)? {
                    let key = (
                        values[0].int(),
                        values[1].text().unwrap_or_default(),
                        values[2].text().unwrap_or_default(),
                        values[3].int(),
                    );
                    add(key, &Totals::from_values(&values[4..]));
                }
            }
            None => {
                let mut sql = Sql::new(
                    db.dialect(),
                    &format!(
                        "SELECT {} FROM access_logs WHERE timestamp_ms >= ",
                        ROW_COLUMNS.join(", ")
                    ),
                );
                sql.int(start).push(" AND timestamp_ms < ").int(end);
                push_filter(&mut sql, &request.filter, None);
                for values in db.query(&sql.text, &sql.params, &ROW_TYPES)? {
                    let row = row_from_values(&values);
                    let key = (
                        floor_to(row.timestamp_ms, bucket_ms),
                        row.model.clone().unwrap_or_default(),
                        row.provider.clone().unwrap_or_default(),
                        row.status_code,
                    );
                    let mut totals = Totals::default();
                    totals.add_row(&row);
                    add(key, &totals);
                }
            }
        }
    }
    Ok(report(request, bucket_ms, &groups))
}

fn nullable(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::from(text)
    }
}

fn breakdown(name: &str, parts: BTreeMap<String, Totals>) -> Vec<Value> {
    let mut parts: Vec<(String, Totals)> = parts.into_iter().collect();
    parts.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
    parts
        .into_iter()
        .map(|(key, totals)| {
            json!({
                name: nullable(&key),
                "requests": totals.requests,
                "tokens_input": totals.tokens_input,
                "tokens_output": totals.tokens_output,
                "cost_usd": totals.cost_usd,
                "avg_duration_ms": totals.avg_duration_ms(),
            })
        })
        .collect()
}

/// The answer's JSON from the groups.
fn report(request: &AnalyticsRequest, bucket_ms: i64, groups: &HashMap<GroupKey, Totals>) -> Value {
    let mut summary = Totals::default();
    let mut failed = 0;
    let mut by_model: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_provider: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_status: BTreeMap<i64, i64> = BTreeMap::new();
    let mut timeline: BTreeMap<i64, Totals> = BTreeMap::new();
    for ((bucket, model, provider, status), totals) in groups {
        summary.add(totals);
        if *status >= 400 {
            failed += totals.requests;
        }
        by_model.entry(model.clone()).or_default().add(totals);
        by_provider.entry(provider.clone()).or_default().add(totals);
        *by_status.entry(*status).or_default() += totals.requests;
        timeline.entry(*bucket).or_default().add(totals);
    }
    // Every bucket of the window, empty ones included, for charts.
    let first_bucket = request.from_ms.div_euclid(bucket_ms) * bucket_ms;
    let last_bucket = request.to_ms.div_euclid(bucket_ms) * bucket_ms;
    let mut bucket = first_bucket;
    while bucket <= last_bucket && timeline.len() < 20_000 {
        timeline.entry(bucket).or_default();
        bucket += bucket_ms;
    }
    let quantile = |totals: &Totals, q: f64| histogram::quantile(&totals.histogram, q);
    json!({
        "hours": request.hours,
        "bucket_seconds": bucket_ms / 1000,
        "start_time": rfc3339(request.from_ms),
        "end_time": rfc3339(request.to_ms),
        "summary": {
            "total_requests": summary.requests,
            "successful_requests": summary.requests - failed,
            "failed_requests": failed,
            "total_tokens_input": summary.tokens_input,
            "total_tokens_output": summary.tokens_output,
            "total_cache_read_tokens": summary.cache_read_tokens,
            "total_cache_write_tokens": summary.cache_write_tokens,
            "total_cost_usd": summary.cost_usd,
            "avg_duration_ms": summary.avg_duration_ms(),
            "p50_duration_ms": quantile(&summary, 0.50),
            "p95_duration_ms": quantile(&summary, 0.95),
            "p99_duration_ms": quantile(&summary, 0.99),
        },
        "by_model": breakdown("model", by_model),
        "by_provider": breakdown("provider", by_provider),
        "by_status": by_status
            .into_iter()
            .map(|(status, requests)| json!({"status_code": status, "requests": requests}))
            .collect::<Vec<_>>(),
        "timeline": timeline
            .into_iter()
            .map(|(bucket, totals)| json!({
                "bucket_start": rfc3339(bucket),
                "requests": totals.requests,
                "tokens_input": totals.tokens_input,
                "tokens_output": totals.tokens_output,
                "cost_usd": totals.cost_usd,
                "avg_duration_ms": totals.avg_duration_ms(),
                "p95_duration_ms": quantile(&totals, 0.95),
            }))
            .collect::<Vec<_>>(),
    })
}

/// Deletes every stored row; answers how many requests were deleted.
pub(crate) fn reset(db: &mut dyn Db) -> Result<u64, String> {
    db.batch("BEGIN")?;
    let deleted = db
        .execute("DELETE FROM access_logs", &[])
        .and_then(|deleted| {
            db.execute("DELETE FROM access_log_minutes", &[])
                .map(|_| deleted)
        });
    match deleted {
        Ok(deleted) => db.batch("COMMIT").map(|()| deleted),
        Err(error) => {
            let _ = db.batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Deletes rows older than `oldest_ms` and, with `max_rows`, all but the
/// newest `max_rows`, to the hour: the rollups keep whole periods, so an hour
/// is kept or deleted in every table and they always describe exactly the
/// rows kept. Answers how many rows went.
pub(crate) fn retain(
    db: &mut dyn Db,
    oldest_ms: Option<i64>,
    max_rows: Option<u64>,
) -> Result<u64, String> {
    let mut cutoff = oldest_ms.map(|oldest| floor_to(oldest, HOUR_MS));
    if let Some(max_rows) = max_rows {
        let mut sql = Sql::new(
            db.dialect(),
            "SELECT timestamp_ms FROM access_logs ORDER BY timestamp_ms DESC LIMIT 1 OFFSET ",
        );
        sql.int(i64::try_from(max_rows).unwrap_or(i64::MAX));
        if let Some(row) = db.query(&sql.text, &sql.params, &[Col::Int])?.first() {
            // Everything before the hour after the newest row to drop.
            let hour_after = floor_to(row[0].int(), HOUR_MS) + HOUR_MS;
            cutoff = Some(cutoff.map_or(hour_after, |age| age.max(hour_after)));
        }
    }
    let Some(cutoff) = cutoff else {
        return Ok(0);
    };
    db.batch("BEGIN")?;
    let mut sql = Sql::new(
        db.dialect(),
        "DELETE FROM access_logs WHERE timestamp_ms < ",
    );
    sql.int(cutoff);
    let deleted = db.execute(&sql.text, &sql.params).and_then(|deleted| {
        for (table, _) in ROLLUPS {
            let mut sql = Sql::new(
                db.dialect(),
                &format!("DELETE FROM {table} WHERE period_ms < "),
            );
            sql.int(cutoff);
            db.execute(&sql.text, &sql.params)?;
        }
        Ok(deleted)
    });
    match deleted {
        Ok(deleted) => db.batch("COMMIT").map(|()| deleted),
        Err(error) => {
            let _ = db.batch("ROLLBACK");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use ccproxy_plugin_kit::logs::{parse_analytics_request, parse_query_request};

    use super::*;
    use crate::sqlite::Sqlite;

    fn database() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Sqlite::open(&dir.path().join("logs.db")).unwrap();
        db.batch(&schema()).unwrap();
        (dir, db)
    }

    fn row(n: i64, timestamp_ms: i64) -> LogRow {
        LogRow {
            request_id: format!("r{n:04}"),
            timestamp_ms,
            method: "POST".into(),
            endpoint: "/v1/messages".into(),
            path: "/claude/v1/messages".into(),
            provider: Some(if n % 3 == 0 { "codex" } else { "claude_api" }.into()),
            service_type: Some(if n % 3 == 0 { "codex" } else { "claude_api" }.into()),
            model: (n % 5 != 0).then(|| format!("model-{}", n % 3)),
            streaming: n % 2 == 0,
            status_code: if n % 7 == 0 { 529 } else { 200 },
            duration_ms: 10.0 + (n * 37 % 1000) as f64,
            tokens_input: n,
            tokens_output: 2 * n,
            cache_read_tokens: n % 4,
            cache_write_tokens: 1,
            cost_usd: (n % 2 == 1).then_some(0.001 * n as f64),
            ..LogRow::default()
        }
    }

    /// 300 rows, one every 7.3 s from `start`.
    fn filled(db: &mut Sqlite, start: i64) -> Vec<LogRow> {
        let rows: Vec<LogRow> = (0..300).map(|n| row(n, start + n * 7_300)).collect();
        for chunk in rows.chunks(37) {
            insert(db, chunk).unwrap();
        }
        rows
    }

    #[test]
    fn rows_read_back_as_written_and_page_by_cursor() {
        let (_dir, mut db) = database();
        let rows = filled(&mut db, 1_700_000_000_000);
        for order in ["asc", "desc"] {
            let mut seen = Vec::new();
            let mut cursor = None::<String>;
            loop {
                let query = match &cursor {
                    Some(cursor) => format!("limit=64&order={order}&cursor={cursor}"),
                    None => format!("limit=64&order={order}"),
                };
                let page = query_rows(&mut db, &query);
                for result in page["results"].as_array().unwrap() {
                    seen.push(result["request_id"].as_str().unwrap().to_owned());
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            let mut expected: Vec<String> = rows.iter().map(|row| row.request_id.clone()).collect();
            if order == "desc" {
                expected.reverse();
            }
            assert_eq!(seen, expected, "{order}");
        }
        let first = query_rows(&mut db, "limit=1&order=asc");
        assert_eq!(first["results"][0], rows[0].to_json());
        assert_eq!(first["has_more"], true);
    }

    fn query_rows(db: &mut Sqlite, query: &str) -> Value {
        query_fn(db, &parse_query_request(query).unwrap()).unwrap()
    }

    fn query_fn(db: &mut Sqlite, request: &QueryRequest) -> Result<Value, String> {
        query(db, request)
    }

    #[test]
    fn filters_select_the_same_rows_as_the_kit_filter() {
        let (_dir, mut db) = database();
        let rows = filled(&mut db, 1_700_000_000_000);
        for query in [
            "model=model-1",
            "provider=codex&streaming=true",
            "min_status=500",
            "status_code=200&service_type=claude_api",
            "start_time=1700000100&end_time=1700000900",
        ] {
            let request = parse_query_request(&format!("{query}&limit=10000")).unwrap();
            let expected = rows
                .iter()
                .filter(|row| request.filter.matches(row))
                .count();
            let page = query_fn(&mut db, &request).unwrap();
            assert_eq!(page["count"], expected, "{query}");
            assert!(expected > 0, "{query}");
        }
    }

    #[test]
    fn hostile_values_are_bound_not_spliced() {
        let (_dir, mut db) = database();
        filled(&mut db, 1_700_000_000_000);
        for value in ["'; DROP TABLE access_logs; --", "x' OR '1'='1", "?1", "$1"] {
            let mut request = parse_query_request("").unwrap();
            request.filter.model = Some(value.to_owned());
            assert_eq!(query_fn(&mut db, &request).unwrap()["count"], 0, "{value}");
            let mut sql = Sql::new(Dialect::Sqlite, "SELECT 1 WHERE 1 = 1");
            push_filter(&mut sql, &request.filter, Some("timestamp_ms"));
            assert!(!sql.text.contains('\''), "{}", sql.text);
            assert_eq!(sql.params, [SqlValue::Text(Some(value.to_owned()))]);
        }
        assert_eq!(query_rows(&mut db, "limit=10000")["count"], 300);
        let mut sql = Sql::new(Dialect::Postgres, "x = ");
        sql.param(SqlValue::Int(Some(1)))
            .push(" AND y = ")
            .param(SqlValue::Int(Some(2)));
        assert_eq!(sql.text, "x = $1 AND y = $2");
    }

    /// The analysis of any window equals a count of the rows in it: the
    /// rollup for whole minutes, the rows for the edges.
    #[test]
    fn analytics_over_any_window_add_up_to_the_rows_in_it() {
        let (_dir, mut db) = database();
        let start = 1_700_000_012_345;
        let rows = filled(&mut db, start);
        let end = start + 300 * 7_300;
        for (from, to, extra) in [
            (start - 60_000, end + 60_000, ""),
            (start + 61_234, end - 95_432, ""),
            (start + 1_000, start + 30_000, ""),
            (
                start + 100_000,
                start + 800_000,
                "&model=model-1&min_status=500",
            ),
            (start, end, "&provider=codex&streaming=false"),
        ] {
            let query = format!(
                "start_time={}&end_time={}&bucket=minute{extra}",
                from as f64 / 1000.0,
                to as f64 / 1000.0
            );
            let request = parse_analytics_request(&query, end).unwrap();
            let inside: Vec<&LogRow> = rows
                .iter()
                .filter(|row| request.filter.matches(row))
                .collect();
            let answer = analytics(&mut db, &request).unwrap();
            let summary = &answer["summary"];
            assert_eq!(
                summary["total_requests"],
                inside.len(),
                "{query}: {summary}"
            );
            let sum = |f: fn(&LogRow) -> i64| inside.iter().map(|row| f(row)).sum::<i64>();
            assert_eq!(
                summary["total_tokens_input"],
                sum(|row| row.tokens_input),
                "{query}"
            );
            assert_eq!(
                summary["total_tokens_output"],
                sum(|row| row.tokens_output),
                "{query}"
            );
            assert_eq!(
                summary["failed_requests"],
                inside.iter().filter(|row| row.status_code >= 400).count()
            );
            let cost: f64 = inside.iter().filter_map(|row| row.cost_usd).sum();
            assert!((summary["total_cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
            let timeline: i64 = answer["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|bucket| bucket["requests"].as_i64().unwrap())
                .sum();
            assert_eq!(timeline, inside.len() as i64, "{query}");
            let models: i64 = answer["by_model"]
                .as_array()
                .unwrap()
                .iter()
                .map(|model| model["requests"].as_i64().unwrap())
                .sum();
            assert_eq!(models, inside.len() as i64, "{query}");
        }
        // Rows with no model are grouped as null.
        let all =
            parse_analytics_request(&format!("start_time={}", start / 1000 - 1), end).unwrap();
        let answer = analytics(&mut db, &all).unwrap();
        assert!(
            answer["by_model"]
                .as_array()
                .unwrap()
                .iter()
                .any(|model| model["model"].is_null())
        );
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let (_dir, mut db) = database();
        let minute = 1_700_000_040_000;
        let rows: Vec<LogRow> = (1..=1000)
            .map(|n| LogRow {
                request_id: format!("p{n}"),
                timestamp_ms: minute + n,
                duration_ms: n as f64,
                status_code: 200,
                ..LogRow::default()
            })
            .collect();
        insert(&mut db, &rows).unwrap();
        let request = parse_analytics_request("hours=1", minute + 3_600_000).unwrap();
        let summary = analytics(&mut db, &request).unwrap()["summary"].clone();
        for (key, expected) in [
            ("p50_duration_ms", 500.0),
            ("p95_duration_ms", 950.0),
            ("p99_duration_ms", 990.0),
        ] {
            let value = summary[key].as_f64().unwrap();
            assert!((value - expected).abs() / expected < 0.15, "{key} {value}");
        }
        assert!((summary["avg_duration_ms"].as_f64().unwrap() - 500.5).abs() < 1e-9);
    }

    #[test]
    fn retention_deletes_by_age_and_by_count_in_whole_hours() {
        let (_dir, mut db) = database();
        let start = 1_699_999_200_000; // on the hour
        // 300 rows, one every 37 s from the hour: a bit over three hours.
        let rows: Vec<LogRow> = (0..300).map(|n| row(n, start + n * 37_000)).collect();
        insert(&mut db, &rows).unwrap();
        let rollup = |db: &mut Sqlite, table: &str| {
            db.query(
                &format!("SELECT CAST(SUM(requests) AS BIGINT) FROM {table}"),
                &[],
                &[Col::Int],
            )
            .unwrap()[0][0]
                .int() as u64
        };
        // By age, to the hour: everything before hour 1 goes.
        let deleted = retain(&mut db, Some(start + HOUR_MS + 5_000), None).unwrap();
        let expected = rows
            .iter()
            .filter(|row| row.timestamp_ms < start + HOUR_MS)
            .count() as u64;
        assert_eq!(deleted, expected);
        let left = query_rows(&mut db, "limit=10000")["count"]
            .as_u64()
            .unwrap();
        assert_eq!(left, 300 - expected);
        for (table, _) in ROLLUPS {
            assert_eq!(rollup(&mut db, table), left, "{table} loses the same hours");
        }
        // By count: the newest 50 rows lie in the last hour, which is kept whole.
        retain(&mut db, None, Some(50)).unwrap();
        let left = query_rows(&mut db, "limit=10000")["count"]
            .as_u64()
            .unwrap();
        let last_hour = rows
            .iter()
            .filter(|row| row.timestamp_ms >= start + 3 * HOUR_MS)
            .count() as u64;
        assert_eq!(left, last_hour);
        assert_eq!(rollup(&mut db, "access_log_hours"), left);
        assert_eq!(retain(&mut db, None, Some(1000)).unwrap(), 0);
        assert_eq!(reset(&mut db).unwrap(), left);
        assert_eq!(query_rows(&mut db, "")["count"], 0);
        assert_eq!(rollup(&mut db, "access_log_minutes"), 0);
    }

    #[test]
    fn analytics_across_hours_add_up_whatever_the_bucket() {
        let (_dir, mut db) = database();
        let start = 1_699_999_200_000 + 1_234;
        let rows: Vec<LogRow> = (0..600).map(|n| row(n, start + n * 37_000)).collect();
        for chunk in rows.chunks(97) {
            insert(&mut db, chunk).unwrap();
        }
        let end = start + 600 * 37_000;
        for bucket in ["minute", "hour", "day"] {
            for (from, to) in [
                (start - 1, end + 1),
                (start + 3_599_000, end - 61_001),
                (start + 7_000_000, start + 7_300_000),
            ] {
                let query = format!(
                    "start_time={}&end_time={}&bucket={bucket}",
                    from as f64 / 1000.0,
                    to as f64 / 1000.0
                );
                let request = parse_analytics_request(&query, end).unwrap();
                let inside: Vec<&LogRow> = rows
                    .iter()
                    .filter(|row| request.filter.matches(row))
                    .collect();
                let answer = analytics(&mut db, &request).unwrap();
                assert_eq!(answer["summary"]["total_requests"], inside.len(), "{query}");
                let tokens: i64 = inside.iter().map(|row| row.tokens_output).sum();
                assert_eq!(answer["summary"]["total_tokens_output"], tokens, "{query}");
                let timeline: i64 = answer["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|bucket| bucket["requests"].as_i64().unwrap())
                    .sum();
                assert_eq!(timeline, inside.len() as i64, "{query}");
            }
        }
    }

    #[test]
    fn plans_read_hours_then_minutes_then_rows() {
        let h = HOUR_MS;
        let m = MINUTE_MS;
        // 10:00:30 to 13:05:10 by hour: rows, minutes, hours, minutes, rows.
        let plan_by_hour = plan(10 * h + 30_000, 13 * h + 5 * m + 10_000, h);
        assert_eq!(
            plan_by_hour,
            [
                (None, 10 * h + 30_000, 10 * h + m),
                (Some("access_log_minutes"), 10 * h + m, 11 * h),
                (Some("access_log_hours"), 11 * h, 13 * h),
                (Some("access_log_minutes"), 13 * h, 13 * h + 5 * m),
                (None, 13 * h + 5 * m, 13 * h + 5 * m + 10_000),
            ]
        );
        // Minute buckets never read hours.
        assert!(
            plan(0, 5 * h, m)
                .iter()
                .all(|(table, ..)| *table != Some("access_log_hours"))
        );
        // Inside one minute: rows only.
        assert_eq!(plan(1_000, 2_000, h), [(None, 1_000, 2_000)]);
    }
}
