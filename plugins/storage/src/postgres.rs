//! PostgreSQL, for several proxies writing one store: `postgres_sync`, a
//! client on std::net over sfackler's `postgres-protocol` and
//! `postgres-types`, so a plugin that owns no runtime can use it inside
//! `Context::blocking`. TCP only, no TLS (a store on the same host or
//! network; say so in the README).

use postgres_sync::{Client, NoTls, types::ToSql};

use crate::sql::{Col, Db, Dialect, SqlValue};

/// Where to connect, read from `postgres://user:password@host:port/database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgTarget {
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("the {what} has a bad %-escape"))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {what} is not UTF-8"))
}

impl PgTarget {
    /// Reads `url`; the error says what is wrong without repeating the password.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("url must start with postgres:// or postgresql://")?;
        if rest.contains('?') {
            return Err(
                "url options (?…) are not supported: TLS and unix sockets are not, \
                        give postgres://user:password@host:port/database"
                    .to_owned(),
            );
        }
        let (credentials, location) = match rest.rsplit_once('@') {
            Some((credentials, location)) => (credentials, location),
            None => ("", rest),
        };
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let user = decode(user, "user name")?;
        let password = decode(password, "password")?;
        let (host_port, database) = location.split_once('/').unwrap_or((location, ""));
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| "the port in url is not a number".to_owned())?,
            ),
            None => (host_port, 5432),
        };
        let user = if user.is_empty() {
            "postgres".to_owned()
        } else {
            user
        };
        let database = decode(database, "database name")?;
        let database = if database.is_empty() {
            user.clone()
        } else {
            database
        };
        // postgres_sync splits its connection string at the first `:`, `@` and `/`.
        if user.contains([':', '@', '/'])
            || password.contains('@')
            || host.is_empty()
            || host.contains([':', '@', '/'])
        {
            return Err("url: the user name may not hold ':', '@' or '/', the password not '@', and the host must be a name or an IPv4 address".to_owned());
        }
        Ok(Self {
            user,
            password,
            host: host.to_owned(),
            port,
            database,
        })
    }

    /// The url without the password, for logs and health.
    pub(crate) fn masked(&self) -> String {
        let password = if self.password.is_empty() { "" } else { ":***" };
        format!(
            "postgres://{}{password}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }

    pub(crate) fn connect(&self) -> Result<Postgres, String> {
        let url = format!(
            "postgresql://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.database
        );
        let client = Client::connect(&url, NoTls).map_err(|error| {
            format!("cannot connect to {}: {}", self.masked(), one_line(&*error))
        })?;
        Ok(Postgres { client })
    }
}

fn one_line(error: &dyn std::fmt::Display) -> String {
    error.to_string().replace('\n', "; ")
}

/// A connection.
pub(crate) struct Postgres {
    client: Client,
}

fn bound(params: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| -> &(dyn ToSql + Sync) {
            match value {
                SqlValue::Int(n) => n,
                SqlValue::Real(x) => x,
                SqlValue::Text(text) => text,
            }
        })
        .collect()
}

impl Db for Postgres {
    fn batch(&mut self, sql: &str) -> Result<(), String> {
        self.client
            .batch_execute(sql)
            .map_err(|error| one_line(&*error))
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, String> {
        self.client
            .execute(sql, &bound(params))
            .map_err(|error| one_line(&*error))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[SqlValue],
        columns: &[Col],
    ) -> Result<Vec<Vec<SqlValue>>, String> {
        let rows = self
            .client
            .query(sql, &bound(params))
            .map_err(|error| one_line(&*error))?;
        Ok(rows
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(index, column)| match column {
                        Col::Int => SqlValue::Int(row.get::<Option<i64>>(index)),
                        Col::Real => SqlValue::Real(row.get::<Option<f64>>(index)),
                        Col::Text => SqlValue::Text(row.get::<Option<String>>(index)),
                    })
                    .collect()
            })
            .collect())
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_and_masked() {
        let target = PgTarget::parse("postgres://ada:s%3Acret@127.0.0.1:5433/logs").unwrap();
        assert_eq!(target.password, "s:cret");
        assert_eq!(target.port, 5433);
        assert_eq!(target.masked(), "postgres://ada:***@127.0.0.1:5433/logs");
        let defaults = PgTarget::parse("postgresql://localhost").unwrap();
        assert_eq!(
            (
                defaults.user.as_str(),
                defaults.port,
                defaults.database.as_str()
            ),
            ("postgres", 5432, "postgres")
        );
        for bad in [
            "mysql://x",
            "postgres://h:port/db",
            "postgres://h/db?sslmode=require",
        ] {
            let error = PgTarget::parse(bad).unwrap_err();
            assert!(!error.contains("cret"), "{error}");
        }
    }
}
