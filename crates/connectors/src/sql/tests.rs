//! The SQL connectors against real servers: PostgreSQL on 127.0.0.1:5432 (database `test`),
//! MariaDB on 127.0.0.1:3306 (database `test`) and SQLite in a temporary folder. A test whose server
//! is down is skipped outside CI and fails in CI (see `weft_testkit::service`).

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use weft_core::yaml;

use super::*;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn connector(dialect: Dialect, settings: &str, dir: &Path) -> SqlConnector {
    let node = yaml::parse(settings).unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let config = SqlConfig::decode(dialect, &node, &mut diags).unwrap();
    assert!(diags.is_empty());
    SqlConnector::new(config, dir)
}

fn postgres() -> Option<SqlConnector> {
    weft_testkit::service("PostgreSQL", 5432).then(|| {
        connector(
            Dialect::Postgres,
            &format!("{{type: postgres, url: \"{PG_URL}\", timeout: 10s}}"),
            Path::new("."),
        )
    })
}

fn mariadb() -> Option<SqlConnector> {
    weft_testkit::service("MariaDB", 3306).then(|| {
        connector(
            Dialect::Mysql,
            &format!("{{type: mysql, url: \"{MY_URL}\", timeout: 10s}}"),
            Path::new("."),
        )
    })
}

/// A table name no other test (or earlier run) uses.
fn table(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "weft_{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn call(c: &SqlConnector, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input,
        idempotency_key: "run/step",
        max_output_bytes: 1 << 20,
    })
    .await
}

async fn ok(c: &SqlConnector, action: &str, input: Value) -> Value {
    match call(c, action, input.clone()).await {
        Ok(v) => v,
        Err(e) => panic!("{action} {input}: {e} {}", e.details()),
    }
}

#[tokio::test]
async fn postgres_reads_typed_columns_and_binds_inferred_types() {
    let Some(db) = postgres() else { return };
    let t = table("pg_types");
    ok(&db, "execute", json!({"sql": format!(
        "create table {t} (id int primary key, big bigint, ok bool, price numeric(10,2), huge numeric, \
         ratio float8, name text, doc jsonb, at timestamptz, local timestamp, day date, tags text[], \
         uid uuid, raw bytea, nothing text)")})).await;
    let inserted = ok(&db, "insert", json!({"table": t, "rows": [
        {"id": 1, "big": "9007199254740993", "ok": true, "price": "12.50", "huge": "123456789012345678901234.5",
         "ratio": 0.25, "name": "Ada", "doc": {"a": [1, 2]}, "at": "2026-11-25T12:00:00+01:00",
         "local": "2026-11-25 12:00:00", "day": "2026-11-25", "tags": ["x", "y"],
         "uid": "67e55044-10b1-426f-9247-bb680e5fe0c8", "raw": "aGk=", "nothing": null},
    ]})).await;
    assert_eq!(inserted, json!({"rows_affected": 1}));
    let out = ok(
        &db,
        "query",
        json!({"sql": format!("select * from {t} where id = $1 and at > $2"), "params": ["1", "2026-11-25T10:00:00Z"]}),
    )
    .await;
    assert_eq!(
        out,
        json!({"count": 1, "rows": [{
            "id": 1, "big": 9007199254740993_i64, "ok": true, "price": 12.5,
            "huge": "123456789012345678901234.5", "ratio": 0.25, "name": "Ada", "doc": {"a": [1, 2]},
            "at": "2026-11-25T11:00:00Z", "local": "2026-11-25T12:00:00", "day": "2026-11-25",
            "tags": ["x", "y"], "uid": "67e55044-10b1-426f-9247-bb680e5fe0c8", "raw": "aGk=",
            "nothing": null,
        }]})
    );
    // A list binds to `= any($1)`.
    let out = ok(
        &db,
        "query",
        json!({"sql": format!("select id from {t} where name = any($1)"), "params": [["Ada", "Grace"]]}),
    )
    .await;
    assert_eq!(out["count"], 1);
    ok(&db, "execute", json!({"sql": format!("drop table {t}")})).await;
}

