//! Reading definitions, with every problem at its place, and the lint of connections and steps
//! that use a defined connector.

use super::*;
use crate::{Catalog, Project, Sources};

const SHOP: &str = r#"connector: shop
summary: The shop's Admin REST API.
docs: https://shop.example.com/docs/admin
base_url: https://{shop}.shop.example.com/admin/api/{version}
variables:
  shop: { description: "The shop's subdomain" }
  version: { default: "2024-10" }
auth: [api_key, oauth2]
actions:
  get_order:
    summary: Reads one order.
    method: get
    path: /orders/{id}.json
    inputs:
      id: { in: path, schema: { type: integer } }
      fields: { in: query, schema: { type: string }, description: Only these fields }
    response: /order
  list_orders:
    summary: Lists orders.
    method: GET
    path: /orders.json
    inputs:
      status: { in: query, schema: { type: string, enum: [open, closed, any] } }
      limit: { in: query, schema: { type: integer } }
  create_customer:
    summary: Makes a customer.
    method: POST
    path: /customers.json
    inputs:
      customer:
        in: body
        required: true
        schema:
          type: object
          required: [email]
          additionalProperties: false
          properties:
            email: { type: string }
            tags: { type: array, items: { type: string } }
"#;

fn read(text: &str) -> Result<Definition, Vec<String>> {
    let node = crate::yaml::parse(text).unwrap();
    let mut diags = Diagnostics::new("connectors/shop.yaml");
    let def = decode(&node, &mut diags);
    if diags.is_empty() {
        Ok(def.expect("a definition without problems"))
    } else {
        Err(diags.into_vec().iter().map(|d| d.to_string()).collect())
    }
}

#[test]
fn a_definition_reads_with_its_actions_and_inputs() {
    let def = read(SHOP).unwrap();
    assert_eq!(def.type_name, "shop");
    assert_eq!(
        def.base_url,
        "https://{shop}.shop.example.com/admin/api/{version}"
    );
    assert_eq!(def.variables[1].default.as_deref(), Some("2024-10"));
    assert_eq!(def.auth, ["api_key", "oauth2"]);
    let get = def.action("get_order").unwrap();
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", "/orders/{id}.json")
    );
    assert_eq!(get.input_names(), ["id", "fields"]);
    assert_eq!(get.required_names(), ["id"], "a path input is required");
    assert_eq!(get.inputs[1].location, Location::Query);
    assert_eq!(get.response.as_deref(), Some("/order"));
    assert_eq!(
        def.action("create_customer").unwrap().required_names(),
        ["customer"]
    );
}

#[test]
fn problems_are_reported_where_they_are() {
    let text = r#"connector: shop
summary: s
base_url: "{shop}.example.com"
auth: [apikey]
pagination: { cursor: next }
actions:
  get_order:
    summary: s
    method: FETCH
    path: orders/{id}
    inputs:
      order: { in: path }
      q: { in: qurey }
    respons: /order
"#;
    assert_eq!(
        read(text).unwrap_err(),
        [
            "connectors/shop.yaml:3:11: `base_url` must start with https:// or http://, found `{shop}.example.com`",
            "connectors/shop.yaml:3:11: `base_url` uses `{shop}`, which `variables` does not declare",
            "connectors/shop.yaml:4:8: unknown auth type `apikey`; use bearer, basic, api_key, oauth2, service_account",
            "connectors/shop.yaml:5:1: unknown key `pagination` in connector definition; expected one of: connector, summary, docs, base_url, variables, auth, actions, rate_limit, retry_on, errors, triggers",
            "connectors/shop.yaml:9:13: `method` must be one of GET, POST, PUT, PATCH, DELETE, HEAD, found `FETCH`",
            "connectors/shop.yaml:10:11: `path` must start with `/`, found `orders/{id}`",
            "connectors/shop.yaml:10:11: `path` uses `{id}`, which no input with `in: path` declares",
            "connectors/shop.yaml:10:11: input `order` goes into the path, but `path` has no `{order}`",
            "connectors/shop.yaml:13:16: `in` must be path, query, header, body or whole_body, found `qurey`",
            "connectors/shop.yaml:14:5: unknown key `respons` in action `get_order`; did you mean `response`?",
        ]
    );
}

fn project(catalog: &Catalog, connection: &str, step: &str) -> Result<Project, Vec<String>> {
    let mut sources = Sources::new("weft.yaml", format!("connections:\n  shop: {connection}\n"));
    sources.add_workflow(
        "workflows/w.yaml",
        format!("trigger: manual\nsteps:\n  - id: s\n    {step}\n"),
    );
    Project::load(&sources, catalog).map_err(|ds| ds.iter().map(|d| d.to_string()).collect())
}

