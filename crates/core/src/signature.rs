//! Webhook signatures: checking the ones senders put on inbound requests (each preset as its vendor
//! publishes it) and making Standard Webhooks signatures for outbound ones.
//!
//! All of it is HMAC-SHA256 over some arrangement of the raw body, compared in constant time. The
//! functions take the request's headers through a lookup closure so that the core stays free of any
//! HTTP library.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::trigger::{Encoding, Scheme};

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature was refused. The text says what was wrong, never the expected value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("the {0} header is missing")]
    Missing(String),
    /// A header is present but not in the scheme's format.
    #[error("the {header} header is malformed: {reason}")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The signed timestamp is too far from the hub's clock (a replay, or a wrong clock).
    #[error(
        "the signed timestamp is {off_by} s away from the hub's clock, beyond the tolerance of {tolerance} s"
    )]
    Expired {
        /// How far off, in seconds.
        off_by: i64,
        /// The tolerance, in seconds.
        tolerance: i64,
    },
    /// No signature matches the body.
    #[error("the signature does not match the request body")]
    Mismatch,
    /// The configured secret is unusable (such as a `whsec_` secret that is not base64).
    #[error("the webhook's secret is unusable: {0}")]
    BadSecret(String),
}

impl Rejection {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing(_) => "signature_missing",
            Rejection::Malformed { .. } => "signature_malformed",
            Rejection::Expired { .. } => "signature_expired",
            Rejection::Mismatch => "signature_mismatch",
            Rejection::BadSecret(_) => "secret_unusable",
        }
    }
}

