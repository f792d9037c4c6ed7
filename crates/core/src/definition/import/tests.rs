//! The importer on vendors' own documents, trimmed (OpenAPI 3.0; Discord's OpenAPI 3.1; Docker's
//! Swagger 2.0), and on small documents of the other two shapes written here: each result reads
//! back as a definition without problems.

use std::path::Path;

use super::*;
use crate::diag::Diagnostics;

/// Imports, renders as YAML, reads the YAML back as a definition; the problems, if any, fail.
fn import(doc: &Value, options: &Options) -> (super::super::Definition, Vec<String>) {
    let imported = from_openapi(doc, options).unwrap();
    let text = crate::edit::render_document(imported.definition.as_object().unwrap());
    let node = crate::yaml::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let mut diags = Diagnostics::new("connectors/imported.yaml");
    let definition = super::super::decode(&node, &mut diags);
    let problems: Vec<String> = diags.into_vec().iter().map(|d| d.to_string()).collect();
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    (definition.unwrap(), imported.report)
}

fn vendor(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/openapi")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn vendor_documents_become_definitions_that_read_back() {
    let (github, _) = import(&vendor("github-issues.openapi.json"), &Options::default());
    assert_eq!(github.type_name, "git_hub_v3_rest_api");
    assert_eq!(github.base_url, "https://api.github.com");
    let create = github.action("issues_create").unwrap();
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/repos/{owner}/{repo}/issues")
    );
    assert!(create.required_names().contains(&"owner"));
    assert!(
        create.input_names().contains(&"title"),
        "{:?}",
        create.input_names()
    );

    let (slack, _) = import(&vendor("slack-web.openapi.json"), &Options::default());
    assert!(slack.action("users_lookup_by_email").is_some());
    // chat.postMessage takes a form body.
    let post = slack.action("chat_post_message").unwrap();
    assert!(post.form);
    assert!(
        post.input_names().contains(&"channel"),
        "{:?}",
        post.input_names()
    );

    let (sheets, _) = import(&vendor("sheets-values.openapi.json"), &Options::default());
    assert_eq!(
        sheets.auth,
        ["bearer", "oauth2"],
        "an OAuth2 access token is a bearer token"
    );
    assert_eq!(sheets.actions.len(), 5);

    // Pages where the document makes them plain: GitHub's Link header, Mailchimp's offset.
    let list = github.action("issues_list_for_repo").unwrap();
    assert_eq!(list.pagination, Some(super::super::Pagination::Link));
    assert_eq!(list.response.as_deref(), Some(""));
    assert!(github.action("issues_get").unwrap().pagination.is_none());

    let (mailchimp, _) = import(&vendor("mailchimp-lists.openapi.json"), &Options::default());
    assert_eq!(mailchimp.auth, ["basic"]);
    let members = mailchimp.action("get_lists_id_members").unwrap();
    assert_eq!(
        members.pagination,
        Some(super::super::Pagination::Offset {
            param: "offset".into()
        })
    );
    assert_eq!(members.response.as_deref(), Some("/members"));
    assert_eq!(mailchimp.base_url, "https://server.api.mailchimp.com/3.0");

    let (stripe, _) = import(
        &vendor("stripe-core.openapi.json"),
        &Options {
            name: Some("stripe".into()),
            include: Some(Regex::new("Refund").unwrap()),
        },
    );
    assert_eq!(stripe.type_name, "stripe");
    let names: Vec<&str> = stripe.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["post_refunds", "get_refunds_refund"],
        "only the refunds"
    );
    let refund = stripe.action("post_refunds").unwrap();
    assert!(refund.form, "Stripe takes forms");
    assert!(
        refund.input_names().contains(&"payment_intent"),
        "{:?}",
        refund.input_names()
    );
}

