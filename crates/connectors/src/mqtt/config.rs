//! Settings of an `mqtt` connection in `weft.yaml`, and of a `queue` trigger that subscribes to a
//! topic; this module is their reference.
//!
//! ```yaml
//! connections:
//!   plant:
//!     type: mqtt
//!     url: mqtt://127.0.0.1:1883           # over TCP
//!     version: 5                           # 3.1.1 (default) or 5
//!     username: weft                       # optional, with password
//!     password: { env: MQTT_PASSWORD }
//!     client_id: weft-hub-1                # prefix of the client ids this hub uses (default weft)
//!     timeout: 10s                         # connecting, and waiting for a PUBACK
//! ```
//!
//! A workflow subscribes with a persistent session, so that messages published while the hub is
//! down wait for it at the broker:
//!
//! ```yaml
//! trigger:
//!   queue:
//!     connection: plant
//!     topic: plant/+/alarms     # required; wildcards allowed
//!     client_id: weft-alarms    # the session's client id (default <connection client_id>-<workflow>)
//! ```
//!
//! TLS (`mqtts://`) is not available in this version of Weft yet. With MQTT 5 the session is
//! kept for a week after the hub disconnects (session expiry interval).

use std::time::Duration;

use reqwest::Url;
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of an `mqtt` connection.
pub const KEYS: &[&str] = &[
    "type",
    "url",
    "version",
    "username",
    "password",
    "client_id",
    "timeout",
];
/// Keys of a `queue` trigger on an `mqtt` connection.
pub const CONSUME_KEYS: &[&str] = &["topic", "client_id"];

/// The default time for connecting and for a PUBACK.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An MQTT broker.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttConfig {
    /// The broker's host.
    pub host: String,
    /// The broker's port (default 1883).
    pub port: u16,
    /// The protocol version. Default 3.1.1.
    pub version: super::Version,
    /// A user name (not a secret), with `password`.
    pub username: Option<String>,
    /// The user's password, `{ env: NAME }`.
    pub password: Option<SecretRef>,
    /// Prefix of the client ids this hub uses. Default `weft`.
    pub client_id: String,
    /// Longest time for connecting and for a PUBACK. Default 10s.
    pub timeout: Duration,
}

fn client_id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

impl MqttConfig {
    /// Reads and checks the settings of an `mqtt` connection.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<MqttConfig> {
        let mut f = Fields::new(node, "mqtt connection", KEYS, diags)?;
        f.get("type");
        let address = f.require("url", diags).and_then(|n| {
            let text = decode::string(n, "`url`", diags)?;
            let url = match Url::parse(&text) {
                Ok(url) => url,
                Err(e) => {
                    diags.error(n.pos, format!("`url` is not a valid URL: {e}"));
                    return None;
                }
            };
            match url.scheme() {
                "mqtt" | "tcp" => {}
                "mqtts" | "ssl" => {
                    diags.error(n.pos, "MQTT over TLS is not available in this version of Weft yet; use `mqtt://`");
                    return None;
                }
                other => {
                    diags.error(n.pos, format!("an mqtt connection needs an `mqtt://` URL, not `{other}://`"));
                    return None;
                }
            }
            if url.password().is_some() || !url.username().is_empty() {
                diags.error(n.pos, "`url` must not carry credentials in the file; use `username` and `password: { env: NAME }`");
                return None;
            }
            let Some(host) = url.host_str() else {
                diags.error(n.pos, "`url` needs a host, such as `mqtt://127.0.0.1:1883`");
                return None;
            };
            Some((host.trim_matches(['[', ']']).to_string(), url.port().unwrap_or(1883)))
        });
        let version = match f.get("version") {
            None => Some(super::Version::V311),
            Some(n) => match n.to_json() {
                serde_json::Value::String(v) if v == "3.1.1" => Some(super::Version::V311),
                serde_json::Value::String(v) if v == "5" => Some(super::Version::V5),
                serde_json::Value::Number(v) if v.as_u64() == Some(5) => Some(super::Version::V5),
                other => {
                    diags.error(
                        n.pos,
                        format!("unknown MQTT `version` {other}; use 3.1.1 or 5"),
                    );
                    None
                }
            },
        };
        let username = f
            .get("username")
            .and_then(|n| decode::string(n, "`username`", diags));
        let password = f
            .get("password")
            .and_then(|n| SecretRef::decode(n, "`password`", diags));
        if username.is_some() != password.is_some() {
            diags.error(f.pos(), "`username` and `password` go together");
        }
        let client_id = match f.get("client_id") {
            None => Some("weft".to_string()),
            Some(n) => decode::string(n, "`client_id`", diags).filter(|id| {
                let ok = client_id_ok(id);
                if !ok {
                    diags.error(
                        n.pos,
                        "`client_id` must be 1 to 128 visible ASCII characters",
                    );
                }
                ok
            }),
        };
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        f.finish(diags);
        let (host, port) = address?;
        Some(MqttConfig {
            host,
            port,
            version: version?,
            username,
            password,
            client_id: client_id?,
            timeout,
        })
    }
}

