//! SQL connections through the real binary: a workflow polls a PostgreSQL table by a keyset cursor
//! and upserts every row into MariaDB; `weft` is killed with SIGKILL in the middle and restarted,
//! and every row arrives exactly once, as one run each.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_connectors::sql::{Dialect, SqlConfig, SqlConnector};
use weft_connectors::{Call, Connector};
use weft_core::Diagnostics;

use crate::hub::Hub;
use crate::support::Project;

const ROWS: usize = 10_000;

fn connector(dialect: Dialect, settings: &str) -> SqlConnector {
    let node = weft_core::yaml::parse(settings).unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let config = SqlConfig::decode(dialect, &node, &mut diags).unwrap();
    SqlConnector::new(config, Path::new("."))
}

async fn sql(db: &SqlConnector, action: &str, input: Value) -> Value {
    db.call(Call {
        action,
        input: input.clone(),
        idempotency_key: "e2e/setup",
        max_output_bytes: 64 << 20,
    })
    .await
    .unwrap_or_else(|e| panic!("{action} {input}: {e}"))
}

async fn count(db: &SqlConnector, table: &str) -> u64 {
    let out = sql(
        db,
        "query",
        json!({"sql": format!("select count(*) as n from {table}")}),
    )
    .await;
    out["rows"][0]["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_table_is_copied_to_mariadb_exactly_across_a_sigkill() {
    if !weft_testkit::service("PostgreSQL", 5432) || !weft_testkit::service("MariaDB", 3306) {
        return;
    }
    let pg_url = "postgres://postgres@127.0.0.1:5432/test";
    let my_url = "mysql://root@127.0.0.1:3306/test";
    let pg = connector(
        Dialect::Postgres,
        &format!("{{type: postgres, url: \"{pg_url}\"}}"),
    );
    let my = connector(
        Dialect::Mysql,
        &format!("{{type: mysql, url: \"{my_url}\"}}"),
    );
    let table = format!("weft_e2e_copy_{}", std::process::id());
    sql(
        &pg,
        "execute",
        json!({"sql": format!("drop table if exists {table}")}),
    )
    .await;
    sql(
        &my,
        "execute",
        json!({"sql": format!("drop table if exists {table}")}),
    )
    .await;
    sql(&pg, "execute", json!({"sql": format!(
        "create table {table} (id bigint primary key, name text not null, amount numeric(10,2), updated_at timestamptz not null)")})).await;
    sql(&my, "execute", json!({"sql": format!(
        "create table {table} (id bigint primary key, name varchar(100) not null, amount decimal(10,2), updated_at datetime(6) not null)")})).await;
    // Seven rows share each timestamp, so a cursor on the timestamp alone would lose or repeat rows.
    sql(&pg, "execute", json!({"sql": format!(
        "insert into {table} select i, 'row ' || i, (i % 1000) / 4.0, timestamptz '2026-01-01 00:00:00+00' + (i / 7) * interval '1 second' \
         from generate_series(1, {ROWS}) as i")})).await;

    let copy = format!(
        r#"trigger:
  poll:
    every: 1s
    uses: src.query
    with:
      sql: "select id, name, amount, updated_at from {table} where (updated_at, id) > ($1::timestamptz, $2::bigint) order by updated_at, id limit 1000"
      params: ['${{{{ .cursor.at // "1970-01-01T00:00:00Z" }}}}', '${{{{ .cursor.id // 0 }}}}']
    items: ${{{{ .response.rows }}}}
    key: ${{{{ .item.id }}}}@${{{{ .item.updated_at }}}}
    cursor: ${{{{ .items | last | if . then {{at: .updated_at, id: .id}} else null end }}}}
steps:
  - id: copy
    uses: dst.upsert
    with:
      table: {table}
      key: [id]
      rows: ${{{{ .input | .updated_at |= (sub("T"; " ") | sub("Z$"; "")) }}}}
"#
    );
    let p = Project::new(
        &format!(
            "connections:\n  src:\n    type: postgres\n    url: {pg_url}\n  dst:\n    type: mysql\n    url: {my_url}\n"
        ),
        &[("copy", &copy)],
    );
    let lint = p.weft(&["lint", "."]).await;
    assert_eq!(lint.code, 0, "{}{}", lint.stdout, lint.stderr);

    let mut hub = Hub::start(p.path(), &[]).await;
    let start = Instant::now();
    loop {
        let n = count(&my, &table).await;
        if n >= 2_500 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {n} rows copied within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    let at_kill = count(&my, &table).await;
    assert!(at_kill < ROWS as u64, "the kill came after the copy ended");

    let hub = Hub::start(p.path(), &[]).await;
    let start = Instant::now();
    while count(&my, &table).await < ROWS as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the copy did not finish within four minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = hub.settle("copy", Duration::from_secs(120)).await;
    assert_eq!(runs.len(), ROWS, "one run per row, none twice");
    assert!(runs.iter().all(|r| r["state"] == "succeeded"));

    // Same rows on both sides, value for value.
    let all = json!({"sql": format!("select id, name, amount from {table} order by id")});
    let from = sql(&pg, "query", all.clone()).await["rows"].clone();
    let to = sql(&my, "query", all).await["rows"].clone();
    assert_eq!(from.as_array().unwrap().len(), ROWS);
    assert_eq!(from, to);
    let stamps = sql(&my, "query", json!({"sql": format!("select count(distinct updated_at) as n, min(updated_at) as lo, max(updated_at) as hi from {table}")})).await;
    assert_eq!(
        stamps["rows"][0],
        json!({"n": ROWS / 7 + 1, "lo": "2026-01-01T00:00:00", "hi": "2026-01-01T00:23:48"})
    );
    sql(
        &pg,
        "execute",
        json!({"sql": format!("drop table {table}")}),
    )
    .await;
    sql(
        &my,
        "execute",
        json!({"sql": format!("drop table {table}")}),
    )
    .await;
}

/// A poll with `listen` runs at once on a NOTIFY, long before its interval, and still takes what
/// is new from its cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_wakes_a_postgres_poll_at_once() {
    if !weft_testkit::service("PostgreSQL", 5432) {
        return;
    }
    let pg_url = "postgres://postgres@127.0.0.1:5432/test";
    let pg = connector(
        Dialect::Postgres,
        &format!("{{type: postgres, url: \"{pg_url}\"}}"),
    );
    let table = format!("weft_e2e_listen_{}", std::process::id());
    let channel = format!("{table}_changed");
    sql(
        &pg,
        "execute",
        json!({"sql": format!("drop table if exists {table}")}),
    )
    .await;
    sql(&pg, "execute", json!({"sql": format!("create table {table} (id bigserial primary key, note text not null)")})).await;
    let watch = format!(
        r#"trigger:
  poll:
    every: 1h
    listen: {channel}
    uses: src.query
    with:
      sql: "select id, note from {table} where id > $1 order by id limit 100"
      params: ['${{{{ .cursor // 0 }}}}']
    items: ${{{{ .response.rows }}}}
    key: ${{{{ .item.id }}}}
    cursor: ${{{{ .items | last | .id // null }}}}
steps:
  - id: note
    map: ${{{{ .input.note }}}}
output: ${{{{ .steps.note }}}}
"#
    );
    let p = Project::new(
        &format!("connections:\n  src:\n    type: postgres\n    url: {pg_url}\n"),
        &[("watch", &watch)],
    );
    let hub = Hub::start(p.path(), &[]).await;
    // Let the first poll (at start) and the listener settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hub.all_runs("watch").await.is_empty());
    for note in ["first", "second"] {
        sql(
            &pg,
            "execute",
            json!({"sql": format!("insert into {table} (note) values ($1)"), "params": [note]}),
        )
        .await;
        sql(
            &pg,
            "query",
            json!({"sql": "select pg_notify($1, $2)", "params": [channel, note]}),
        )
        .await;
        let start = Instant::now();
        loop {
            let runs = hub.all_runs("watch").await;
            if runs
                .iter()
                .any(|r| r["output"] == note && r["state"] == "succeeded")
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no run for `{note}` within 15s of the NOTIFY (the interval is an hour): {runs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(hub.all_runs("watch").await.len(), 2);
    sql(
        &pg,
        "execute",
        json!({"sql": format!("drop table {table}")}),
    )
    .await;
}