#[test]
fn swagger_two_documents_map_host_body_parameters_and_auth() {
    let doc = json!({
        "swagger": "2.0",
        "info": {"title": "Pet Store", "version": "1.0"},
        "host": "pets.example.com",
        "basePath": "/v2",
        "schemes": ["http", "https"],
        "securityDefinitions": {
            "key": {"type": "apiKey", "in": "header", "name": "X-Key"},
            "login": {"type": "basic"}
        },
        "definitions": {
            "Pet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"},
                "owner": {"$ref": "#/definitions/Pet"}
            }}
        },
        "paths": {
            "/pets/{petId}": {
                "parameters": [{"name": "petId", "in": "path", "required": true, "type": "integer"}],
                "get": {"operationId": "getPetById", "parameters": [
                    {"name": "fields", "in": "query", "type": "string", "enum": ["all", "short"]}
                ]},
                "put": {"operationId": "updatePet", "parameters": [
                    {"name": "pet", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Pet"}}
                ]},
                "post": {"operationId": "uploadPhoto", "parameters": [
                    {"name": "file", "in": "formData", "type": "file"}
                ]}
            }
        }
    });
    let (pets, report) = import(&doc, &Options::default());
    assert_eq!(pets.type_name, "pet_store");
    assert_eq!(pets.base_url, "https://pets.example.com/v2");
    assert_eq!(pets.auth, ["api_key", "basic"]);
    let get = pets.action("get_pet_by_id").unwrap();
    assert_eq!(get.input_names(), ["petId", "fields"]);
    assert_eq!(
        get.inputs[1].schema,
        json!({"type": "string", "enum": ["all", "short"]})
    );
    let put = pets.action("update_pet").unwrap();
    assert_eq!(put.inputs[1].location, super::super::Location::WholeBody);
    assert_eq!(
        put.inputs[1].schema["properties"]["name"],
        json!({"type": "string"})
    );
    assert!(pets.action("upload_photo").is_none());
    assert!(report.iter().any(|l| l.contains("`X-Key`")), "{report:#?}");
    assert!(
        report
            .iter()
            .any(|l| l.contains("parameter `file` in `formData`")),
        "{report:#?}"
    );
}

#[test]
fn openapi_three_one_documents_with_server_variables_and_type_lists() {
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Help Desk", "version": "2"},
        "servers": [{"url": "https://{subdomain}.desk.example.com/api/v2",
                     "variables": {"subdomain": {"default": "acme", "description": "Your account"}}}],
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/tickets": {
                "post": {
                    "summary": "Opens a ticket.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["subject"],
                        "properties": {"subject": {"type": "string"}, "priority": {"type": ["string", "null"]}}
                    }}}}
                }
            }
        }
    });
    let (desk, _) = import(&doc, &Options::default());
    assert_eq!(desk.base_url, "https://{subdomain}.desk.example.com/api/v2");
    assert_eq!(desk.variables[0].default.as_deref(), Some("acme"));
    assert_eq!(desk.auth, ["bearer"]);
    let open = desk.action("post_tickets").unwrap();
    assert_eq!(open.summary, "Opens a ticket.");
    assert_eq!(open.required_names(), ["subject"]);
    assert_eq!(open.inputs[1].schema, json!({"type": ["string", "null"]}));
}

#[test]
fn what_is_not_an_openapi_document_is_refused_with_the_reason() {
    assert!(
        from_openapi(&json!({"hello": 1}), &Options::default())
            .unwrap_err()
            .contains("neither `openapi: 3.x` nor `swagger: \"2.0\"`")
    );
    let narrow = Options {
        name: None,
        include: Some(Regex::new("^nothing$").unwrap()),
    };
    assert!(
        from_openapi(&vendor("sheets-values.openapi.json"), &narrow)
            .unwrap_err()
            .contains("--include")
    );
    assert_eq!(identifier("listIssuesForRepo"), "list_issues_for_repo");
    assert_eq!(identifier("GET /a/{b}.json"), "get_a_b_json");
    assert_eq!(identifier("3D API"), "op_3_d_api");
}

#[test]
fn a_schema_that_fans_out_through_its_references_is_bounded() {
    // Each of 60 properties refers to the schema itself: 60^4 parts at the depth limit.
    let properties: Map<String, Value> = (0..60)
        .map(|i| {
            (
                format!("p{i}"),
                json!({"$ref": "#/components/schemas/Node"}),
            )
        })
        .collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Fan", "version": "1"},
        "servers": [{"url": "https://fan.example.com"}],
        "components": {"schemas": {"Node": {"type": "object", "properties": properties}}},
        "paths": {"/nodes": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Node"}
        }}}}}}
    });
    // The bound is on what is copied (not on time: a busy machine makes any clock test flaky).
    let imported = from_openapi(&doc, &Options::default()).unwrap();
    let copied = serde_json::to_string(&imported.definition).unwrap().len();
    // 50,000 parts of some hundred bytes each, where the whole fan-out (60^4 parts) would be
    // gigabytes.
    assert!(copied < 64 << 20, "{copied} bytes copied");
    assert!(
        imported
            .report
            .iter()
            .any(|l| l.contains("more than 50000 parts")),
        "{:#?}",
        imported.report
    );
}

