//! Settings of a `nats` connection in `weft.yaml`, and of a `queue` trigger that consumes a
//! JetStream stream; this module is their reference.
//!
//! ```yaml
//! connections:
//!   events:
//!     type: nats
//!     url: nats://127.0.0.1:4222          # tls:// for TLS
//!     token: { env: NATS_TOKEN }          # or username + password: { env: NAME }; optional
//!     timeout: 10s                        # connecting, and waiting for a publish acknowledgement
//! ```
//!
//! A workflow consumes a stream with a durable pull consumer:
//!
//! ```yaml
//! trigger:
//!   queue:
//!     connection: events
//!     stream: ORDERS            # required; created with `subject` as its subject when missing
//!     subject: orders.>         # only messages on these subjects (default: all of the stream)
//!     consumer: weft-orders     # the durable consumer (default weft-<workflow>)
//!     deliver: all              # a new consumer starts at the stream's first message (all) or new ones (new)
//!     ack_wait: 30s             # a message not acknowledged this long is delivered again
//! ```

use std::time::Duration;

use reqwest::Url;
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of a `nats` connection.
pub const KEYS: &[&str] = &["type", "url", "token", "username", "password", "timeout"];
/// Keys of a `queue` trigger on a `nats` connection.
pub const CONSUME_KEYS: &[&str] = &["stream", "subject", "consumer", "deliver", "ack_wait"];

/// The default time for connecting and for a publish acknowledgement.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A NATS server with JetStream.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`), without credentials.
    pub url: Url,
    /// A token, `{ env: NAME }`.
    pub token: Option<SecretRef>,
    /// A user name (not a secret), with `password`.
    pub username: Option<String>,
    /// The user's password, `{ env: NAME }`.
    pub password: Option<SecretRef>,
    /// Longest time for connecting and for a publish acknowledgement. Default 10s.
    pub timeout: Duration,
}

impl NatsConfig {
    /// Reads and checks the settings of a `nats` connection.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<NatsConfig> {
        let mut f = Fields::new(node, "nats connection", KEYS, diags)?;
        f.get("type");
        let url = f.require("url", diags).and_then(|n| {
            let text = decode::string(n, "`url`", diags)?;
            match Url::parse(&text) {
                Ok(url) if !matches!(url.scheme(), "nats" | "tls") => {
                    diags.error(
                        n.pos,
                        format!(
                            "a nats connection needs a `nats://` or `tls://` URL, not `{}://`",
                            url.scheme()
                        ),
                    );
                    None
                }
                Ok(url) if url.password().is_some() || !url.username().is_empty() => {
                    diags.error(
                        n.pos,
                        "`url` must not carry credentials in the file; use `token` or `username` and `password: { env: NAME }`",
                    );
                    None
                }
                Ok(url) => Some(url),
                Err(e) => {
                    diags.error(n.pos, format!("`url` is not a valid URL: {e}"));
                    None
                }
            }
        });
        let token = f
            .get("token")
            .and_then(|n| SecretRef::decode(n, "`token`", diags));
        let username = f
            .get("username")
            .and_then(|n| decode::string(n, "`username`", diags));
        let password = f
            .get("password")
            .and_then(|n| SecretRef::decode(n, "`password`", diags));
        if username.is_some() != password.is_some() {
            diags.error(f.pos(), "`username` and `password` go together");
        }
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        f.finish(diags);
        Some(NatsConfig {
            url: url?,
            token,
            username,
            password,
            timeout,
        })
    }
}

/// Where a new consumer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deliver {
    /// At the stream's first message.
    All,
    /// At messages published after the consumer is created.
    New,
}

/// A `queue` trigger's settings on a `nats` connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumeConfig {
    /// The stream consumed.
    pub stream: String,
    /// The subject filter, if any.
    pub subject: Option<String>,
    /// The durable consumer's name; `None` means `weft-<workflow>`.
    pub consumer: Option<String>,
    /// Where a new consumer starts.
    pub deliver: Deliver,
    /// How long an unacknowledged message waits before it is delivered again.
    pub ack_wait: Duration,
}

impl ConsumeConfig {
    /// Reads and checks the connector's keys of a `queue` trigger.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<ConsumeConfig> {
        let mut f = Fields::new(node, "queue trigger (nats)", CONSUME_KEYS, diags)?;
        let name_ok = |s: &str| {
            !s.is_empty()
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        };
        let stream = f.require("stream", diags).and_then(|n| {
            let s = decode::string(n, "`stream`", diags)?;
            if !name_ok(&s) {
                diags.error(
                    n.pos,
                    format!("`{s}` is not a stream name: no spaces, `.`, `*`, `>`, `/` or `\\`"),
                );
                return None;
            }
            Some(s)
        });
        let subject = f.get("subject").and_then(|n| {
            let s = decode::string(n, "`subject`", diags)?;
            if s.is_empty() || s.contains(char::is_whitespace) {
                diags.error(n.pos, format!("`{s}` is not a subject"));
                return None;
            }
            Some(s)
        });
        let consumer = f.get("consumer").and_then(|n| {
            let s = decode::string(n, "`consumer`", diags)?;
            if !name_ok(&s) {
                diags.error(
                    n.pos,
                    format!("`{s}` is not a consumer name: no spaces, `.`, `*`, `>`, `/` or `\\`"),
                );
                return None;
            }
            Some(s)
        });
        let deliver = match f.get("deliver") {
            None => Some(Deliver::All),
            Some(n) => match decode::string(n, "`deliver`", diags).as_deref() {
                Some("all") => Some(Deliver::All),
                Some("new") => Some(Deliver::New),
                Some(other) => {
                    diags.error(
                        n.pos,
                        format!("unknown `deliver` `{other}`; use all or new"),
                    );
                    None
                }
                None => None,
            },
        };
        let ack_wait = f
            .get("ack_wait")
            .and_then(|n| decode::duration(n, "`ack_wait`", diags))
            .unwrap_or(Duration::from_secs(30));
        f.finish(diags);
        Some(ConsumeConfig {
            stream: stream?,
            subject,
            consumer,
            deliver: deliver?,
            ack_wait,
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
            problems(src, NatsConfig::decode)
        }
    }

    #[test]
    fn settings_are_checked_with_positions() {
        assert!(
            errors(
                "{type: nats, url: \"nats://127.0.0.1:4222\", token: {env: T}}",
                false
            )
            .is_empty()
        );
        assert_eq!(
            errors(
                "{type: nats, url: \"nats://ada:pw@host\", username: ada}",
                false
            ),
            vec![
                "weft.yaml:1:1: `username` and `password` go together",
                "weft.yaml:1:19: `url` must not carry credentials in the file; use `token` or `username` and `password: { env: NAME }`",
            ]
        );
        assert!(
            errors(
                "{stream: ORDERS, subject: orders.>, deliver: new, ack_wait: 10s}",
                true
            )
            .is_empty()
        );
        assert_eq!(
            errors("{stream: orders.all, deliver: latest}", true),
            vec![
                "weft.yaml:1:10: `orders.all` is not a stream name: no spaces, `.`, `*`, `>`, `/` or `\\`",
                "weft.yaml:1:31: unknown `deliver` `latest`; use all or new",
            ]
        );
    }
}
