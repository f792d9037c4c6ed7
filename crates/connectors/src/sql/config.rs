//! Settings of `postgres`, `mysql` and `sqlite` connections in `weft.yaml`; this module is their
//! reference.
//!
//! ```yaml
//! connections:
//!   warehouse:
//!     type: postgres
//!     url: postgres://weft@db.internal:5432/warehouse   # no password in the file
//!     password: { env: WAREHOUSE_PASSWORD }             # optional
//!     max_connections: 5                                # pool size (default 5)
//!     timeout: 30s                                      # per action, connecting included
//!   legacy:
//!     type: mysql                                       # MySQL and MariaDB
//!     url: { env: LEGACY_DATABASE_URL }                 # or the whole URL from the environment
//!   local:
//!     type: sqlite
//!     path: data/app.db                                 # relative to the project folder
//! ```
//!
//! A URL that carries a password is refused: the password is a credential, so it comes from
//! `password: { env: NAME }` or the whole URL from `url: { env: NAME }`. Query-string options of
//! the URL (such as `sslmode=require`) are passed to the driver. Decoding is pure (no I/O), so
//! `weft lint` checks these settings offline.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::{Kind, Node};

use crate::secret::SecretRef;

/// Keys of a SQL connection.
pub const KEYS: &[&str] = &[
    "type",
    "url",
    "password",
    "path",
    "max_connections",
    "timeout",
];

/// The default time one action may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default pool size.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 5;

/// Which database a connection talks to; it decides placeholders, quoting and upsert syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$1` placeholders, `"identifiers"`, `ON CONFLICT … DO UPDATE`.
    Postgres,
    /// MySQL and MariaDB: `?` placeholders, `` `identifiers` ``, `ON DUPLICATE KEY UPDATE`.
    Mysql,
    /// SQLite: `?` placeholders, `"identifiers"`, `ON CONFLICT … DO UPDATE`.
    Sqlite,
}

impl Dialect {
    /// The connection `type:` of this dialect.
    pub fn type_name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// Where the database is.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A URL written in the file, without a password.
    Url(Url),
    /// A URL read from the environment when the connection is first used.
    UrlFrom(SecretRef),
    /// A SQLite file, relative to the project folder unless absolute. Created when missing.
    Path(PathBuf),
}

/// A SQL database reached by steps with `uses: <connection>.query|execute|insert|upsert`.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlConfig {
    /// The database kind, from `type:`.
    pub dialect: Dialect,
    /// `url:` for PostgreSQL and MySQL (`postgres://user@host:5432/db`, `mysql://user@host/db`),
    /// `path:` for SQLite.
    pub target: Target,
    /// The password, `{ env: NAME }`, when the URL is written in the file.
    pub password: Option<SecretRef>,
    /// Most connections the pool opens at once. Default 5.
    pub max_connections: u32,
    /// Longest time one action may take, waiting for a connection included. Default 30s.
    pub timeout: Duration,
}

impl SqlConfig {
    /// Reads and checks the settings of a SQL connection (the whole mapping, `type` included).
    pub fn decode(dialect: Dialect, node: &Node, diags: &mut Diagnostics) -> Option<SqlConfig> {
        let what = format!("{} connection", dialect.type_name());
        let mut f = Fields::new(node, &what, KEYS, diags)?;
        f.get("type");
        let target = match dialect {
            Dialect::Sqlite => f.require("path", diags).and_then(|n| {
                let text = decode::string(n, "`path`", diags)?;
                if text.is_empty() || text.contains('\0') || text.contains('?') {
                    diags.error(n.pos, "`path` must be a file name, such as `data/app.db`");
                    return None;
                }
                Some(Target::Path(PathBuf::from(text)))
            }),
            Dialect::Postgres | Dialect::Mysql => f
                .require("url", diags)
                .and_then(|n| decode_url(dialect, n, diags)),
        };
        let password = match (dialect, f.get("password")) {
            (_, None) => None,
            (Dialect::Sqlite, Some(n)) => {
                diags.error(n.pos, "`password` does not apply to sqlite connections");
                None
            }
            (_, Some(n)) => SecretRef::decode(n, "`password`", diags),
        };
        if let Some(n) = f.get("path").filter(|_| dialect != Dialect::Sqlite) {
            diags.error(
                n.pos,
                format!(
                    "`path` applies only to sqlite connections; a {} connection has a `url`",
                    dialect.type_name()
                ),
            );
        }
        if let Some(n) = f.get("url").filter(|_| dialect == Dialect::Sqlite) {
            diags.error(
                n.pos,
                "a sqlite connection has a `path` (a file), not a `url`",
            );
        }
        let max_connections = f
            .get("max_connections")
            .and_then(|n| decode::integer(n, "`max_connections`", 1, 1000, diags))
            .map_or(DEFAULT_MAX_CONNECTIONS, |v| v as u32);
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        f.finish(diags);
        Some(SqlConfig {
            dialect,
            target: target?,
            password,
            max_connections,
            timeout,
        })
    }
}

