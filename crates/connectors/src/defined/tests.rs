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
