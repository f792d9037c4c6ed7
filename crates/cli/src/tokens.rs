//! `weft tokens create|list|revoke`: the API tokens of a project's hub. A new token's secret is
//! printed once, on standard output; the store keeps only its hash.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::json;
use weft_core::auth::Role;
use weft_store::{Store, StoreError, now_millis};

use crate::{CliError, CmdResult, exit, setup};

/// Creates a token and prints its secret.
pub(crate) async fn create(
    dir: &Path,
    role: &str,
    tools: Option<String>,
    expires: Option<Duration>,
    name: Option<String>,
    json: bool,
) -> CmdResult {
    let role = Role::parse(role).ok_or_else(|| {
        CliError::usage(anyhow!(
            "unknown role `{role}`; use admin, editor, operator, viewer or tool"
        ))
    })?;
    if expires.is_some_and(|d| d.is_zero()) {
        return Err(CliError::usage(anyhow!(
            "--expires must be longer than zero, such as 30d; leave it out for a token that works until revoked"
        )));
    }
    let loaded = setup::load(dir)?;
    let tools = tools.map(|list| list.split(',').map(str::to_string).collect());
    let tools = weft_server::tokens::tools_for(role, tools, &loaded.project)
        .map_err(|e| CliError::usage(anyhow!(e)))?;
    let store = setup::store(&loaded).await?;
    let now = now_millis();
    let expires_at = expires.map(|d| now.saturating_add(d.as_millis() as i64));
    let (secret, record) = weft_server::auth::new_token(role, tools, name, expires_at, None, now);
    store
        .create_token(&record)
        .await
        .map_err(CliError::internal)?;
    let details = json!({"role": role.as_str(), "tools": record.tools, "expires_at": expires_at, "name": record.name});
    weft_server::audit::record(store.as_ref(), "cli", "token.create", &record.id, details).await;
    if json {
        println!(
            "{}",
            json!({"id": record.id, "token": secret, "role": role.as_str(), "tools": record.tools, "expires_at": expires_at})
        );
    } else {
        println!("{secret}");
        eprintln!(
            "Created token {} ({role}). It is shown only now; send it as `Authorization: Bearer <token>`.",
            record.id
        );
    }
    Ok(exit::OK)
}

/// Lists the tokens: ids, roles, dates; never secrets. Console sessions are not listed: they end
/// with their token.
pub(crate) async fn list(dir: &Path, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let mut tokens = store.list_tokens().await.map_err(CliError::internal)?;
    tokens.retain(|t| t.parent.is_none());
    let now = now_millis();
    if json {
        let list: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "role": t.role.as_str(), "tools": t.tools, "name": t.name,
                    "created_at": t.created_at, "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                    "live": t.is_live(now),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(exit::OK);
    }
    for t in &tokens {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if !t.is_live(now) {
            "expired"
        } else {
            "live"
        };
        let tools = t
            .tools
            .as_ref()
            .map(|t| format!(" tools={}", t.join(",")))
            .unwrap_or_default();
        let name = t.name.as_deref().unwrap_or("");
        println!(
            "{}  {:<8} {:<7} {name}{tools}",
            t.id,
            t.role.as_str(),
            state
        );
    }
    Ok(exit::OK)
}

/// Revokes a token.
pub(crate) async fn revoke(dir: &Path, id: &str) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    match weft_server::auth::revoke(store.as_ref(), id, now_millis()).await {
        Ok(true) => {
            weft_server::audit::record(store.as_ref(), "cli", "token.revoke", id, json!({})).await;
            eprintln!("Revoked token {id}.");
            Ok(exit::OK)
        }
        Ok(false) => {
            eprintln!("Token {id} was already revoked.");
            Ok(exit::OK)
        }
        Err(StoreError::NotFound(_)) => Err(CliError::usage(anyhow!(
            "there is no token {id}; `weft tokens list` shows them"
        ))),
        Err(e) => Err(CliError::internal(e)),
    }
}

/// Makes sure a hub about to serve can be reached: see [`weft_server::auth::bootstrap`]. A token
/// made here, and a one-time sign-in link to the console at `listen`, are printed once on
/// standard error.
pub(crate) async fn bootstrap(
    store: &dyn Store,
    listen: std::net::SocketAddr,
    tls: bool,
) -> Result<(), CliError> {
    let from_env = std::env::var("WEFT_ADMIN_TOKEN")
        .ok()
        .filter(|s| !s.is_empty());
    match weft_server::auth::bootstrap(store, from_env, now_millis()).await {
        Ok(Some(first)) => {
            let console = console_address(listen, tls);
            eprintln!(
                "No API token existed, so Weft made an admin token. It is shown only now; keep it:\n\n    {token}\n\nOpen the web console with this link, which signs you in once within the next hour:\n\n    {console}#/sign-in/{link}\n\nAfterwards sign in there with the token, or send it to the API as `Authorization: Bearer <token>`; `weft tokens create` makes more.",
                token = first.token,
                link = first.link,
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(CliError::usage(anyhow!(e))),
    }
}

/// The console's address for a person on this machine: an unspecified listen address (`0.0.0.0`,
/// `::`) is reached through loopback.
fn console_address(listen: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let port = listen.port();
    match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => format!("{scheme}://[::1]:{port}/"),
        ip if ip.is_unspecified() => format!("{scheme}://127.0.0.1:{port}/"),
        std::net::IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{port}/"),
        std::net::IpAddr::V4(ip) => format!("{scheme}://{ip}:{port}/"),
    }
}