fn decode_url(dialect: Dialect, node: &Node, diags: &mut Diagnostics) -> Option<Target> {
    if matches!(node.kind, Kind::Map(_)) {
        return SecretRef::decode(node, "`url`", diags).map(Target::UrlFrom);
    }
    let text = decode::string(node, "`url`", diags)?;
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            diags.error(node.pos, format!("`url` is not a valid URL: {e}"));
            return None;
        }
    };
    if let Err(message) = check_scheme(dialect, &url) {
        diags.error(node.pos, message);
        return None;
    }
    if url.password().is_some() {
        diags.error(
            node.pos,
            "`url` must not carry a password in the file; use `password: { secret: NAME }` (or `{ env: NAME }`), or `url: { secret: NAME }`",
        );
        return None;
    }
    Some(Target::Url(url))
}

/// Checks that a URL names the right kind of database.
pub fn check_scheme(dialect: Dialect, url: &Url) -> Result<(), String> {
    let ok = match dialect {
        Dialect::Postgres => matches!(url.scheme(), "postgres" | "postgresql"),
        Dialect::Mysql => matches!(url.scheme(), "mysql" | "mariadb"),
        Dialect::Sqlite => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a {} connection needs a `{}://` URL, not `{}://`",
            dialect.type_name(),
            dialect.type_name(),
            url.scheme()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::yaml;

    fn decode(dialect: Dialect, src: &str) -> (Option<SqlConfig>, Vec<String>) {
        let node = yaml::parse(src).unwrap();
        let mut d = Diagnostics::new("weft.yaml");
        let c = SqlConfig::decode(dialect, &node, &mut d);
        (c, d.into_vec().into_iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn the_documented_examples_decode() {
        let (c, errs) = decode(
            Dialect::Postgres,
            "type: postgres\nurl: postgres://weft@db.internal:5432/warehouse\npassword: { env: WAREHOUSE_PASSWORD }\nmax_connections: 5\ntimeout: 30s\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let c = c.unwrap();
        assert_eq!(
            c.target,
            Target::Url(Url::parse("postgres://weft@db.internal:5432/warehouse").unwrap())
        );
        assert_eq!(
            c.password,
            Some(SecretRef::Env("WAREHOUSE_PASSWORD".into()))
        );
        let (c, errs) = decode(
            Dialect::Mysql,
            "type: mysql\nurl: { env: LEGACY_DATABASE_URL }\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            c.unwrap().target,
            Target::UrlFrom(SecretRef::Env("LEGACY_DATABASE_URL".into()))
        );
        let (c, errs) = decode(Dialect::Sqlite, "type: sqlite\npath: data/app.db\n");
        assert!(errs.is_empty(), "{errs:?}");
        let c = c.unwrap();
        assert_eq!(c.target, Target::Path("data/app.db".into()));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn bad_settings_are_reported_with_positions() {
        let (_, errs) = decode(
            Dialect::Postgres,
            "type: postgres\nurl: postgres://ada:hunter2@db/x\npath: x.db\nmax_connections: 0\n",
        );
        assert_eq!(
            errs,
            vec![
                "weft.yaml:2:6: `url` must not carry a password in the file; use `password: { secret: NAME }` (or `{ env: NAME }`), or `url: { secret: NAME }`",
                "weft.yaml:3:7: `path` applies only to sqlite connections; a postgres connection has a `url`",
                "weft.yaml:4:18: `max_connections` must be a whole number from 1 to 1000, found 0",
            ]
        );
        let (_, errs) = decode(Dialect::Mysql, "type: mysql\nurl: postgres://db/x\n");
        assert_eq!(
            errs,
            vec!["weft.yaml:2:6: a mysql connection needs a `mysql://` URL, not `postgres://`"]
        );
        let (_, errs) = decode(
            Dialect::Sqlite,
            "type: sqlite\nurl: sqlite://x\npassword: {env: P}\n",
        );
        assert_eq!(
            errs,
            vec![
                "weft.yaml:1:1: sqlite connection needs `path`",
                "weft.yaml:2:6: a sqlite connection has a `path` (a file), not a `url`",
                "weft.yaml:3:11: `password` does not apply to sqlite connections",
            ]
        );
    }
}