#[test]
fn connections_and_steps_of_a_defined_type_are_checked_against_it() {
    let mut catalog = Catalog::empty();
    catalog.define(read(SHOP).unwrap()).unwrap();
    let ok = project(
        &catalog,
        "{type: shop, shop: acme, auth: {type: api_key, header: X-Token, value: {env: SHOP_TOKEN}}}",
        "uses: shop.get_order\n    with: { id: 42, fields: \"id,total\" }",
    );
    assert!(ok.is_ok(), "{ok:?}");
    // Expressions are known only when the step runs.
    let ok = project(
        &catalog,
        "{type: shop, shop: acme}",
        "uses: shop.get_order\n    with: { id: \"${{ .input.id }}\" }",
    );
    assert!(ok.is_ok(), "{ok:?}");

    assert_eq!(
        project(
            &catalog,
            "{type: shop, shpo: acme}",
            "uses: shop.list_orders"
        )
        .unwrap_err(),
        [
            "weft.yaml:2:9: a `shop` connection needs `shop` (The shop's subdomain)",
            "weft.yaml:2:22: unknown key `shpo` in a `shop` connection; did you mean `shop`?",
        ]
    );
    assert_eq!(
        project(
            &catalog,
            "{type: shop, shop: acme}",
            "uses: shop.list_orders\n    with: { status: opne, limit: \"10\", fields: x }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:5:21: `with.status` must be one of \"open\", \"closed\", \"any\", found \"opne\"; did you mean `open`?",
            "workflows/w.yaml:5:34: `with.limit` must be a whole number, found a string",
            "workflows/w.yaml:5:40: unknown input `fields` for shop.list_orders; expected one of: status, limit",
        ]
    );
    assert_eq!(
        project(
            &catalog,
            "{type: shop, shop: acme}",
            "uses: shop.create_customer\n    with: { customer: { emial: a@b.c, tags: [vip, 3] } }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:5:23: `with.customer` needs `email`",
            "workflows/w.yaml:5:25: unknown key `emial` in `with.customer`; did you mean `email`?",
            "workflows/w.yaml:5:51: `with.customer.tags[1]` must be a string, found a number",
        ]
    );
    assert_eq!(
        project(
            &catalog,
            "{type: shop, shop: acme, auth: {type: basic, username: a, password: {env: P}}}",
            "uses: shop.list_orders"
        )
        .unwrap_err(),
        ["weft.yaml:2:40: a `shop` connection authenticates with api_key or oauth2, not `basic`"]
    );
    assert_eq!(
        project(&catalog, "{type: shop, shop: acme}", "uses: shop.get_order").unwrap_err(),
        ["workflows/w.yaml:4:11: shop.get_order needs `with.id`"]
    );
}

#[test]
fn a_definition_cannot_take_a_type_that_exists() {
    let mut catalog = Catalog::empty();
    catalog.define(read(SHOP).unwrap()).unwrap();
    assert_eq!(
        catalog.define(read(SHOP).unwrap()).unwrap_err(),
        "connector type `shop` is another definition already; choose another name"
    );
}

#[test]
fn pagination_is_read_and_checked_with_the_pages_a_step_asks_for() {
    let paged = SHOP.replace(
        "      limit: { in: query, schema: { type: integer } }\n",
        "      limit: { in: query, schema: { type: integer } }\n    response: /orders\n    pagination: { style: cursor, param: page_info, next: /next }\n",
    );
    let def = read(&paged).unwrap();
    let list = def.action("list_orders").unwrap();
    assert_eq!(
        list.pagination,
        Some(Pagination::Cursor {
            param: "page_info".into(),
            next: CursorFrom::Body("/next".into()),
            has_more: None
        })
    );
    assert_eq!(list.input_names(), ["status", "limit", "pages"]);
    let mut catalog = Catalog::empty();
    catalog.define(def).unwrap();
    assert!(
        project(
            &catalog,
            "{type: shop, shop: acme}",
            "uses: shop.list_orders\n    with: { pages: 3 }"
        )
        .is_ok()
    );
    assert_eq!(
        project(
            &catalog,
            "{type: shop, shop: acme}",
            "uses: shop.list_orders\n    with: { pages: 0 }"
        )
        .unwrap_err(),
        ["workflows/w.yaml:5:20: `with.pages` must be from 1 to 1000, found 0"]
    );
    assert_eq!(
        project(
            &catalog,
            "{type: shop, shop: acme}",
            "uses: shop.get_order\n    with: { id: 1, pages: 3 }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:5:20: unknown input `pages` for shop.get_order; expected one of: id, fields"
        ]
    );
    let problems = read(&SHOP.replace(
        "    response: /order\n",
        "    pagination: { style: scroll, param: p }\n",
    ))
    .unwrap_err();
    assert_eq!(
        problems,
        [
            "connectors/shop.yaml:17:26: `pagination.style` must be cursor, link, next_url, offset or page, found `scroll`"
        ]
    );
    let problems = read(&SHOP.replace(
        "    response: /order\n",
        "    pagination: { style: link }\n",
    ))
    .unwrap_err();
    assert_eq!(
        problems,
        [
            "connectors/shop.yaml:11:5: action `get_order`: a paginated action needs `response`, the pointer to each page's list of items"
        ]
    );
}

