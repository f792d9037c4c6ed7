//! The `redis` connector: keys with a TTL, channels, and streams, both written by steps and
//! consumed by `queue` triggers with a consumer group.
//!
//! | action | `with:` | output |
//! |---|---|---|
//! | `get` | `key` | `{value}`: text, or `null` when the key does not exist |
//! | `set` | `key`, `value`, `ttl` (`30s`, `1h`…), `only_if` (`absent` or `present`) | `{written}` |
//! | `delete` | `key` | `{deleted}` |
//! | `publish` | `channel`, `message` | `{receivers}` |
//! | `xadd` | `stream`, `message` (stored in the field `message`) or `fields` (an object), `max_len` | `{id}` |
//!
//! Values that are not text are written as JSON text. Refused or lost connections, timeouts and
//! the server's "busy/loading/try again" answers are retryable; a wrong type or a bad argument is
//! fatal. Consuming is in `consume.rs`.

mod config;
mod consume;

pub use config::{ConsumeConfig, RedisConfig, Start};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, IntoConnectionInfo, RetryMethod};
use async_trait::async_trait;
use serde_json::{Value, json};
use weft_core::catalog::input_keys;
use weft_core::yaml::Node;
use weft_core::{ActionSpec, Connection, ConnectorSpec, ConsumeSpec, Diagnostics, json_kind};

use crate::secret::Secrets;
use crate::{ActionError, Call, Connector, Subscription};

/// The `redis` connector's description.
pub static SPEC: ConnectorSpec = ConnectorSpec {
    probe: Some("connects and sends PING"),
    type_name: "redis",
    summary: "A Redis server: keys with a TTL, publishing to channels and streams, stream consumer groups.",
    actions: &[
        ActionSpec {
            name: "get",
            summary: "Reads a key; returns {value}, null when it does not exist.",
            inputs: &["key"],
            required: &["key"],
            check_inputs: weft_core::catalog::no_input_check,
        },
        ActionSpec {
            name: "set",
            summary: "Writes a key, with an optional TTL and condition; returns {written}.",
            inputs: &["key", "value", "ttl", "only_if"],
            required: &["key", "value"],
            check_inputs: weft_core::catalog::no_input_check,
        },
        ActionSpec {
            name: "delete",
            summary: "Deletes a key; returns {deleted}.",
            inputs: &["key"],
            required: &["key"],
            check_inputs: weft_core::catalog::no_input_check,
        },
        ActionSpec {
            name: "publish",
            summary: "Publishes a message to a channel; returns {receivers}.",
            inputs: &["channel", "message"],
            required: &["channel", "message"],
            check_inputs: weft_core::catalog::no_input_check,
        },
        ActionSpec {
            name: "xadd",
            summary: "Appends an entry to a stream; returns {id}.",
            inputs: &["stream", "message", "fields", "max_len"],
            required: &["stream"],
            check_inputs: check_xadd,
        },
    ],
    check: |node, diags| {
        RedisConfig::decode(node, diags);
    },
    consume: Some(ConsumeSpec {
        keys: config::CONSUME_KEYS,
        check: |node, diags| {
            ConsumeConfig::decode(node, diags);
        },
        message_id: Some("the stream entry id"),
    }),
};

fn check_xadd(with: &Node, diags: &mut Diagnostics) {
    let keys = input_keys(with);
    if keys.contains(&"message") == keys.contains(&"fields") && !keys.is_empty() {
        diags.error(
            with.pos,
            "xadd needs one of `message` (stored in the field `message`) or `fields` (an object)",
        );
    }
}

/// A live `redis` connection.
pub struct RedisConnector {
    config: RedisConfig,
    manager: tokio::sync::OnceCell<ConnectionManager>,
    secrets: Secrets,
}

/// A Redis failure as an action error: retryable unless Redis says trying again cannot help.
pub(crate) fn classify(e: ::redis::RedisError) -> ActionError {
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || !matches!(e.retry_method(), RetryMethod::NoRetry);
    let message = format!("redis: {e}");
    if retryable {
        ActionError::retryable(message)
    } else {
        ActionError::fatal(message)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn input_text(input: &Value, key: &str) -> Result<String, ActionError> {
    match input.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(_)) => Err(ActionError::fatal(format!("`{key}` is empty"))),
        Some(other) => Err(ActionError::fatal(format!(
            "`{key}` must be text, found {}",
            json_kind(other)
        ))),
        None => Err(ActionError::fatal(format!("`{key}` is missing"))),
    }
}

impl RedisConnector {
    /// Builds the connector from a connection's settings; nothing connects until the first call.
    pub fn build(connection: &Connection, secrets: &Secrets) -> Result<RedisConnector, String> {
        crate::settings::connection(connection, RedisConfig::decode).map(|config| RedisConnector {
            secrets: secrets.clone(),
            ..RedisConnector::new(config)
        })
    }

