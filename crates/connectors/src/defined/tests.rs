//! A defined connector against a local server that echoes each request: inputs land in the path,
//! query, headers and body as the definition says, with the connection's credentials, and the
//! output is the part of the response the action names.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::any;
use serde_json::{Value, json};
use weft_core::{Catalog, Project, Sources};

use super::*;

const DEFINITION: &str = r#"connector: shop
summary: A shop's API.
base_url: http://127.0.0.1:{port}/admin/{version}
variables:
  port: { description: "The test server's port" }
  version: { default: v2 }
auth: [bearer]
actions:
  get_order:
    summary: Reads one order.
    method: GET
    path: /orders/{id}.json
    inputs:
      id: { in: path, schema: { type: string } }
      fields: { in: query, schema: { type: string } }
      trace: { in: header, schema: { type: string } }
    response: /echo
  create_customer:
    summary: Makes a customer.
    method: POST
    path: /customers.json
    inputs:
      email: { in: body, required: true, schema: { type: string } }
      tags: { in: body, schema: { type: array } }
  refund:
    summary: Refunds a payment, as a form.
    method: POST
    path: /refunds
    encoding: form
    inputs:
      amount: { in: body, schema: { type: integer } }
      metadata: { in: body, schema: { type: object } }
  replace_note:
    summary: Replaces a note.
    method: PUT
    path: /notes/{id}
    inputs:
      id: { in: path }
      note: { in: whole_body }
"#;

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    axum::Json(json!({"echo": {
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "authorization": header("authorization"),
        "trace": header("trace"),
        "content_type": header("content-type"),
        "body": body,
    }}))
}

