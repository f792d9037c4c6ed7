//! The `smtp` connector against the testkit's SMTP sink on loopback: a multipart message with
//! every kind of recipient and a login, the same Message-ID for a retried step, and 4xx/5xx
//! answers classified as retryable and fatal.

use serde_json::{Value, json};
use weft_core::yaml;
use weft_testkit::smtp::SmtpSink;

use super::*;
use weft_core::Diagnostics;

fn connector(settings: &str) -> SmtpConnector {
    let node = yaml::parse(settings).unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    let config = SmtpConfig::decode(&node, &mut diags).unwrap();
    assert!(diags.is_empty(), "{:?}", diags.into_vec());
    SmtpConnector::new(config)
}

async fn send(c: &SmtpConnector, key: &str, input: Value) -> Result<Value, ActionError> {
    c.call(Call {
        action: "send",
        input,
        idempotency_key: key,
        max_output_bytes: 1 << 20,
    })
    .await
}

#[tokio::test]
async fn sends_multipart_mail_to_every_recipient() {
    let (sink, addr) = SmtpSink::start().await;
    // The sink accepts the password `secret`; the variable holds it as a real setup would.
    let c = connector(&format!(
        "{{type: smtp, host: 127.0.0.1, port: {}, tls: none, username: shop, password: {{env: WEFT_TEST_SMTP_PASSWORD}}, from: \"Shop <shop@example.com>\", timeout: 5s}}",
        addr.port()
    ));
    let input = json!({
        "to": ["Ada Lovelace <ada@example.com>"], "cc": "grace@example.com", "bcc": ["alan@example.com"],
        "reply_to": "help@example.com", "subject": "Your order 7 has shipped",
        "text": "It is on its way.", "html": "<p>It is <b>on its way</b>.</p>",
    });
    let out = send(&c, "run-1/notify", input.clone()).await.unwrap();
    assert_eq!(
        out["recipients"],
        json!(["ada@example.com", "grace@example.com", "alan@example.com"])
    );
    let again = send(&c, "run-1/notify", input).await.unwrap();
    assert_eq!(
        again["message_id"], out["message_id"],
        "a retried step sends the same Message-ID"
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 2);
    let mail = &mails[0];
    assert_eq!(mail.from, "shop@example.com");
    assert_eq!(mail.user.as_deref(), Some("shop"));
    assert_eq!(
        mail.to,
        ["ada@example.com", "grace@example.com", "alan@example.com"]
    );
    for expected in [
        "Subject: Your order 7 has shipped",
        "To: \"Ada Lovelace\" <ada@example.com>",
        "Cc: grace@example.com",
        "Reply-To: help@example.com",
        "Content-Type: multipart/alternative",
        "It is on its way.",
        "<p>It is <b>on its way</b>.</p>",
    ] {
        assert!(mail.data.contains(expected), "{expected} in\n{}", mail.data);
    }
    assert!(
        !mail.data.contains("alan@example.com"),
        "bcc is not in the headers"
    );
    assert!(
        mail.data.contains(&format!(
            "Message-ID: {}",
            out["message_id"].as_str().unwrap()
        )),
        "{}",
        mail.data
    );
}

#[tokio::test]
async fn answers_are_classified_and_bad_input_is_fatal() {
    let (_sink, addr) = SmtpSink::start().await;
    let c = connector(&format!(
        "{{type: smtp, host: 127.0.0.1, port: {}, tls: none, from: shop@example.com, timeout: 5s}}",
        addr.port()
    ));
    let base = |to: &str| json!({"to": to, "subject": "s", "text": "t"});
    let err = send(&c, "k", base("busy@example.com")).await.unwrap_err();
    assert!(err.is_retryable(), "450 is transient: {err}");
    let err = send(&c, "k", base("nobody@example.com")).await.unwrap_err();
    assert!(!err.is_retryable(), "550 is permanent: {err}");
    let err = send(&c, "k", base("not an address")).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .starts_with("`to`: `not an address` is not an email address"),
        "{err}"
    );
    let err = send(&c, "k", json!({"to": "a@example.com", "subject": "s"}))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "send needs `text`, `html` or both");
    let down = connector(
        "{type: smtp, host: 127.0.0.1, port: 1, tls: none, from: a@example.com, timeout: 2s}",
    );
    let err = send(&down, "k", base("a@example.com")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let wrong = connector(&format!(
        "{{type: smtp, host: 127.0.0.1, port: {}, tls: none, username: shop, password: {{env: WEFT_TEST_AMQP_PASSWORD}}, from: a@example.com, timeout: 5s}}",
        addr.port()
    ));
    let err = send(&wrong, "k", base("a@example.com")).await.unwrap_err();
    assert!(!err.is_retryable(), "a refused login is permanent: {err}");
}

#[test]
fn settings_are_checked_with_positions() {
    let node = yaml::parse("{type: smtp, host: \"mail:25\", tls: ssl, username: u}").unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    SmtpConfig::decode(&node, &mut diags);
    let errs: Vec<String> = diags
        .into_vec()
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![
            "weft.yaml:1:1: `username` and `password` go together",
            "weft.yaml:1:20: `mail:25` is not a host name; write the port in `port`",
            "weft.yaml:1:36: unknown `tls` `ssl`; use starttls, tls or none",
        ]
    );
}

#[tokio::test]
async fn a_probe_logs_in_and_a_refused_login_fails_it() {
    let (_sink, addr) = SmtpSink::start().await;
    let c = connector(&format!(
        "{{type: smtp, host: 127.0.0.1, port: {}, tls: none, username: shop, password: {{env: WEFT_TEST_SMTP_PASSWORD}}, timeout: 5s}}",
        addr.port()
    ));
    assert_eq!(
        c.probe().await.unwrap(),
        format!("connected to 127.0.0.1:{} and logged in", addr.port())
    );
    let wrong = connector(&format!(
        "{{type: smtp, host: 127.0.0.1, port: {}, tls: none, username: shop, password: {{env: WEFT_TEST_AMQP_PASSWORD}}, timeout: 5s}}",
        addr.port()
    ));
    let err = wrong.probe().await.unwrap_err();
    assert!(!err.is_retryable(), "a refused login is permanent: {err}");
}
