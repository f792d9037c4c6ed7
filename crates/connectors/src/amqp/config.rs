//! Settings of an `amqp` connection (RabbitMQ, AMQP 0-9-1) in `weft.yaml`, and of a `queue`
//! trigger that consumes a queue; this module is their reference.
//!
//! ```yaml
//! connections:
//!   rabbit:
//!     type: amqp
//!     url: amqp://weft@127.0.0.1:5672/%2f   # user and virtual host; no password in the file
//!     password: { env: RABBIT_PASSWORD }
//!     timeout: 10s                          # connecting, and waiting for a publisher confirm
//! ```
//!
//! A workflow consumes a queue with manual acknowledgements:
//!
//! ```yaml
//! trigger:
//!   queue:
//!     connection: rabbit
//!     queue: orders                  # required; declared durable when missing
//!     prefetch: 50                   # unacknowledged messages the broker sends ahead (default 50)
//!     dead_letter_queue: orders.dead # optional: declared, and `orders` declared to dead-letter into it
//! ```
//!
//! A message that cannot be read is rejected without requeueing (`basic.nack`, `requeue: false`),
//! which RabbitMQ dead-letters when the queue has a dead-letter exchange. `amqps://` (TLS) is not
//! available in this version of Weft yet.

use std::time::Duration;

use reqwest::Url;
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of an `amqp` connection.
pub const KEYS: &[&str] = &["type", "url", "password", "timeout"];
/// Keys of a `queue` trigger on an `amqp` connection.
pub const CONSUME_KEYS: &[&str] = &["queue", "prefetch", "dead_letter_queue"];

/// The default time for connecting and for a publisher confirm.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A RabbitMQ (AMQP 0-9-1) broker.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpConfig {
    /// `amqp://user@host:port/vhost`, without a password.
    pub url: Url,
    /// The user's password, `{ env: NAME }`.
    pub password: Option<SecretRef>,
    /// Longest time for connecting and for a publisher confirm. Default 10s.
    pub timeout: Duration,
}

impl AmqpConfig {
    /// Reads and checks the settings of an `amqp` connection.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<AmqpConfig> {
        let mut f = Fields::new(node, "amqp connection", KEYS, diags)?;
        f.get("type");
        let url = f.require("url", diags).and_then(|n| {
            let text = decode::string(n, "`url`", diags)?;
            match Url::parse(&text) {
                Ok(url) if url.scheme() == "amqps" => {
                    diags.error(n.pos, "AMQP over TLS is not available in this version of Weft yet; use `amqp://`");
                    None
                }
                Ok(url) if url.scheme() != "amqp" => {
                    diags.error(n.pos, format!("an amqp connection needs an `amqp://` URL, not `{}://`", url.scheme()));
                    None
                }
                Ok(url) if url.password().is_some() => {
                    diags.error(n.pos, "`url` must not carry a password in the file; use `password: { env: NAME }`");
                    None
                }
                Ok(url) => Some(url),
                Err(e) => {
                    diags.error(n.pos, format!("`url` is not a valid URL: {e}"));
                    None
                }
            }
        });
        let password = f
            .get("password")
            .and_then(|n| SecretRef::decode(n, "`password`", diags));
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        f.finish(diags);
        Some(AmqpConfig {
            url: url?,
            password,
            timeout,
        })
    }
}

/// A `queue` trigger's settings on an `amqp` connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumeConfig {
    /// The queue consumed.
    pub queue: String,
    /// How many unacknowledged messages the broker sends ahead.
    pub prefetch: u16,
    /// A queue that rejected messages are dead-lettered into, if any.
    pub dead_letter_queue: Option<String>,
}

impl ConsumeConfig {
    /// Reads and checks the connector's keys of a `queue` trigger.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<ConsumeConfig> {
        let mut f = Fields::new(node, "queue trigger (amqp)", CONSUME_KEYS, diags)?;
        let name = |n: &Node, what: &str, diags: &mut Diagnostics| {
            let s = decode::string(n, what, diags)?;
            if s.is_empty() || s.len() > 255 {
                diags.error(n.pos, format!("{what} must be 1 to 255 characters"));
                return None;
            }
            Some(s)
        };
        let queue = f
            .require("queue", diags)
            .and_then(|n| name(n, "`queue`", diags));
        let prefetch = f
            .get("prefetch")
            .and_then(|n| decode::integer(n, "`prefetch`", 1, 65535, diags))
            .map_or(50, |p| p as u16);
        let dead_letter_queue = f
            .get("dead_letter_queue")
            .and_then(|n| name(n, "`dead_letter_queue`", diags));
        f.finish(diags);
        Some(ConsumeConfig {
            queue: queue?,
            prefetch,
            dead_letter_queue,
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
            problems(src, AmqpConfig::decode)
        }
    }

    #[test]
    fn settings_are_checked_with_positions() {
        assert!(
            errors(
                "{type: amqp, url: \"amqp://guest@127.0.0.1:5672/%2f\", password: {env: P}}",
                false
            )
            .is_empty()
        );
        assert_eq!(
            errors("{type: amqp, url: \"amqp://guest:guest@host\"}", false),
            vec![
                "weft.yaml:1:19: `url` must not carry a password in the file; use `password: { env: NAME }`"
            ]
        );
        assert!(
            errors(
                "{queue: orders, prefetch: 10, dead_letter_queue: orders.dead}",
                true
            )
            .is_empty()
        );
        assert_eq!(
            errors("{prefetch: 0}", true),
            vec![
                "weft.yaml:1:1: queue trigger (amqp) needs `queue`",
                "weft.yaml:1:12: `prefetch` must be a whole number from 1 to 65535, found 0",
            ]
        );
    }
}
