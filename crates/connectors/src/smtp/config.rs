//! Settings of an `smtp` connection; the example in the module above is their reference.

use std::time::Duration;

use weft_core::Diagnostics;
use weft_core::decode::{self, Fields};
use weft_core::yaml::Node;

use crate::secret::SecretRef;

/// Keys of an `smtp` connection.
pub const KEYS: &[&str] = &[
    "type", "host", "port", "tls", "username", "password", "from", "timeout",
];

/// How the SMTP session is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP, upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// Plain TCP only, for a relay on a trusted network.
    None,
}

/// An SMTP server.
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpConfig {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// How the session is protected. Default `starttls`.
    pub tls: TlsMode,
    /// The login user (not a secret), with `password`.
    pub username: Option<String>,
    /// The login password, `{ env: NAME }`.
    pub password: Option<SecretRef>,
    /// The sender when a step gives none.
    pub from: Option<String>,
    /// Longest time for connecting and for each answer. Default 30s.
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Reads and checks the settings of an `smtp` connection.
    pub fn decode(node: &Node, diags: &mut Diagnostics) -> Option<SmtpConfig> {
        let mut f = Fields::new(node, "smtp connection", KEYS, diags)?;
        f.get("type");
        let host = f.require("host", diags).and_then(|n| {
            let h = decode::string(n, "`host`", diags)?;
            if h.is_empty() || h.contains(['/', ' ', ':']) && !h.starts_with('[') {
                diags.error(
                    n.pos,
                    format!("`{h}` is not a host name; write the port in `port`"),
                );
                return None;
            }
            Some(h)
        });
        let tls = match f.get("tls") {
            None => Some(TlsMode::StartTls),
            Some(n) => match decode::string(n, "`tls`", diags).as_deref() {
                Some("starttls") => Some(TlsMode::StartTls),
                Some("tls") => Some(TlsMode::Tls),
                Some("none") => Some(TlsMode::None),
                Some(other) => {
                    diags.error(
                        n.pos,
                        format!("unknown `tls` `{other}`; use starttls, tls or none"),
                    );
                    None
                }
                None => None,
            },
        };
        let port = f
            .get("port")
            .and_then(|n| decode::integer(n, "`port`", 1, 65535, diags))
            .map(|p| p as u16);
        let username = f
            .get("username")
            .and_then(|n| decode::string(n, "`username`", diags));
        let password = f
            .get("password")
            .and_then(|n| SecretRef::decode(n, "`password`", diags));
        if username.is_some() != password.is_some() {
            diags.error(f.pos(), "`username` and `password` go together");
        }
        let from = f
            .get("from")
            .and_then(|n| decode::string(n, "`from`", diags));
        let timeout = f
            .get("timeout")
            .and_then(|n| decode::duration(n, "`timeout`", diags))
            .unwrap_or(Duration::from_secs(30));
        f.finish(diags);
        let tls = tls?;
        Some(SmtpConfig {
            host: host?,
            port: port.unwrap_or(match tls {
                TlsMode::StartTls => 587,
                TlsMode::Tls => 465,
                TlsMode::None => 25,
            }),
            tls,
            username,
            password,
            from,
            timeout,
        })
    }
}
