//! The conformance suite every consuming connector runs, through the real binary against the real
//! broker: each message becomes one completed run under normal operation, a malformed message is
//! rejected with a logged reason without stopping the consumer, every message still becomes a
//! completed run after a SIGKILL of `weft` in the middle of a stream (exactly one where the broker
//! gives a message id), and consuming resumes after the broker restarts.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_connectors::{Call, Connector};

use crate::hub::Hub;
use crate::support::{Project, free_port};

/// Publishes one raw payload.
type Publish = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A broker under test: how a connection to it is written, which trigger settings consume a fresh
/// destination of its own, and how a test publishes to that destination.
struct Broker {
    /// The connection's settings in weft.yaml, indented under the connection's name.
    connection: String,
    /// The `queue` trigger's connector keys, as a YAML flow mapping body (`stream: x, group: g`).
    settings: String,
    /// Publishes one raw payload to the destination.
    publish: Publish,
    /// Whether the broker gives messages an id that survives redelivery.
    has_id: bool,
    /// Makes the destination exist before anything is published to it.
    prepare: Prepare,
}

/// Makes a destination exist.
type Prepare = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn nothing_to_prepare() -> Prepare {
    Box::new(|| Box::pin(async {}))
}

/// Makes the destination exist as the hub's consumer will: subscribes once with the same
/// settings (which creates a NATS stream, declares a RabbitMQ queue, opens an MQTT session),
/// trying again for a while as a broker may still be starting.
fn subscribe_first(c: Arc<dyn Connector>, settings: Value) -> Prepare {
    Box::new(move || {
        let c = c.clone();
        let settings = settings.clone();
        Box::pin(async move {
            let mut tries = 0;
            while let Err(e) = c.subscribe("e2e-setup", &settings).await {
                tries += 1;
                assert!(tries < 80, "cannot prepare the destination: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    })
}

/// A name no other test (of this run or an earlier one) uses.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "weft-e2e-{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
}

/// A connector for publishing from the test, built from the same settings the hub gets.
fn publisher(type_name: &str, settings: &str) -> Arc<dyn Connector> {
    let node = weft_core::yaml::parse(settings).unwrap();
    let connection = weft_core::Connection {
        name: "q".into(),
        type_name: type_name.into(),
        node,
        pos: weft_core::yaml::Pos { line: 1, col: 1 },
        rate_limit: None,
    };
    weft_connectors::Registry::connect(&connection, Path::new("."), &Default::default()).unwrap()
}

/// Calls an action, trying again for a while when the broker is away (it may be restarting).
async fn act(c: &Arc<dyn Connector>, action: &str, input: Value) -> Value {
    let mut tries = 0;
    loop {
        let call = Call {
            action,
            input: input.clone(),
            idempotency_key: "e2e/publish",
            max_output_bytes: 1 << 20,
        };
        match c.call(call).await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{action} {input}: {e}"),
        }
    }
}

fn redis_broker(port: u16) -> Broker {
    let stream = unique("redis");
    let url = format!("redis://127.0.0.1:{port}/0");
    let c = publisher("redis", &format!("{{type: redis, url: \"{url}\"}}"));
    let target = stream.clone();
    Broker {
        connection: format!("type: redis\n    url: {url}\n"),
        settings: format!("stream: {stream}, group: weft, claim_after: 5s"),
        publish: Box::new(move |payload| {
            let c = c.clone();
            let stream = target.clone();
            Box::pin(async move {
                act(&c, "xadd", json!({"stream": stream, "message": payload})).await;
            })
        }),
        has_id: true,
        prepare: nothing_to_prepare(),
    }
}

fn nats_broker(port: u16) -> Broker {
    let stream = unique("nats").replace('-', "_");
    let url = format!("nats://127.0.0.1:{port}");
    let c = publisher("nats", &format!("{{type: nats, url: \"{url}\"}}"));
    let subject = format!("{stream}.in");
    let target = subject.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let setup = c.clone();
    let settings = json!({"stream": stream, "subject": subject});
    Broker {
        connection: format!("type: nats\n    url: {url}\n"),
        settings: format!("stream: {stream}, subject: {subject}, ack_wait: 5s"),
        publish: Box::new(move |payload| {
            let c = c.clone();
            let subject = target.clone();
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                act(
                    &c,
                    "publish",
                    json!({"subject": subject, "message": payload, "msg_id": format!("m{n}")}),
                )
                .await;
            })
        }),
        has_id: true,
        prepare: subscribe_first(setup, settings),
    }
}

fn mqtt_broker(port: u16) -> Broker {
    mqtt_version_broker(port, "3.1.1")
}

fn mqtt_version_broker(port: u16, version: &str) -> Broker {
    let topic = unique("mqtt");
    let url = format!("mqtt://127.0.0.1:{port}");
    let c = publisher(
        "mqtt",
        &format!("{{type: mqtt, url: \"{url}\", version: \"{version}\"}}"),
    );
    let setup = c.clone();
    let client_id = unique("mqtt-session");
    let settings = json!({"topic": format!("{topic}/#"), "client_id": client_id});
    let target = format!("{topic}/in");
    Broker {
        connection: format!("type: mqtt\n    url: {url}\n    version: \"{version}\"\n"),
        settings: format!("topic: \"{topic}/#\", client_id: {client_id}"),
        publish: Box::new(move |payload| {
            let c = c.clone();
            let topic = target.clone();
            Box::pin(async move {
                act(&c, "publish", json!({"topic": topic, "message": payload})).await;
            })
        }),
        has_id: false,
        prepare: subscribe_first(setup, settings),
    }
}

fn amqp_broker(port: u16) -> Broker {
    let queue = unique("amqp");
    let url = format!("amqp://guest@127.0.0.1:{port}/%2f");
    let connection =
        format!("{{type: amqp, url: \"{url}\", password: {{env: WEFT_TEST_AMQP_PASSWORD}}}}");
    let c = publisher("amqp", &connection);
    let setup = c.clone();
    let settings = json!({"queue": queue});
    let target = queue.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Broker {
        connection: format!(
            "type: amqp\n    url: {url}\n    password: {{ env: WEFT_TEST_AMQP_PASSWORD }}\n"
        ),
        settings: format!("queue: {queue}, prefetch: 50"),
        publish: Box::new(move |payload| {
            let c = c.clone();
            let queue = target.clone();
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                act(&c, "publish", json!({"routing_key": queue, "message": payload, "message_id": format!("m{n}")})).await;
            })
        }),
        has_id: true,
        prepare: subscribe_first(setup, settings),
    }
}