#[tokio::test]
async fn postgres_upserts_in_batches_in_one_transaction() {
    let Some(db) = postgres() else { return };
    let t = table("pg_upsert");
    ok(
        &db,
        "execute",
        json!({"sql": format!("create table {t} (id int primary key, name text not null, n int)")}),
    )
    .await;
    let rows: Vec<Value> = (0..2500)
        .map(|i| json!({"id": i, "name": format!("r{i}"), "n": i}))
        .collect();
    assert_eq!(
        ok(&db, "insert", json!({"table": t, "rows": rows})).await,
        json!({"rows_affected": 2500})
    );
    // Changed names; `n` is not updated; the repeated key 5 keeps its last row.
    let out = ok(
        &db,
        "upsert",
        json!({"table": t, "key": ["id"], "update": ["name"], "rows": [
            {"id": 5, "name": "first", "n": 0}, {"id": 6, "name": "six", "n": 0},
            {"id": 5, "name": "five", "n": 0}, {"id": 9999, "name": "new", "n": 1},
        ]}),
    )
    .await;
    assert_eq!(out, json!({"rows_affected": 3}));
    let out = ok(
        &db,
        "query",
        json!({"sql": format!("select id, name, n from {t} where id in (5, 6, 9999) order by id")}),
    )
    .await;
    assert_eq!(
        out["rows"],
        json!([{"id": 5, "name": "five", "n": 5}, {"id": 6, "name": "six", "n": 6}, {"id": 9999, "name": "new", "n": 1}])
    );
    // A batch that breaks a constraint leaves nothing behind: all rows of a step are one transaction.
    let mut rows: Vec<Value> = (10_000..11_500)
        .map(|i| json!({"id": i, "name": "x", "n": 0}))
        .collect();
    rows.push(json!({"id": 20_000, "name": null, "n": 0}));
    let err = call(&db, "insert", json!({"table": t, "rows": rows}))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().starts_with("postgres error 23502:"),
        "{err}"
    );
    assert_eq!(err.details()["code"], "23502");
    let out = ok(
        &db,
        "query",
        json!({"sql": format!("select count(*) as n from {t} where id >= 10000")}),
    )
    .await;
    assert_eq!(out["rows"][0]["n"], 0);
    ok(&db, "execute", json!({"sql": format!("drop table {t}")})).await;
}