    /// Builds the connector from decoded settings.
    pub fn new(config: RedisConfig) -> RedisConnector {
        RedisConnector {
            config,
            manager: tokio::sync::OnceCell::new(),
            secrets: Secrets::new(),
        }
    }

    /// A client for the server, with the password resolved now.
    pub(crate) fn client(&self) -> Result<Client, ActionError> {
        let bad =
            |e: ::redis::RedisError| ActionError::fatal(format!("redis: invalid settings: {e}"));
        let mut info = self
            .config
            .url
            .as_str()
            .into_connection_info()
            .map_err(bad)?;
        if let Some(password) = &self.config.password {
            let password = self.secrets.resolve(password).map_err(ActionError::fatal)?;
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Client::open(info).map_err(bad)
    }

    /// The shared connection for commands, which reconnects by itself.
    pub(crate) async fn manager(&self) -> Result<ConnectionManager, ActionError> {
        self.manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.timeout))
                    .set_response_timeout(Some(self.config.timeout))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(self.client()?, config)
                    .await
                    .map_err(classify)
            })
            .await
            .cloned()
    }

    async fn run(&self, action: &str, input: &Value) -> Result<Value, ActionError> {
        let mut conn = self.manager().await?;
        match action {
            "get" => {
                let key = input_text(input, "key")?;
                let value: Option<String> = ::redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(json!({ "value": value }))
            }
            "set" => {
                let key = input_text(input, "key")?;
                let value = text(input.get("value").unwrap_or(&Value::Null));
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&key).arg(value);
                match input.get("ttl") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => {
                        let ttl = weft_core::duration::parse(s)
                            .map_err(|e| ActionError::fatal(format!("`ttl`: {e}")))?;
                        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                    }
                    Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s > 0) => {
                        cmd.arg("EX").arg(n.as_u64());
                    }
                    Some(other) => {
                        return Err(ActionError::fatal(format!(
                            "`ttl` must be a duration such as `30s` or a number of seconds, found {other}"
                        )));
                    }
                }
                match input.get("only_if").and_then(Value::as_str) {
                    None => {}
                    Some("absent") => {
                        cmd.arg("NX");
                    }
                    Some("present") => {
                        cmd.arg("XX");
                    }
                    Some(other) => {
                        return Err(ActionError::fatal(format!(
                            "`only_if` must be absent or present, not `{other}`"
                        )));
                    }
                }
                let reply: Option<String> = cmd.query_async(&mut conn).await.map_err(classify)?;
                Ok(json!({ "written": reply.is_some() }))
            }
            "delete" => {
                let key = input_text(input, "key")?;
                let n: u64 = ::redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(json!({ "deleted": n }))
            }
            "publish" => {
                let channel = input_text(input, "channel")?;
                let message = text(input.get("message").unwrap_or(&Value::Null));
                let n: u64 = ::redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(message)
                    .query_async(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(json!({ "receivers": n }))
            }
            "xadd" => {
                let stream = input_text(input, "stream")?;
                let mut cmd = ::redis::cmd("XADD");
                cmd.arg(&stream);
                match input.get("max_len") {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n)) if n.as_u64().is_some() => {
                        cmd.arg("MAXLEN").arg("~").arg(n.as_u64());
                    }
                    Some(other) => {
                        return Err(ActionError::fatal(format!(
                            "`max_len` must be a whole number, found {other}"
                        )));
                    }
                }
                cmd.arg("*");
                match (input.get("message"), input.get("fields")) {
                    (Some(message), None) => {
                        cmd.arg("message").arg(text(message));
                    }
                    (None, Some(Value::Object(fields))) if !fields.is_empty() => {
                        for (k, v) in fields {
                            cmd.arg(k).arg(text(v));
                        }
                    }
                    _ => {
                        return Err(ActionError::fatal(
                            "xadd needs `message`, or `fields` as a non-empty object (not both)",
                        ));
                    }
                }
                let id: String = cmd.query_async(&mut conn).await.map_err(classify)?;
                Ok(json!({ "id": id }))
            }
            other => Err(ActionError::fatal(format!(
                "redis connections have no action `{other}`"
            ))),
        }
    }
}

#[async_trait]
impl Connector for RedisConnector {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        match tokio::time::timeout(self.config.timeout * 2, self.run(call.action, &call.input))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(ActionError::retryable(format!(
                "redis: {} did not finish within {:?}",
                call.action,
                self.config.timeout * 2
            ))),
        }
    }

    async fn probe(&self) -> Result<String, ActionError> {
        let ping = async {
            let mut conn = self.manager().await?;
            ::redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(classify)
        };
        match tokio::time::timeout(self.config.timeout * 2, ping).await {
            Ok(Ok(pong)) => Ok(format!("connected; the server answered PING with {pong}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ActionError::retryable(format!(
                "redis: no answer to PING within {:?}",
                self.config.timeout * 2
            ))),
        }
    }

    async fn subscribe(
        &self,
        consumer: &str,
        settings: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        consume::subscribe(self, consumer, settings).await
    }
}

#[cfg(test)]
mod tests;