const TRIGGERS: &str = r#"
rate_limit: { requests: 2, per: 1s }
retry_on: [429, 503]
errors: { ok: /ok, message: /error }
triggers:
  order_created:
    summary: An order was placed.
    docs: https://shop.example.com/docs/webhooks
    webhook: { signature: { preset: shopify } }
  order_changed:
    summary: An order changed.
    poll:
      action: list_orders
      every: 5m
      with: { status: any }
      items: ${{ .response }}
      key: ${{ .item.id }}-${{ .item.updated_at }}
      cursor: ${{ [.items[].updated_at] | max }}
"#;

fn workflow(catalog: &Catalog, connection: &str, trigger: &str) -> Result<Project, Vec<String>> {
    let mut sources = Sources::new("weft.yaml", format!("connections:\n  shop: {connection}\n"));
    sources.add_workflow(
        "workflows/w.yaml",
        format!("trigger:\n{trigger}\nsteps:\n  - id: s\n    map: {{ a: 1 }}\n"),
    );
    Project::load(&sources, catalog).map_err(|ds| ds.iter().map(|d| d.to_string()).collect())
}

#[test]
fn a_connectors_triggers_bring_their_settings_to_the_workflows_that_use_them() {
    let def = read(&format!("{SHOP}{TRIGGERS}")).unwrap();
    assert_eq!(def.retry_on, Some(vec![429, 503]));
    assert_eq!(def.errors.as_ref().unwrap().ok, "/ok");
    assert_eq!(
        def.triggers
            .iter()
            .map(|t| (t.name.as_str(), t.kind.name()))
            .collect::<Vec<_>>(),
        [("order_created", "webhook"), ("order_changed", "poll")]
    );
    let mut catalog = Catalog::empty();
    catalog.define(def).unwrap();
    let connection = "{type: shop, shop: acme, webhook_secret: {env: SHOP_HOOK_SECRET}}";
    let p = workflow(
        &catalog,
        connection,
        "  webhook: { uses: shop.order_created, path: shop/orders }",
    )
    .unwrap();
    let crate::Trigger::Webhook(hook) = &p.workflows["w"].trigger else {
        panic!("a webhook")
    };
    assert_eq!(hook.path, "shop/orders");
    let sig = hook.signature.as_ref().unwrap();
    assert_eq!(sig.scheme, crate::trigger::Scheme::Shopify);
    assert_eq!(
        sig.secret,
        crate::secret::SecretRef::Env("SHOP_HOOK_SECRET".into())
    );

    let p = workflow(&catalog, connection, "  poll: { uses: shop.order_changed }").unwrap();
    let crate::Trigger::Poll(poll) = &p.workflows["w"].trigger else {
        panic!("a poll")
    };
    assert_eq!(
        (poll.connection.as_str(), poll.action.as_str()),
        ("shop", "list_orders")
    );
    assert_eq!(poll.every, std::time::Duration::from_secs(300));
    assert!(poll.cursor.is_some());
    let p = workflow(
        &catalog,
        connection,
        "  poll: { uses: shop.order_changed, every: 30s }",
    )
    .unwrap();
    let crate::Trigger::Poll(poll) = &p.workflows["w"].trigger else {
        panic!("a poll")
    };
    assert_eq!(
        poll.every,
        std::time::Duration::from_secs(30),
        "the workflow's own wins"
    );

    assert_eq!(
        workflow(
            &catalog,
            "{type: shop, shop: acme}",
            "  webhook: { uses: shop.order_created }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:2:20: shop.order_created webhooks are signed: connection `shop` needs `webhook_secret`, such as `{ secret: SHOP_WEBHOOK_SECRET }`"
        ]
    );
    assert_eq!(
        workflow(
            &catalog,
            connection,
            "  webhook: { uses: shop.order_create }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:2:20: `uses: shop.order_create` names no webhook trigger: did you mean `shop.order_created`? webhook triggers of it: shop.order_created"
        ]
    );
    assert_eq!(
        workflow(
            &catalog,
            connection,
            "  webhook: { uses: crm.order_created }"
        )
        .unwrap_err(),
        [
            "workflows/w.yaml:2:20: `uses: crm.order_created` names no webhook trigger: there is no connection `crm`"
        ]
    );
}

#[test]
fn bad_triggers_are_reported_in_the_definition() {
    let text = format!(
        "{SHOP}triggers:\n  a:\n    summary: s\n    webhook: {{ signature: {{ preset: shopfy, secret: {{ env: X }} }} }}\n  b:\n    summary: s\n    poll: {{ action: list_order, items: \"${{{{ .response\" }}\n  get_order:\n    summary: s\n    poll: {{ action: list_orders }}\n  c:\n    summary: s\n"
    );
    let problems = read(&text).unwrap_err();
    let expect = [
        "unknown signature preset `shopfy`; did you mean `shopify`?",
        "the secret is each connection's `webhook_secret`, not the definition's",
        "`action`: the definition has no action `list_order`; did you mean `list_orders`?",
        "trigger `get_order` has the name of an action",
        "trigger `c` must be a `webhook` or a `poll`, one of them",
    ];
    for e in expect {
        assert!(problems.iter().any(|p| p.contains(e)), "{e}: {problems:#?}");
    }
}