#[tokio::test]
async fn postgres_bad_input_is_a_fatal_error_that_says_what() {
    let Some(db) = postgres() else { return };
    let cases = [
        (
            json!({"sql": "select $1::int as x, $2::int as y", "params": [1]}),
            "the SQL has 2 parameters but `params` has 1 value",
        ),
        (
            json!({"sql": "select $1::int as x", "params": ["seven"]}),
            "parameter $1 (INT4): `seven` is not a whole number",
        ),
        (
            json!({"sql": "select $1::interval as x", "params": ["1 day"]}),
            "parameter $1 (INTERVAL): Weft cannot bind a INTERVAL parameter yet; cast it from text in the SQL, such as `$1::text::interval`",
        ),
        (
            json!({"sql": "select '1 day'::interval as x"}),
            "column `x` (INTERVAL): Weft cannot read INTERVAL values yet; cast the column to text in the SQL, such as `col::text`",
        ),
        (
            json!({"sql": "selec 1"}),
            "postgres error 42601: syntax error at or near \"selec\"",
        ),
        (json!({"sql": 7}), "`sql` must be text, found a number"),
    ];
    for (input, expected) in cases {
        let err = call(&db, "query", input.clone()).await.unwrap_err();
        assert!(!err.is_retryable(), "{input}: {err}");
        assert_eq!(err.to_string(), expected, "{input}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let db = connector(
        Dialect::Postgres,
        "{type: postgres, url: \"postgres://postgres@127.0.0.1:1/test\", timeout: 2s}",
        Path::new("."),
    );
    let err = call(&db, "query", json!({"sql": "select 1"}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let db = connector(
        Dialect::Mysql,
        "{type: mysql, url: \"mysql://root@127.0.0.1:1/test\", timeout: 2s}",
        Path::new("."),
    );
    let err = call(&db, "execute", json!({"sql": "select 1"}))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn mariadb_reads_typed_columns_and_upserts() {
    let Some(db) = mariadb() else { return };
    let t = table("my");
    ok(&db, "execute", json!({"sql": format!(
        "create table {t} (id int primary key, big bigint unsigned, ok boolean, price decimal(10,2), \
         ratio double, name varchar(50), doc json, at datetime(3), day date, raw varbinary(10), nothing text)")})).await;
    let rows: Vec<Value> = (0..1500)
        .map(|i| {
            json!({"id": i, "big": 18446744073709551615_u64, "ok": i % 2 == 0, "price": "12.50",
            "ratio": 0.5, "name": format!("r{i}"), "doc": {"a": i}, "at": "2026-11-25 12:00:00.250",
            "day": "2026-11-25", "raw": "hi", "nothing": null})
        })
        .collect();
    assert_eq!(
        ok(&db, "insert", json!({"table": t, "rows": rows})).await,
        json!({"rows_affected": 1500})
    );
    let out = ok(
        &db,
        "query",
        json!({"sql": format!("select * from {t} where id = ?"), "params": [3]}),
    )
    .await;
    assert_eq!(
        out,
        json!({"count": 1, "rows": [{
            "id": 3, "big": 18446744073709551615_u64, "ok": false, "price": 12.5, "ratio": 0.5,
            "name": "r3", "doc": "{\"a\":3}", "at": "2026-11-25T12:00:00.250", "day": "2026-11-25",
            "raw": "aGk=", "nothing": null,
        }]})
    );
    let out = ok(
        &db,
        "upsert",
        json!({"table": t, "key": "id", "rows": [
            {"id": 3, "name": "three"}, {"id": 5000, "name": "new"},
        ]}),
    )
    .await;
    // MySQL counts an updated row as 2.
    assert_eq!(out, json!({"rows_affected": 3}));
    let out = ok(&db, "query", json!({"sql": format!("select id, name, price from {t} where id in (3, 5000) order by id")})).await;
    assert_eq!(
        out["rows"],
        json!([{"id": 3, "name": "three", "price": 12.5}, {"id": 5000, "name": "new", "price": null}])
    );
    let err = call(
        &db,
        "insert",
        json!({"table": t, "rows": {"id": 3, "name": "dup"}}),
    )
    .await
    .unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.details()["code"], "23000", "{err}");
    let err = call(
        &db,
        "execute",
        json!({"sql": format!("delete from {t} where id = ?")}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the SQL has 1 parameter but `params` has 0 values"
    );
    assert_eq!(
        ok(
            &db,
            "execute",
            json!({"sql": format!("delete from {t} where id < ?"), "params": [10]})
        )
        .await,
        json!({"rows_affected": 10})
    );
    ok(&db, "execute", json!({"sql": format!("drop table {t}")})).await;
}

#[tokio::test]
async fn sqlite_file_relative_to_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let db = connector(Dialect::Sqlite, "{type: sqlite, path: data.db}", dir.path());
    ok(&db, "execute", json!({"sql": "create table t (id integer primary key, ok boolean, ratio real, name text, raw blob)"})).await;
    let out = ok(
        &db,
        "upsert",
        json!({"table": "t", "key": ["id"], "rows": [
            {"id": 1, "ok": true, "ratio": 1.5, "name": "a", "raw": null},
            {"id": 1, "ok": false, "ratio": 2.5, "name": "b", "raw": null},
        ]}),
    )
    .await;
    assert_eq!(out, json!({"rows_affected": 1}));
    let out = ok(
        &db,
        "query",
        json!({"sql": "select * from t where name = ?", "params": ["b"]}),
    )
    .await;
    assert_eq!(
        out,
        json!({"count": 1, "rows": [{"id": 1, "ok": false, "ratio": 2.5, "name": "b", "raw": null}]})
    );
    assert!(dir.path().join("data.db").exists());
    let err = call(&db, "query", json!({"sql": "select * from missing"}))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("no such table: missing"), "{err}");
}

#[tokio::test]
async fn results_over_the_output_limit_fail_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = connector(Dialect::Sqlite, "{type: sqlite, path: big.db}", dir.path());
    let err = db
        .call(Call {
            action: "query",
            input: json!({"sql": "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000) select i from n"}),
            idempotency_key: "run/step",
            max_output_bytes: 1000,
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the result is larger than 1000 bytes"),
        "{err}"
    );
}

#[test]
fn the_lint_keeps_values_out_of_sql_text() {
    let check = |src: &str| {
        let node = yaml::parse(src).unwrap();
        let mut diags = Diagnostics::new("w.yaml");
        check_sql_inputs(&node, &mut diags);
        diags
            .into_vec()
            .into_iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        check("{sql: \"select * from t where id = $1\", params: [\"${{ .input.id }}\"]}")
            .is_empty()
    );
    assert_eq!(
        check("{sql: \"select * from t where id = ${{ .input.id }}\"}"),
        vec![
            "w.yaml:1:7: `sql` must be fixed text: `${{ }}` would splice values into the SQL; bind them with `params` ($1, $2 … on PostgreSQL, ? on MySQL and SQLite) instead"
        ]
    );
    assert_eq!(
        check("{table: \"${{ .input.t }}\", rows: []}"),
        vec![
            "w.yaml:1:9: `table` must be written in the file, not computed: table and column names become part of the SQL text"
        ]
    );
    assert_eq!(
        check("\"${{ .input }}\""),
        vec![
            "w.yaml:1:1: SQL actions need `with` written out as a mapping, so that the SQL text can be checked; put expressions in `params` or `rows`"
        ]
    );
}

#[test]
fn requests_are_checked_before_any_io() {
    let cases = [
        (
            "upsert",
            json!({"table": "t", "rows": []}),
            "upsert needs `with.key`: the columns of a primary key or unique index",
        ),
        (
            "upsert",
            json!({"table": "t", "key": "id", "update": ["x"], "rows": [{"id": 1}]}),
            "`update` names `x`, which is not among the rows' columns [id]",
        ),
        (
            "insert",
            json!({"table": "t", "rows": 3}),
            "`rows` must be an object or a list of objects, found a number",
        ),
        (
            "query",
            json!({"sql": "select 1", "params": {"a": 1}}),
            "`params` must be a list of values, found a mapping",
        ),
        ("query", json!({}), "query needs `with.sql`"),
    ];
    for (action, input, expected) in cases {
        assert_eq!(parse(action, &input).unwrap_err(), expected, "{input}");
    }
}

#[tokio::test]
async fn a_probe_asks_each_database_for_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let lite = connector(
        Dialect::Sqlite,
        "{type: sqlite, path: probe.db}",
        dir.path(),
    );
    let found = lite.probe().await.unwrap();
    assert!(found.starts_with("connected; SQLite 3."), "{found}");
    if let Some(pg) = postgres() {
        let found = pg.probe().await.unwrap();
        assert!(found.starts_with("connected; PostgreSQL "), "{found}");
    }
    if let Some(my) = mariadb() {
        let found = my.probe().await.unwrap();
        assert!(found.starts_with("connected; MySQL-compatible "), "{found}");
    }
    let down = connector(
        Dialect::Postgres,
        "{type: postgres, url: \"postgres://postgres@127.0.0.1:1/test\", timeout: 2s}",
        Path::new("."),
    );
    let err = down.probe().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
