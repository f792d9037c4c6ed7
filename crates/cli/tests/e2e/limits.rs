//! A connection's `rate_limit` holds across runs of the real hub: six runs calling a connection
//! limited to two requests per second take at least two seconds, and every one succeeds.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::hub::Hub;
use crate::support::Project;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spreads_the_calls_of_many_runs() {
    let (server, addr) = weft_testkit::ScriptedServer::start().await;
    server.script("ping", vec![weft_testkit::Answer::ok(json!({"ok": true}))]);
    let p = Project::new(
        &format!(
            "connections:\n  api:\n    type: http\n    base_url: http://{addr}\n    allow_private_network: true\n    rate_limit: {{ requests: 2, per: 1s, concurrency: 1 }}\n"
        ),
        &[(
            "ping",
            "trigger: webhook\nsteps:\n  - id: call\n    uses: api.request\n    with: { path: /ping }\n",
        )],
    );
    let hub = Hub::start(p.path(), &[]).await;
    let start = Instant::now();
    for n in 0..6 {
        let (status, _) = hub
            .post_hook("ping", &[], &json!({"n": n}).to_string())
            .await;
        assert_eq!(status, 202);
    }
    let runs = hub.settle("ping", Duration::from_secs(30)).await;
    let elapsed = start.elapsed();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["state"] == "succeeded"), "{runs:?}");
    assert_eq!(server.seen("ping").len(), 6);
    assert!(
        elapsed >= Duration::from_secs(2),
        "six calls at two per second took only {elapsed:?}"
    );
}