fn project(broker: &Broker) -> Project {
    Project::new(
        &format!("connections:\n  q:\n    {}", broker.connection),
        &[(
            "consume",
            &format!(
                "trigger:\n  queue: {{ connection: q, {} }}\nsteps:\n  - id: n\n    map: ${{{{ .input.n }}}}\noutput: ${{{{ .steps.n }}}}\n",
                broker.settings
            ),
        )],
    )
}

/// Waits until `n` messages have completed runs.
async fn wait_for(hub: &Hub, n: usize, limit: Duration) -> BTreeMap<i64, usize> {
    let start = Instant::now();
    let mut last = BTreeMap::new();
    loop {
        if let Some(counts) = outputs_settled(hub).await {
            if counts.len() >= n {
                return counts;
            }
            last = counts;
        }
        assert!(
            start.elapsed() < limit,
            "{n} messages did not become completed runs within {limit:?}; {} did: {:?}; the hub logged: {:?}",
            last.len(),
            last.keys().collect::<Vec<_>>(),
            hub.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l["level"] != "DEBUG")
                .map(|l| l["message"].to_string() + " " + &l["error"].to_string())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many completed runs each message number has, once no run is unfinished.
async fn outputs_settled(hub: &Hub) -> Option<BTreeMap<i64, usize>> {
    let runs = hub.all_runs("consume").await;
    let mut counts = BTreeMap::new();
    for run in runs {
        if run["state"] != "succeeded" {
            assert!(
                ["queued", "running"].contains(&run["state"].as_str().unwrap()),
                "{run}"
            );
            return None;
        }
        assert_eq!(run["trigger"]["type"], "queue");
        *counts.entry(run["output"].as_i64().unwrap()).or_default() += 1;
    }
    Some(counts)
}

/// Under normal operation every message is one completed run, and a malformed one in the middle
/// is rejected with its reason logged while the rest go on.
async fn delivers_each_message_once(broker: Broker) {
    let p = project(&broker);
    (broker.prepare)().await;
    let hub = Hub::start(p.path(), &[]).await;
    for n in 0..50 {
        (broker.publish)(json!({"n": n}).to_string()).await;
    }
    (broker.publish)("not json {".to_string()).await;
    for n in 50..100 {
        (broker.publish)(json!({"n": n}).to_string()).await;
    }
    let counts = wait_for(&hub, 100, Duration::from_secs(60)).await;
    assert_eq!(counts.len(), 100);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    let rejected = hub.log.lock().unwrap().iter().any(|l| {
        l["message"] == "Rejected a message that cannot be read."
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("the payload is not JSON"))
    });
    assert!(
        rejected,
        "the malformed message's rejection is logged with its reason"
    );
}

/// A SIGKILL in the middle of a stream of 1,000 messages: after a restart every message is a
/// completed run; duplicates only where the broker has no message id.
async fn survives_a_sigkill_mid_stream(broker: Broker) {
    let p = project(&broker);
    (broker.prepare)().await;
    let broker = Arc::new(broker);
    let mut hub = Hub::start(p.path(), &[]).await;
    let publisher = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for n in 0..1000 {
                (broker.publish)(json!({"n": n}).to_string()).await;
            }
        })
    };
    let start = Instant::now();
    let mut started = 0;
    while started < 150 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no runs started; the hub logged: {:?}",
            hub.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l["level"] != "DEBUG")
                .take(20)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        started = hub.all_runs("consume").await.len();
    }
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    assert!(
        started < 1000,
        "the kill came after the whole stream: {started} runs"
    );
    publisher.await.unwrap();
    let hub = Hub::start(p.path(), &[]).await;
    let counts = wait_for(&hub, 1000, Duration::from_secs(120)).await;
    assert_eq!(counts.len(), 1000);
    if broker.has_id {
        let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
        assert!(twice.is_empty(), "messages with an id ran twice: {twice:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_deliver_each_message_once() {
    if !weft_testkit::service("Redis", 6379) {
        return;
    }
    delivers_each_message_once(redis_broker(6379)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_survive_a_sigkill_mid_stream() {
    if !weft_testkit::service("Redis", 6379) {
        return;
    }
    survives_a_sigkill_mid_stream(redis_broker(6379)).await;
}

/// A broker server of the test's own, with its data in a temporary folder, so that it can be
/// stopped and started again without disturbing other tests.
struct PrivateServer {
    dir: tempfile::TempDir,
    port: u16,
    program: &'static str,
    args: fn(port: u16, dir: &Path) -> Vec<String>,
    envs: fn(port: u16, dir: &Path) -> Vec<(String, String)>,
    child: Option<std::process::Child>,
}

fn no_envs(_: u16, _: &Path) -> Vec<(String, String)> {
    Vec::new()
}

impl PrivateServer {
    fn start(
        program: &'static str,
        args: fn(u16, &Path) -> Vec<String>,
        envs: fn(u16, &Path) -> Vec<(String, String)>,
    ) -> Option<PrivateServer> {
        let mut r = PrivateServer {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            program,
            args,
            envs,
            child: None,
        };
        if r.up() {
            return Some(r);
        }
        if std::env::var("WEFT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{program} could not be started for the restart test");
        }
        eprintln!("SKIPPED: {program} could not be started for the restart test");
        None
    }

    fn up(&mut self) -> bool {
        let child = std::process::Command::new(self.program)
            .args((self.args)(self.port, self.dir.path()))
            .envs((self.envs)(self.port, self.dir.path()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the server as an operator would (SIGTERM), so that it keeps what it persists.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.program == "rabbitmq-server" {
                // The script's child runs the node; stop the node itself.
                let _ = std::process::Command::new("rabbitmqctl")
                    .args(["-n", &format!("weft-e2e-{}@localhost", self.port), "stop"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            } else {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                if exited && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.down();
    }
}

/// Consuming goes on after the broker restarts: messages from before and after all run once.
async fn resumes_after_the_broker_restarts(mut server: PrivateServer, broker: Broker) {
    let p = project(&broker);
    (broker.prepare)().await;
    let hub = Hub::start(p.path(), &[]).await;
    for n in 0..20 {
        (broker.publish)(json!({"n": n}).to_string()).await;
    }
    wait_for(&hub, 20, Duration::from_secs(30)).await;
    server.down();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(server.up(), "the private {} starts again", server.program);
    for n in 20..40 {
        (broker.publish)(json!({"n": n}).to_string()).await;
    }
    let counts = wait_for(&hub, 40, Duration::from_secs(60)).await;
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
}

fn redis_args(port: u16, dir: &Path) -> Vec<String> {
    let port = port.to_string();
    let dir = dir.display().to_string();
    [
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--dir",
        &dir,
    ]
    .map(String::from)
    .to_vec()
}

fn mosquitto_args(port: u16, dir: &Path) -> Vec<String> {
    // Started as root, mosquitto runs as its own user, which must be able to save its sessions.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .unwrap();
    vec!["-c".into(), conf.display().to_string()]
}

fn rabbitmq_envs(port: u16, dir: &Path) -> Vec<(String, String)> {
    // Started as root, RabbitMQ runs as its own user, which must be able to write its data.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let conf = dir.join("rabbitmq.conf");
    std::fs::write(
        &conf,
        format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = |name: &str| dir.join(name).display().to_string();
    vec![
        (
            "RABBITMQ_NODENAME".into(),
            format!("weft-e2e-{port}@localhost"),
        ),
        ("RABBITMQ_NODE_PORT".into(), port.to_string()),
        ("RABBITMQ_DIST_PORT".into(), free_port().to_string()),
        ("RABBITMQ_CONFIG_FILE".into(), conf.display().to_string()),
        ("RABBITMQ_MNESIA_BASE".into(), d("mnesia")),
        ("RABBITMQ_LOG_BASE".into(), d("log")),
        ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), d("plugins")),
        ("RABBITMQ_PID_FILE".into(), d("pid")),
        ("RABBITMQ_FEATURE_FLAGS_FILE".into(), d("feature_flags")),
    ]
}

fn nats_args(port: u16, dir: &Path) -> Vec<String> {
    let port = port.to_string();
    let dir = dir.display().to_string();
    ["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &dir]
        .map(String::from)
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_consuming_resumes_after_the_server_restarts() {
    let Some(server) = PrivateServer::start("redis-server", redis_args, no_envs) else {
        return;
    };
    let broker = redis_broker(server.port);
    resumes_after_the_broker_restarts(server, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_delivers_each_message_once() {
    if !weft_testkit::service("NATS", 4222) {
        return;
    }
    let broker = nats_broker(4222);
    delivers_each_message_once(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_survives_a_sigkill_mid_stream() {
    if !weft_testkit::service("NATS", 4222) {
        return;
    }
    survives_a_sigkill_mid_stream(nats_broker(4222)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consuming_resumes_after_the_server_restarts() {
    let Some(server) = PrivateServer::start("nats-server", nats_args, no_envs) else {
        return;
    };
    let broker = nats_broker(server.port);
    resumes_after_the_broker_restarts(server, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_delivers_each_message_once() {
    if !weft_testkit::service("Mosquitto", 1883) {
        return;
    }
    delivers_each_message_once(mqtt_broker(1883)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_survives_a_sigkill_mid_stream() {
    if !weft_testkit::service("Mosquitto", 1883) {
        return;
    }
    survives_a_sigkill_mid_stream(mqtt_broker(1883)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_consuming_resumes_after_the_broker_restarts() {
    let Some(server) = PrivateServer::start("mosquitto", mosquitto_args, no_envs) else {
        return;
    };
    let broker = mqtt_broker(server.port);
    resumes_after_the_broker_restarts(server, broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_delivers_each_message_once() {
    if !weft_testkit::service("RabbitMQ", 5672) {
        return;
    }
    delivers_each_message_once(amqp_broker(5672)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_survives_a_sigkill_mid_stream() {
    if !weft_testkit::service("RabbitMQ", 5672) {
        return;
    }
    survives_a_sigkill_mid_stream(amqp_broker(5672)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_consuming_resumes_after_the_broker_restarts() {
    let Some(server) = PrivateServer::start("rabbitmq-server", |_, _| Vec::new(), rabbitmq_envs)
    else {
        return;
    };
    let broker = amqp_broker(server.port);
    resumes_after_the_broker_restarts(server, broker).await;
}

/// While the store cannot commit (another process holds the database locked), a message is not
/// acknowledged: it stays pending at the broker; once the store works again its run is committed
/// and only then is it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_not_acknowledged_while_the_store_fails() {
    if !weft_testkit::service("Redis", 6379) {
        return;
    }
    let broker = redis_broker(6379);
    let stream = broker
        .settings
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("stream: ")
        .to_string();
    let p = project(&broker);
    let hub = Hub::start(p.path(), &[]).await;
    (broker.publish)(json!({"n": 0}).to_string()).await;
    wait_for(&hub, 1, Duration::from_secs(30)).await;

    // Hold the database in an exclusive transaction from another process.
    let db = p.path().join(".weft/weft.db");
    let mut lock = tokio::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\nc.execute('begin exclusive')\nprint('locked', flush=True)\nsys.stdin.read()\n")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut out = tokio::io::BufReader::new(lock.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "locked");

    (broker.publish)(json!({"n": 1}).to_string()).await;
    // The hub received the message and cannot commit it: it stays pending in the group.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut conn = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("weft")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        summary[0],
        redis::Value::Int(1),
        "one message delivered and not acknowledged: {summary:?}"
    );

    // The store works again: the run is committed, then the message acknowledged.
    drop(lock.stdin.take());
    let _ = lock.wait().await;
    let counts = wait_for(&hub, 2, Duration::from_secs(60)).await;
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    let start = Instant::now();
    loop {
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("weft")
            .query_async(&mut conn)
            .await
            .unwrap();
        if summary[0] == redis::Value::Int(0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still pending: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_delivers_each_message_once() {
    if !weft_testkit::service("Mosquitto", 1883) {
        return;
    }
    delivers_each_message_once(mqtt_version_broker(1883, "5")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_survives_a_sigkill_mid_stream() {
    if !weft_testkit::service("Mosquitto", 1883) {
        return;
    }
    survives_a_sigkill_mid_stream(mqtt_version_broker(1883, "5")).await;
}