#[test]
fn discords_openapi_three_one_document_keeps_its_type_lists_and_both_auth_schemes() {
    let (discord, report) = import(
        &vendor("discord-messages-3.1.openapi.json"),
        &Options::default(),
    );
    assert_eq!(discord.type_name, "discord_http_api_preview");
    assert_eq!(discord.base_url, "https://discord.com/api/v10");
    // A bot token as an API key in `Authorization`, and OAuth2 (whose access token is a bearer).
    assert_eq!(discord.auth, ["api_key", "bearer", "oauth2"]);
    assert!(
        report.iter().any(|l| l.contains("`Authorization`")),
        "{report:#?}"
    );
    let names: Vec<&str> = discord.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "list_messages",
            "create_message",
            "get_message",
            "update_message",
            "delete_message",
            "get_my_user"
        ]
    );
    let list = discord.action("list_messages").unwrap();
    assert_eq!(
        list.input_names(),
        ["channel_id", "around", "before", "after", "limit"]
    );
    assert_eq!(list.inputs[0].location, super::super::Location::Path);
    assert_eq!(list.inputs[1].location, super::super::Location::Query);
    assert_eq!(
        list.inputs[1].schema,
        json!({"type": "string", "format": "snowflake"})
    );
    // No `Link` header and no next cursor in the body: no pages.
    assert!(list.pagination.is_none());
    let create = discord.action("create_message").unwrap();
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/channels/{channel_id}/messages")
    );
    // JSON is chosen over the form and multipart bodies the operation also takes.
    assert!(!create.form);
    assert_eq!(create.required_names(), ["channel_id"]);
    let content = create.inputs.iter().find(|i| i.name == "content").unwrap();
    assert_eq!(content.location, super::super::Location::Body);
    assert_eq!(content.schema, json!({"type": ["string", "null"]}));
    let mentions = create
        .inputs
        .iter()
        .find(|i| i.name == "allowed_mentions")
        .unwrap();
    assert_eq!(
        mentions.schema,
        json!({"oneOf": [{"type": "null"}, {"type": "object"}]})
    );
    let update = discord.action("update_message").unwrap();
    assert_eq!(update.method, "PATCH");
    assert_eq!(update.required_names(), ["channel_id", "message_id"]);
    assert!(discord.action("get_my_user").unwrap().inputs.is_empty());
}

#[test]
fn dockers_swagger_two_document_without_a_host_gets_a_host_variable() {
    let (docker, report) = import(&vendor("docker-engine.swagger.json"), &Options::default());
    assert_eq!(docker.type_name, "docker_engine_api");
    // `basePath: /v1.56` and no `host`: the Engine listens wherever it was started.
    assert_eq!(docker.base_url, "https://{host}/v1.56");
    assert_eq!(docker.variables[0].name, "host");
    assert!(docker.variables[0].default.is_none());
    assert!(
        report.iter().any(|l| l.contains("no absolute server URL")),
        "{report:#?}"
    );
    // The Engine API declares no security definitions.
    assert!(docker.auth.is_empty(), "{:?}", docker.auth);
    let names: Vec<&str> = docker.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "container_create",
            "container_list",
            "container_inspect",
            "container_start",
            "container_stop",
            "image_list"
        ]
    );
    let list = docker.action("container_list").unwrap();
    assert_eq!(list.input_names(), ["all", "limit", "size", "filters"]);
    assert_eq!(list.inputs[0].location, super::super::Location::Query);
    assert_eq!(
        list.inputs[0].schema,
        json!({"type": "boolean", "default": false})
    );
    let create = docker.action("container_create").unwrap();
    assert_eq!(create.summary, "Create a container");
    assert_eq!(create.input_names(), ["name", "platform", "body"]);
    // The `in: body` parameter is the whole body, and the document requires it.
    assert_eq!(create.inputs[2].location, super::super::Location::WholeBody);
    assert_eq!(create.required_names(), ["body"]);
    let inspect = docker.action("container_inspect").unwrap();
    assert_eq!(
        (inspect.method.as_str(), inspect.path.as_str()),
        ("GET", "/containers/{id}/json")
    );
    assert_eq!(inspect.inputs[0].location, super::super::Location::Path);
    assert_eq!(inspect.required_names(), ["id"]);
    assert!(
        docker
            .action("image_list")
            .unwrap()
            .input_names()
            .contains(&"shared-size")
    );
}