fn malformed(header: &str, reason: impl Into<String>) -> Rejection {
    Rejection::Malformed {
        header: header.to_string(),
        reason: reason.into(),
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    mac(key, parts).finalize().into_bytes().to_vec()
}

fn matches(key: &[u8], parts: &[&[u8]], signature: &[u8]) -> bool {
    mac(key, parts).verify_slice(signature).is_ok()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lower-case hexadecimal.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key bytes of a Standard Webhooks secret: the base64 after `whsec_` (a secret without the
/// prefix is read as base64 too).
pub fn standard_webhooks_key(secret: &str) -> Result<Vec<u8>, Rejection> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    BASE64.decode(b64.trim()).map_err(|_| {
        Rejection::BadSecret("a Standard Webhooks secret is `whsec_` followed by base64".into())
    })
}

/// The `webhook-signature` header value for a Standard Webhooks message.
pub fn standard_webhooks_sign(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, Rejection> {
    let key = standard_webhooks_key(secret)?;
    let ts = timestamp.to_string();
    let sig = hmac_sha256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    Ok(format!("v1,{}", BASE64.encode(sig)))
}

/// Checks a request against a signature scheme.
///
/// `header` looks a header up by name (without regard to case) and returns its value; `now` is the
/// hub's clock in seconds since the Unix epoch; `tolerance` is in seconds.
pub fn verify(
    scheme: &Scheme,
    secret: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), Rejection> {
    let need = |name: &str| header(name).ok_or_else(|| Rejection::Missing(name.to_string()));
    let fresh = |ts: i64| {
        // Any i64 may arrive: no subtraction that can overflow.
        let off_by = now.abs_diff(ts);
        if off_by > tolerance.max(0) as u64 {
            Err(Rejection::Expired {
                off_by: i64::try_from(off_by).unwrap_or(i64::MAX),
                tolerance,
            })
        } else {
            Ok(())
        }
    };
    let timestamp = |name: &str, value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| malformed(name, "the timestamp is not whole seconds since 1970"))
    };
    let key = secret.as_bytes();
    match scheme {
        Scheme::StandardWebhooks => {
            let id = need("webhook-id")?;
            let ts_text = need("webhook-timestamp")?;
            let sigs = need("webhook-signature")?;
            let ts = timestamp("webhook-timestamp", &ts_text)?;
            fresh(ts)?;
            let key = standard_webhooks_key(secret)?;
            let ts_text = ts.to_string();
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
            let mut any = false;
            for entry in sigs.split(' ').filter(|e| !e.is_empty()) {
                let Some((version, value)) = entry.split_once(',') else {
                    continue;
                };
                if version != "v1" {
                    continue;
                }
                any = true;
                if let Ok(sig) = BASE64.decode(value)
                    && matches(&key, &parts, &sig)
                {
                    return Ok(());
                }
            }
            if any {
                Err(Rejection::Mismatch)
            } else {
                Err(malformed(
                    "webhook-signature",
                    "no `v1,<base64>` signature in it",
                ))
            }
        }
        Scheme::Github => {
            let value = need("X-Hub-Signature-256")?;
            let hex = value.strip_prefix("sha256=").ok_or_else(|| {
                malformed("X-Hub-Signature-256", "it does not start with `sha256=`")
            })?;
            let sig = hex_decode(hex).ok_or_else(|| {
                malformed("X-Hub-Signature-256", "the signature is not hexadecimal")
            })?;
            matches(key, &[body], &sig)
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
        Scheme::Stripe => {
            let value = need("Stripe-Signature")?;
            let mut ts = None;
            let mut sigs = Vec::new();
            for item in value.split(',') {
                match item.trim().split_once('=') {
                    Some(("t", t)) => ts = Some(timestamp("Stripe-Signature", t)?),
                    Some(("v1", s)) => sigs.push(s.to_string()),
                    _ => {}
                }
            }
            let ts = ts.ok_or_else(|| malformed("Stripe-Signature", "it has no `t=` timestamp"))?;
            if sigs.is_empty() {
                return Err(malformed("Stripe-Signature", "it has no `v1=` signature"));
            }
            fresh(ts)?;
            let ts_text = ts.to_string();
            let parts: [&[u8]; 3] = [ts_text.as_bytes(), b".", body];
            sigs.iter()
                .filter_map(|s| hex_decode(s))
                .any(|sig| matches(key, &parts, &sig))
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
        Scheme::Shopify => {
            let value = need("X-Shopify-Hmac-Sha256")?;
            let sig = BASE64
                .decode(value.trim())
                .map_err(|_| malformed("X-Shopify-Hmac-Sha256", "the signature is not base64"))?;
            matches(key, &[body], &sig)
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
        Scheme::Slack => {
            let ts_text = need("X-Slack-Request-Timestamp")?;
            let value = need("X-Slack-Signature")?;
            let ts = timestamp("X-Slack-Request-Timestamp", &ts_text)?;
            fresh(ts)?;
            let hex = value
                .strip_prefix("v0=")
                .ok_or_else(|| malformed("X-Slack-Signature", "it does not start with `v0=`"))?;
            let sig = hex_decode(hex).ok_or_else(|| {
                malformed("X-Slack-Signature", "the signature is not hexadecimal")
            })?;
            let ts_text = ts.to_string();
            matches(key, &[b"v0:", ts_text.as_bytes(), b":", body], &sig)
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
        Scheme::Zendesk => {
            const SIGNATURE: &str = "X-Zendesk-Webhook-Signature";
            const TIMESTAMP: &str = "X-Zendesk-Webhook-Signature-Timestamp";
            let ts_text = need(TIMESTAMP)?;
            let value = need(SIGNATURE)?;
            let ts: jiff::Timestamp = ts_text
                .trim()
                .parse()
                .map_err(|_| malformed(TIMESTAMP, "the timestamp is not an ISO 8601 time"))?;
            fresh(ts.as_second())?;
            let sig = BASE64
                .decode(value.trim())
                .map_err(|_| malformed(SIGNATURE, "the signature is not base64"))?;
            matches(key, &[ts_text.as_bytes(), body], &sig)
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
        Scheme::Hmac {
            header: name,
            prefix,
            encoding,
        } => {
            let value = need(name)?;
            let text = value
                .strip_prefix(prefix.as_str())
                .ok_or_else(|| malformed(name, format!("it does not start with `{prefix}`")))?;
            let sig = match encoding {
                Encoding::Hex => hex_decode(text.trim()),
                Encoding::Base64 => BASE64.decode(text.trim()).ok(),
            }
            .ok_or_else(|| {
                let kind = match encoding {
                    Encoding::Hex => "hexadecimal",
                    Encoding::Base64 => "base64",
                };
                malformed(name, format!("the signature is not {kind}"))
            })?;
            matches(key, &[body], &sig)
                .then_some(())
                .ok_or(Rejection::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests;
