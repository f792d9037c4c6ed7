//! The `http` connector: calls HTTP APIs with `uses: <connection>.request`.
//!
//! `config.rs` holds the connection settings, `action.rs` the `request` action, `guard.rs` the
//! refusal of non-public addresses. Every request carries the step's `Idempotency-Key`; timeouts,
//! refused connections, 408, 429 and 5xx answers are retryable (honouring `Retry-After`), other 4xx
//! answers and addresses the guard refuses are fatal.

mod action;
mod config;
pub mod guard;
mod oauth2;

pub use action::{HttpConnector, REQUEST_INPUTS, headers_json, retry_after};
pub use config::{Auth, ClientAuth, Grant, HttpConfig, OAuth2, ServiceAccount};
pub use oauth2::{SignIn, SignInState, token_secret};

use weft_core::catalog::input_keys;
use weft_core::yaml::Node;
use weft_core::{ActionSpec, ConnectorSpec, Diagnostics};

/// The `http` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some(
        "sends GET to the base_url with the connection's credentials; any answer but 401, 403 or a 5xx passes",
    ),
    type_name: "http",
    summary: "An HTTP API: requests with JSON, text or form bodies, bearer, basic or API-key auth.",
    actions: &[ActionSpec {
        name: "request",
        summary: "Sends one HTTP request and returns {status, headers, body}; JSON bodies are parsed.",
        inputs: REQUEST_INPUTS,
        required: &[],
        check_inputs: check_request_inputs,
    }],
    check: |node, diags| {
        HttpConfig::decode(node, diags);
    },
    consume: None,
};

fn check_request_inputs(with: &Node, diags: &mut Diagnostics) {
    let keys = input_keys(with);
    let bodies: Vec<&str> = ["body", "text", "form"]
        .into_iter()
        .filter(|k| keys.contains(k))
        .collect();
    if bodies.len() > 1 {
        diags.error(
            with.pos,
            format!(
                "a request has one body: `{}` and `{}` cannot be used together",
                bodies[0], bodies[1]
            ),
        );
    }
    if keys.contains(&"url") && keys.contains(&"path") {
        diags.error(
            with.pos,
            "give either `url` (a full URL) or `path` (appended to the connection's base_url), not both",
        );
    }
}

#[cfg(test)]
mod tests;
