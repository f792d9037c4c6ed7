//! Settings of a `redis` connection in `weft.yaml`, and of a `queue` trigger that reads a Redis
//! stream; this module is their reference.
//!
//! ```yaml
//! connections:
//!   cache:
//!     type: redis
//!     url: redis://127.0.0.1:6379/0        # rediss:// for TLS; no password in the file
//!     password: { env: REDIS_PASSWORD }    # optional
//!     timeout: 10s                         # per command (default 10s)
//! ```
//!
//! A workflow consumes a stream with a consumer group:
//!
//! ```yaml
//! trigger:
//!   queue:
//!     connection: cache
//!     stream: orders            # required; created when missing
//!     group: weft               # the consumer group (default weft)
//!     consumer: weft-1          # this hub's name in the group (default weft-<workflow>)
//!     start: all                # a new group reads the stream from its start (all) or only new entries (new)
//!     claim_after: 60s          # entries another consumer left unacknowledged this long are taken over
//!     field: message            # the entry field holding the payload; without it the entry's fields are the input
//! ```

use std::time::Duration;

use reqwest::Url;
use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of a `redis` connection.
pub const KEYS: &[&str] = &["type", "url", "password", "timeout"];
/// Keys of a `queue` trigger on a `redis` connection.
pub const CONSUME_KEYS: &[&str] = &[
    "stream",
    "group",
    "consumer",
    "start",
    "claim_after",
    "field",
];

/// The default time one command may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Redis server, for `get`/`set`/`delete`, `publish` to a channel and `xadd` to a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://…` for TLS, without a password.
    pub url: Url,
    /// The password (or ACL user's password), `{ env: NAME }`.
    pub password: Option<SecretRef>,
    /// Longest time one command may take. Default 10s.
    pub timeout: Duration,
}

impl RedisConfig {
    /// Reads and checks the settings of a `redis` connection.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<RedisConfig> {
        let mut f = Fields::new(node, "redis connection", KEYS, diags)?;
        f.get("type");
        let url = f.require("url", diags).and_then(|n| {
            let text = decode::string(n, "`url`", diags)?;
            let url = match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "redis" | "rediss") => url,
                Ok(url) => {
                    diags.error(
                        n.pos,
                        format!(
                            "a redis connection needs a `redis://` or `rediss://` URL, not `{}://`",
                            url.scheme()
                        ),
                    );
                    return None;
                }
                Err(e) => {
                    diags.error(n.pos, format!("`url` is not a valid URL: {e}"));
                    return None;
                }
            };
            if url.password().is_some() {
                diags.error(
                    n.pos,
                    "`url` must not carry a password in the file; use `password: { secret: NAME }` (or `{ env: NAME }`)",
                );
                return None;
            }
            Some(url)
        });
        let password = f
            .get("password")
            .and_then(|n| SecretRef::decode(n, "`password`", diags));
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(DEFAULT_TIMEOUT);
        f.finish(diags);
        Some(RedisConfig {
            url: url?,
            password,
            timeout,
        })
    }
}

/// Where a new consumer group starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From the stream's first entry.
    All,
    /// From entries added after the group is created.
    New,
}

/// A `queue` trigger's settings on a `redis` connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumeConfig {
    /// The stream read.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// This consumer's name in the group; `None` means `weft-<workflow>`.
    pub consumer: Option<String>,
    /// Where a new group starts.
    pub start: Start,
    /// Idle time after which another consumer's unacknowledged entries are taken over.
    pub claim_after: Duration,
    /// The field that holds the payload.
    pub field: String,
}

impl ConsumeConfig {
    /// Reads and checks the connector's keys of a `queue` trigger.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<ConsumeConfig> {
        let mut f = Fields::new(node, "queue trigger (redis)", CONSUME_KEYS, diags)?;
        let name = |f: &mut Fields<'_>, key: &str, diags: &mut Diagnostics| {
            f.get(key).and_then(|n| {
                let text = decode::string(n, &format!("`{key}`"), diags)?;
                if text.is_empty() {
                    diags.error(n.pos, format!("`{key}` must not be empty"));
                    return None;
                }
                Some(text)
            })
        };
        let stream = if f.has("stream") {
            name(&mut f, "stream", diags)
        } else {
            f.require("stream", diags);
            None
        };
        let group = name(&mut f, "group", diags).unwrap_or_else(|| "weft".into());
        let consumer = name(&mut f, "consumer", diags);
        let start = match f.get("start") {
            None => Some(Start::All),
            Some(n) => match decode::string(n, "`start`", diags).as_deref() {
                Some("all") => Some(Start::All),
                Some("new") => Some(Start::New),
                Some(other) => {
                    diags.error(n.pos, format!("unknown `start` `{other}`; use all or new"));
                    None
                }
                None => None,
            },
        };
        let claim_after = f
            .get("claim_after")
            .and_then(|n| decode::duration(n, "`claim_after`", diags))
            .unwrap_or(Duration::from_secs(60));
        let field = name(&mut f, "field", diags).unwrap_or_else(|| "message".into());
        f.finish(diags);
        Some(ConsumeConfig {
            stream: stream?,
            group,
            consumer,
            start: start?,
            claim_after,
            field,
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
            problems(src, RedisConfig::decode)
        }
    }

    #[test]
    fn settings_are_checked_with_positions() {
        assert!(
            errors(
                "{type: redis, url: \"redis://127.0.0.1:6379/0\", timeout: 5s}",
                false
            )
            .is_empty()
        );
        assert_eq!(
            errors("{type: redis, url: \"redis://:pw@host\"}", false),
            vec![
                "weft.yaml:1:20: `url` must not carry a password in the file; use `password: { secret: NAME }` (or `{ env: NAME }`)"
            ]
        );
        assert_eq!(
            errors("{type: redis, url: \"http://host\"}", false),
            vec![
                "weft.yaml:1:20: a redis connection needs a `redis://` or `rediss://` URL, not `http://`"
            ]
        );
        assert!(
            errors(
                "{stream: orders, group: g, start: new, claim_after: 30s}",
                true
            )
            .is_empty()
        );
        assert_eq!(
            errors("{group: g, start: latest, topic: x}", true),
            vec![
                "weft.yaml:1:1: queue trigger (redis) needs `stream`",
                "weft.yaml:1:19: unknown `start` `latest`; use all or new",
                "weft.yaml:1:27: unknown key `topic` in queue trigger (redis); expected one of: stream, group, consumer, start, claim_after, field",
            ]
        );
    }
}
