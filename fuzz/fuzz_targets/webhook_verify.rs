//! Fuzz target: `signature::verify` on any request headers, body and secret, under each scheme.
//!
//! The input is text-shaped so that seeds stay readable (see `corpus/webhook_verify/seed-*`):
//!
//! ```text
//! <scheme>                      standard-webhooks | github | stripe | shopify | slack
//!                               | hmac <header> <hex|base64> [prefix]
//! <now> <tolerance>             the hub's clock and the configured tolerance, in seconds, or `-`
//! <secret>
//! <Header-Name>: <value>        any number of header lines
//!                               a blank line
//! <body>                        raw bytes, to the end
//! ```
//!
//! Headers, body and secret are the sender's or the configuration's and may be anything. The clock
//! and the tolerance are the hub's own, so they stay in the range a real hub passes (whole seconds
//! that fit in a `u32`; defaults when the line does not parse, such as `-`). Verifying must end in
//! `Ok` or a `Rejection`, never in a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::signature::verify;
use weft_core::trigger::{Encoding, Scheme};

/// The scheme a first line names, or `None`.
fn scheme(line: &str) -> Option<Scheme> {
    let mut words = line.split(' ');
    Some(match words.next()? {
        "standard-webhooks" => Scheme::StandardWebhooks,
        "github" => Scheme::Github,
        "stripe" => Scheme::Stripe,
        "shopify" => Scheme::Shopify,
        "slack" => Scheme::Slack,
        "hmac" => {
            let header = words.next()?.to_string();
            let encoding = match words.next()? {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                _ => return None,
            };
            let prefix = words.next().unwrap_or("").to_string();
            Scheme::Hmac {
                header,
                prefix,
                encoding,
            }
        }
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    // Head (text) and body (bytes) part at the first blank line.
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.split('\n');
    let Some(scheme) = lines.next().and_then(scheme) else {
        return;
    };
    let mut clock = lines.next().unwrap_or("").split(' ');
    let mut seconds = |default: u32| -> i64 {
        i64::from(
            clock
                .next()
                .and_then(|w| w.parse::<u32>().ok())
                .unwrap_or(default),
        )
    };
    let now = seconds(1_700_000_000);
    let tolerance = seconds(300);
    let secret = lines.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.strip_prefix(' ').unwrap_or(value)))
        .collect();
    // As the server looks headers up: by name without regard to case, the first one found.
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_string())
    };
    if let Err(rejection) = verify(&scheme, secret, &header, body, now, tolerance) {
        std::hint::black_box((rejection.reason(), rejection.to_string()));
    }
});