/// A `queue` trigger's settings on an `mqtt` connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumeConfig {
    /// The topic filter subscribed to, with QoS 1.
    pub topic: String,
    /// The persistent session's client id; `None` means `<connection client_id>-<workflow>`.
    pub client_id: Option<String>,
}

impl ConsumeConfig {
    /// Reads and checks the connector's keys of a `queue` trigger.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<ConsumeConfig> {
        let mut f = Fields::new(node, "queue trigger (mqtt)", CONSUME_KEYS, diags)?;
        let topic = f.require("topic", diags).and_then(|n| {
            let t = decode::string(n, "`topic`", diags)?;
            let levels: Vec<&str> = t.split('/').collect();
            let bad_wildcard = levels.iter().enumerate().any(|(i, l)| {
                (l.contains('#') && (*l != "#" || i != levels.len() - 1))
                    || (l.contains('+') && *l != "+")
            });
            if t.is_empty() || t.contains('\0') || bad_wildcard {
                diags.error(n.pos, format!("`{t}` is not a topic filter: `+` stands for a whole level, `#` only for the last"));
                return None;
            }
            Some(t)
        });
        let client_id = f.get("client_id").and_then(|n| {
            let id = decode::string(n, "`client_id`", diags)?;
            if !client_id_ok(&id) {
                diags.error(
                    n.pos,
                    "`client_id` must be 1 to 128 visible ASCII characters",
                );
                return None;
            }
            Some(id)
        });
        f.finish(diags);
        Some(ConsumeConfig {
            topic: topic?,
            client_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::problems;

    fn errors(src: &str, consume: bool) -> Vec<String> {
        if consume {
            problems(src, ConsumeConfig::decode)
        } else {
            problems(src, MqttConfig::decode)
        }
    }

    #[test]
    fn settings_are_checked_with_positions() {
        assert!(errors("{type: mqtt, url: \"mqtt://127.0.0.1:1883\"}", false).is_empty());
        assert!(errors("{type: mqtt, url: \"mqtt://h\", version: 5}", false).is_empty());
        assert_eq!(
            errors("{type: mqtt, url: \"mqtt://h\", version: 4}", false),
            vec!["weft.yaml:1:40: unknown MQTT `version` 4; use 3.1.1 or 5"]
        );
        assert_eq!(
            errors("{type: mqtt, url: \"mqtts://host\"}", false),
            vec![
                "weft.yaml:1:19: MQTT over TLS is not available in this version of Weft yet; use `mqtt://`"
            ]
        );
        assert!(errors("{topic: \"plant/+/alarms/#\"}", true).is_empty());
        assert_eq!(
            errors("{topic: \"plant/a#\", client_id: \"\"}", true),
            vec![
                "weft.yaml:1:9: `plant/a#` is not a topic filter: `+` stands for a whole level, `#` only for the last",
                "weft.yaml:1:32: `client_id` must be 1 to 128 visible ASCII characters",
            ]
        );
    }
}