async fn serve() -> SocketAddr {
    let app = Router::new().fallback(any(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The project's connection `shop`, of the type `connectors/shop.yaml` defines, built.
fn shop(port: u16) -> DefinedConnector {
    let mut sources = Sources::new(
        "weft.yaml",
        format!(
            "connections:\n  shop:\n    type: shop\n    port: \"{port}\"\n    allow_private_network: true\n    auth: {{type: bearer, token: {{env: WEFT_TEST_OAUTH_SECRET}}}}\n"
        ),
    );
    sources.add_connector("connectors/shop.yaml", DEFINITION);
    let project = Project::load(&sources, &Catalog::empty()).unwrap();
    let Some(weft_core::Spec::Defined(definition)) = project.catalog.get("shop") else {
        panic!("the project defines `shop`");
    };
    DefinedConnector::build(
        definition.clone(),
        &project.connections["shop"],
        &Secrets::new(),
    )
    .unwrap()
}

async fn call(c: &DefinedConnector, action: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action,
        input,
        idempotency_key: "run/step",
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn inputs_go_where_the_action_says_with_the_connections_credentials() {
    let addr = serve().await;
    let c = shop(addr.port());
    let out = call(
        &c,
        "get_order",
        json!({"id": "A/1 b", "fields": "id,total", "trace": "t-1"}),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        json!({
            "method": "GET",
            "path": "/admin/v2/orders/A%2F1%20b.json",
            "query": "fields=id%2Ctotal",
            "authorization": "Bearer s3cret",
            "trace": "t-1",
            "content_type": null,
            "body": "",
        })
    );
    // Without `response`, the whole body.
    let out = call(
        &c,
        "create_customer",
        json!({"email": "ada@example.com", "tags": ["vip"]}),
    )
    .await
    .unwrap();
    assert_eq!(out["echo"]["method"], "POST");
    assert_eq!(
        out["echo"]["body"],
        json!({"email": "ada@example.com", "tags": ["vip"]})
    );
    let out = call(
        &c,
        "refund",
        json!({"amount": 500, "metadata": {"order": "A-1", "tags": ["x", "y"]}}),
    )
    .await
    .unwrap();
    assert_eq!(
        out["echo"]["content_type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        out["echo"]["body"],
        "amount=500&metadata%5Border%5D=A-1&metadata%5Btags%5D%5B0%5D=x&metadata%5Btags%5D%5B1%5D=y"
    );
    let out = call(&c, "replace_note", json!({"id": 7, "note": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(out["echo"]["path"], "/admin/v2/notes/7");
    assert_eq!(out["echo"]["body"], json!([1, 2]));
}

#[tokio::test]
async fn bad_inputs_are_refused_before_anything_is_sent() {
    let c = shop(1);
    for (action, input, message) in [
        (
            "get_order",
            json!({"id": "1", "colour": "red"}),
            "unknown input `colour` for get_order; expected one of: id, fields, trace",
        ),
        (
            "create_customer",
            json!({}),
            "create_customer needs `with.email`",
        ),
        (
            "get_order",
            json!({"id": {"a": 1}}),
            "`with`: no value for `{id}` (a path input must be text or a number)",
        ),
        (
            "delete_everything",
            json!({}),
            "`shop` connections have no action `delete_everything`",
        ),
    ] {
        let err = call(&c, action, input).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn a_variable_may_not_carry_a_url_of_its_own() {
    let mut sources = Sources::new(
        "weft.yaml",
        "connections:\n  shop: {type: shop, port: \"80@evil.example\"}\n",
    );
    sources.add_connector("connectors/shop.yaml", DEFINITION);
    let project = Project::load(&sources, &Catalog::empty()).unwrap();
    let Some(weft_core::Spec::Defined(definition)) = project.catalog.get("shop") else {
        panic!("the project defines `shop`");
    };
    let err = DefinedConnector::build(
        definition.clone(),
        &project.connections["shop"],
        &Secrets::new(),
    )
    .err()
    .unwrap();
    assert!(
        err.starts_with("the `shop` base URL cannot be made"),
        "{err}"
    );
}

const PAGED: &str = r#"connector: paged
summary: Lists in pages, every way APIs page them.
base_url: http://127.0.0.1:{port}
variables:
  port: {}
actions:
  by_cursor:
    summary: Cursor in the body.
    method: GET
    path: /cursor
    inputs:
      limit: { in: query, schema: { type: integer } }
    response: /data
    pagination: { style: cursor, param: after, next: /next, has_more: /has_more }
  by_link:
    summary: Link header.
    method: GET
    path: /link
    response: /items
    pagination: { style: link }
  by_offset:
    summary: Offset.
    method: GET
    path: /offset
    response: /rows
    pagination: { style: offset, param: offset }
  by_page:
    summary: Page number.
    method: GET
    path: /page
    response: /results
    pagination: { style: page, param: p, start: 1 }
  by_last_item:
    summary: The cursor is the last item (Stripe's starting_after).
    method: GET
    path: /cursor
    response: /data
    pagination: { style: cursor, param: after, last: "", has_more: /has_more }
  by_next_url:
    summary: The next page's path is in the body (Salesforce's nextRecordsUrl).
    method: GET
    path: /records
    response: /records
    pagination: { style: next_url, next: /nextRecordsUrl }
  broken:
    summary: The pointer names no list.
    method: GET
    path: /cursor
    response: /has_more
    pagination: { style: cursor, param: after, next: /next }
"#;

/// Seven letters, served two at a time in each paging style.
async fn serve_pages() -> SocketAddr {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    const ALL: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];
    fn slice(from: usize) -> Vec<&'static str> {
        ALL.iter().skip(from).take(2).copied().collect()
    }
    let app = Router::new()
        .route(
            "/records",
            any(|Query(q): Query<HashMap<String, String>>| async move {
                let from: usize = q.get("from").map_or(0, |a| a.parse().unwrap());
                let next = (from + 2 < ALL.len()).then(|| format!("/records?from={}", from + 2));
                axum::Json(json!({"records": slice(from), "nextRecordsUrl": next}))
            }),
        )
        .route(
            "/cursor",
            any(|Query(q): Query<HashMap<String, String>>| async move {
                // A number, or the letter the last page ended with.
                let from: usize = q.get("after").map_or(0, |a| {
                    a.parse().unwrap_or_else(|_| ALL.iter().position(|l| l == a).unwrap() + 1)
                });
                let more = from + 2 < ALL.len();
                axum::Json(json!({"data": slice(from), "has_more": more, "next": (from + 2).to_string()}))
            }),
        )
        .route(
            "/link",
            any(
                |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| async move {
                    let page: usize = q.get("page").map_or(0, |p| p.parse().unwrap());
                    let host = headers["host"].to_str().unwrap().to_string();
                    let mut response = axum::Json(json!({"items": slice(page * 2)})).into_response();
                    if (page + 1) * 2 < ALL.len() {
                        let link = format!(
                            "<http://{host}/link?page={}>; rel=\"next\", <http://{host}/link?page=0>; rel=\"first\"",
                            page + 1
                        );
                        response.headers_mut().insert("link", link.parse().unwrap());
                    }
                    response
                },
            ),
        )
        .route(
            "/offset",
            any(|Query(q): Query<HashMap<String, String>>| async move {
                let from: usize = q["offset"].parse().unwrap();
                axum::Json(json!({"rows": slice(from)}))
            }),
        )
        .route(
            "/page",
            any(|Query(q): Query<HashMap<String, String>>| async move {
                let page: usize = q["p"].parse().unwrap();
                axum::Json(json!({"results": slice((page - 1) * 2)}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn paged(port: u16) -> DefinedConnector {
    let mut sources = Sources::new(
        "weft.yaml",
        format!(
            "connections:\n  paged: {{type: paged, port: \"{port}\", allow_private_network: true}}\n"
        ),
    );
    sources.add_connector("connectors/paged.yaml", PAGED);
    let project = Project::load(&sources, &Catalog::empty()).unwrap();
    let Some(weft_core::Spec::Defined(definition)) = project.catalog.get("paged") else {
        panic!("the project defines `paged`");
    };
    DefinedConnector::build(
        definition.clone(),
        &project.connections["paged"],
        &Secrets::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn every_paging_style_reads_every_page_or_stops_where_the_step_says() {
    let addr = serve_pages().await;
    let c = paged(addr.port());
    let all = json!(["a", "b", "c", "d", "e", "f", "g"]);
    for action in [
        "by_cursor",
        "by_link",
        "by_offset",
        "by_page",
        "by_last_item",
        "by_next_url",
    ] {
        let out = call(&c, action, json!({})).await.unwrap();
        assert_eq!(out["items"], all, "{action}: {out}");
        assert_eq!(out["complete"], true, "{action}: {out}");
        assert_eq!(out["next"], Value::Null, "{action}: {out}");
        let two = call(&c, action, json!({"pages": 2})).await.unwrap();
        assert_eq!(two["items"], json!(["a", "b", "c", "d"]), "{action}: {two}");
        assert_eq!(
            (two["pages"].clone(), two["complete"].clone()),
            (json!(2), json!(false)),
            "{action}"
        );
        assert!(
            !two["next"].is_null(),
            "{action}: what asks for page 3: {two}"
        );
    }
    let out = call(&c, "by_cursor", json!({"pages": 1})).await.unwrap();
    assert_eq!(out["next"], "2", "the cursor to go on from");
    let out = call(&c, "by_last_item", json!({"pages": 1})).await.unwrap();
    assert_eq!(out["next"], "b", "the last item is the cursor");
    let out = call(&c, "by_next_url", json!({"pages": 1})).await.unwrap();
    assert_eq!(out["next"], "/records?from=2");
    let err = call(&c, "broken", json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "broken: the page's `/has_more` is a boolean, not a list"
    );
    let err = call(&c, "by_page", json!({"pages": 0})).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`with.pages` must be a whole number from 1 to 1000"),
        "{err}"
    );
}

#[tokio::test]
async fn the_raw_request_is_there_with_the_connections_credentials() {
    let addr = serve().await;
    // With the build's catalog, whose `http` connector lends its `request` action.
    let mut sources = Sources::new(
        "weft.yaml",
        format!(
            "connections:\n  shop:\n    type: shop\n    port: \"{}\"\n    allow_private_network: true\n    auth: {{type: bearer, token: {{env: WEFT_TEST_OAUTH_SECRET}}}}\n",
            addr.port()
        ),
    );
    sources.add_connector("connectors/shop.yaml", DEFINITION);
    sources.add_workflow(
        "workflows/w.yaml",
        "trigger: manual\nsteps:\n  - id: raw\n    uses: shop.request\n    with: { method: DELETE, path: /orders/9/lock }\n",
    );
    let project = Project::load(&sources, &crate::catalog()).unwrap();
    let Some(weft_core::Spec::Defined(definition)) = project.catalog.get("shop") else {
        panic!("the project defines `shop`");
    };
    let names: Vec<&str> = project
        .catalog
        .get("shop")
        .unwrap()
        .actions()
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(names.last(), Some(&"request"));
    let c = DefinedConnector::build(
        definition.clone(),
        &project.connections["shop"],
        &Secrets::new(),
    )
    .unwrap();
    let out = call(
        &c,
        "request",
        json!({"method": "DELETE", "path": "/orders/9/lock"}),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], 200, "the whole http output: {out}");
    assert_eq!(out["body"]["echo"]["method"], "DELETE");
    assert_eq!(out["body"]["echo"]["path"], "/admin/v2/orders/9/lock");
    assert_eq!(out["body"]["echo"]["authorization"], "Bearer s3cret");
    // Lint knows its inputs like the http connector's.
    let mut bad = sources.clone();
    bad.workflows[0].1 = "trigger: manual\nsteps:\n  - id: raw\n    uses: shop.request\n    with: { method: GET, pth: /x }\n".into();
    let problems: Vec<String> = Project::load(&bad, &crate::catalog())
        .unwrap_err()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        problems,
        ["workflows/w.yaml:5:26: unknown input `pth` for shop.request; did you mean `path`?"]
    );
}

const PICKY: &str = r#"connector: picky
summary: Retries a conflict, not a 503; says failure inside a 200.
base_url: http://127.0.0.1:{port}
variables:
  port: {}
retry_on: [409]
errors: { ok: /ok, message: /error }
rate_limit: { requests: 5, per: 1s }
actions:
  status:
    summary: Answers the status it is asked for.
    method: GET
    path: /status/{code}
    inputs:
      code: { in: path, schema: { type: integer } }
"#;

#[tokio::test]
async fn retry_on_and_errors_classify_the_vendors_answers() {
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let app = Router::new().route(
        "/status/{code}",
        any(|Path(code): Path<u16>| async move {
            let status = StatusCode::from_u16(code).unwrap();
            let body = if code == 200 {
                json!({"ok": false, "error": "channel_not_found"})
            } else if code == 201 {
                json!({"ok": true, "ts": "1.2"})
            } else {
                json!({"ok": false})
            };
            let mut response = (status, axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert("retry-after", "3".parse().unwrap());
            response
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut sources = Sources::new(
        "weft.yaml",
        format!(
            "connections:\n  picky: {{type: picky, port: \"{}\", allow_private_network: true}}\n",
            addr.port()
        ),
    );
    sources.add_connector("connectors/picky.yaml", PICKY);
    let project = Project::load(&sources, &Catalog::empty()).unwrap();
    let Some(weft_core::Spec::Defined(definition)) = project.catalog.get("picky") else {
        panic!("the project defines `picky`");
    };
    assert_eq!(
        definition.rate_limit.as_ref().unwrap().rate,
        Some((5, std::time::Duration::from_secs(1)))
    );
    let c = DefinedConnector::build(
        definition.clone(),
        &project.connections["picky"],
        &Secrets::new(),
    )
    .unwrap();
    match call(&c, "status", json!({"code": 409})).await.unwrap_err() {
        ActionError::Retryable { retry_after, .. } => {
            assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)));
        }
        other => panic!("409 is listed in retry_on: {other:?}"),
    }
    let err = call(&c, "status", json!({"code": 503})).await.unwrap_err();
    assert!(
        matches!(err, ActionError::Fatal { .. }),
        "503 is not in retry_on: {err:?}"
    );
    let err = call(&c, "status", json!({"code": 200})).await.unwrap_err();
    assert!(matches!(err, ActionError::Fatal { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "picky answered 200 but says the call failed: channel_not_found"
    );
    let out = call(&c, "status", json!({"code": 201})).await.unwrap();
    assert_eq!(out["ts"], "1.2");
}
