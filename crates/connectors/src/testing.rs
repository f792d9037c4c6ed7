//! Helpers the connectors' tests share: unique names on shared servers, waiting for a message,
//! and the lint's messages for a settings text.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft_core::Diagnostics;
use weft_core::yaml::Node;

use crate::{Delivery, Subscription};

/// A name no other test (of this run or an earlier one) uses: `weft-test-<prefix>-<pid>-<n>-<ns>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "weft-test-{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The next message of a subscription, which must come within 10 s.
pub async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message within 10s")
        .expect("the subscription works")
}

/// What `decode` reports for the settings `src`, as `weft.yaml:line:column: message`.
pub fn problems<T>(src: &str, decode: fn(&Node, &mut Diagnostics) -> Option<T>) -> Vec<String> {
    let node = weft_core::yaml::parse(src).unwrap();
    let mut diags = Diagnostics::new("weft.yaml");
    decode(&node, &mut diags);
    diags
        .into_vec()
        .into_iter()
        .map(|d| d.to_string())
        .collect()
}
