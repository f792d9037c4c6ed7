//! Weft as a long-running hub: it receives webhooks, fires schedules, polls APIs, serves the REST
//! API, health checks and metrics, and drives the engine until it is told to stop.
//!
//! # Brief overview
//!
//! - [`serve`] is the entry point: it binds the listener, starts the engine's drive loop, the
//!   trigger tasks, retention and (with `watch`) the project reloader, and shuts them down in order.
//! - [`Hub`] is the state the HTTP handlers share: the engine and the routing tables derived from the
//!   current project ([`hooks`] by path).
//! - [`hooks`] turns an inbound request into a committed run (or a clear 4xx); [`api`] is the REST API
//!   with its OpenAPI document (and HTTP function calling of the tools); [`tools`] is what a tool
//!   call does, whichever way it comes; [`mcp`] serves the tools over MCP at `/mcp` and on stdio; [`ops`] is `/healthz`, `/readyz` and `/metrics`; [`triggers`] runs a
//!   task per schedule ([`schedule`], cron slots) and per poll ([`poll`]); [`reload`] watches the
//!   project folder; [`console`] serves the web console's files and [`session`] signs people in
//!   to it.
//!
//! The server never writes SQL and never runs steps: it commits events through
//! [`weft_engine::Engine::accept`] and reads runs through the store trait.

#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod console;
pub mod edit;
pub mod error;
pub mod events;
pub mod hooks;
pub mod http;
pub mod mcp;
pub mod oauth;
pub mod ops;
pub mod overview;
pub mod poll;
pub mod queue;
pub mod reload;
pub mod schedule;
pub mod secrets;
pub mod session;
pub mod subscriptions;
pub mod throttle;
pub mod tls;
pub mod tokens;
pub mod tools;
pub mod triggers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use weft_core::{Project, Trigger, Workflow};
use weft_engine::{Engine, Until};
use weft_store::ClaimScope;

/// How the hub runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The project folder (for `--watch`).
    pub dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Reload the project when its files change.
    pub watch: bool,
    /// Longest time a shutdown waits for in-flight steps before exiting anyway (their runs resume
    /// at the next start).
    pub shutdown_timeout: Duration,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<tls::TlsFiles>,
    /// The project's secret store, already loaded into the engine's credentials; the hub re-reads
    /// it when it changes.
    pub vault: Option<weft_engine::vault::Vault>,
}

/// Most client addresses whose failed sign-ins are remembered at once.
const SIGN_IN_ADDRESSES: usize = 10_000;

/// The default port: not used by any standard service.
pub const DEFAULT_PORT: u16 = 7807;

/// Errors that stop the hub.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {message}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Http(String),
    /// The TLS certificate or key cannot be used.
    #[error("cannot serve HTTPS: {0}")]
    Tls(String),
}

/// What the HTTP handlers share.
pub struct Hub {
    /// The engine.
    pub engine: Engine,
    /// Webhook workflows by path, from the current project.
    hooks: RwLock<Arc<HashMap<String, Arc<Workflow>>>>,
    /// Set once the project is loaded and the drive loop runs; cleared on shutdown.
    ready: AtomicBool,
    /// The metrics recorder's handle, when this process installed one.
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Requests per token and per webhook path.
    pub throttle: throttle::Throttle,
    /// The room webhook bodies take while they are received and answered.
    pub intake: throttle::Intake,
    /// When `/readyz` last saw the store commit a write, and what it saw.
    write_check: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// The project's secret store, for `/api/secrets`.
    pub vault: Option<weft_engine::vault::Vault>,
    /// What the poll and queue triggers last did.
    pub health: Arc<triggers::Health>,
    /// The project folder, which the console's saves write to.
    pub dir: PathBuf,
    /// The trigger tasks, once started (a save restarts them).
    triggers: std::sync::OnceLock<triggers::TriggerTasks>,
    /// Held while the console saves a workflow: one save at a time.
    saving: tokio::sync::Mutex<()>,
    /// Failed console sign-ins per client address (a table of its own, bounded: see
    /// [`throttle::Throttle::bounded`]).
    pub sign_ins: throttle::Throttle,
    /// OAuth2 sign-ins of connections, started and not finished.
    pub oauth: oauth::Pending,
    /// Whether the hub serves HTTPS (for the OAuth2 redirect URI).
    tls: AtomicBool,
}

impl Hub {
    /// A hub for `engine` (and its secret store) serving the project in `dir`, with routing tables
    /// from its current project.
    pub fn new(engine: Engine, vault: Option<weft_engine::vault::Vault>, dir: PathBuf) -> Arc<Hub> {
        let buffer = engine.project().settings.limits.webhook_buffer_bytes;
        let hub = Hub {
            hooks: RwLock::new(Arc::new(HashMap::new())),
            engine,
            ready: AtomicBool::new(false),
            metrics: ops::install_recorder(),
            throttle: throttle::Throttle::default(),
            intake: throttle::Intake::new(buffer),
            write_check: tokio::sync::Mutex::new(None),
            vault,
            health: Arc::default(),
            dir,
            triggers: std::sync::OnceLock::new(),
            saving: tokio::sync::Mutex::new(()),
            sign_ins: throttle::Throttle::bounded(SIGN_IN_ADDRESSES),
            oauth: oauth::Pending::default(),
            tls: AtomicBool::new(false),
        };
        hub.route(&hub.engine.project());
        Arc::new(hub)
    }

    /// Rebuilds the routing tables from `project`.
    pub fn route(&self, project: &Project) {
        let hooks: HashMap<String, Arc<Workflow>> = project
            .workflows
            .values()
            .filter_map(|w| match &w.trigger {
                Trigger::Webhook(h) => Some((h.path.clone(), w.clone())),
                _ => None,
            })
            .collect();
        let hooks = Arc::new(hooks);
        match self.hooks.write() {
            Ok(mut slot) => *slot = hooks,
            Err(poisoned) => *poisoned.into_inner() = hooks,
        }
    }

    /// The webhook workflow listening on `path`.
    pub fn hook(&self, path: &str) -> Option<Arc<Workflow>> {
        let hooks = match self.hooks.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        hooks.get(path).cloned()
    }

    /// Whether the hub serves HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.tls.load(Ordering::Relaxed)
    }

    /// Whether the hub takes work.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The whole HTTP surface.
pub fn router(hub: Arc<Hub>) -> axum::Router {
    let (api, _) = api::router().split_for_parts();
    axum::Router::new()
        .merge(ops::router())
        .merge(console::router())
        .merge(hooks::router())
        .route(oauth::CALLBACK, axum::routing::get(oauth::callback))
        .nest("/api", api)
        .nest_service(
            "/mcp",
            mcp::McpServer::http_service(
                hub.engine.clone(),
                &hub.engine.project().settings.mcp_allowed_hosts,
            ),
        )
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            mcp::guard,
        ))
        // `read_body` reads bodies under the hub's limits, instead of axum's 2 MiB.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            throttle::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            auth::check,
        ))
        .with_state(hub)
}

/// Runs the hub until `shutdown` completes, then stops taking requests, lets in-flight steps finish
/// (at most `options.shutdown_timeout`) and returns.
pub async fn serve(
    engine: Engine,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &options.tls {
        Some(files) => Some(tls::config(files).map_err(ServeError::Tls)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| ServeError::Bind {
            addr: options.listen,
            message: e.to_string(),
        })?;
    let local = listener.local_addr().unwrap_or(options.listen);
    let hub = Hub::new(engine.clone(), options.vault.clone(), options.dir.clone());
    hub.tls.store(tls.is_some(), Ordering::Relaxed);
    // Connections that sign in (OAuth2 authorization code) keep their tokens in the secret store.
    if let Some(vault) = options.vault.clone() {
        engine.secrets().set_persist(Arc::new(move |name, value| {
            let vault = vault.clone();
            Box::pin(async move {
                vault
                    .set(&name, &value, weft_store::now_millis())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }));
    }

    let drive = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.drive(ClaimScope::All, Until::Shutdown).await })
    };
    let triggers = triggers::TriggerTasks::start(engine.clone(), hub.health.clone());
    let _ = hub.triggers.set(triggers.clone());
    let retention = tokio::spawn(ops::retention(engine.clone()));
    let secret_refresh = options
        .vault
        .clone()
        .map(|vault| tokio::spawn(secrets::refresh(engine.clone(), vault)));
    let reloader = options.watch.then(|| {
        tokio::spawn(reload::watch(
            options.dir.clone(),
            hub.clone(),
            triggers.clone(),
        ))
    });
    hub.ready.store(true, Ordering::Relaxed);
    // Vendor webhooks the project's workflows use, registered where the connector says how.
    {
        let hub = hub.clone();
        tokio::spawn(async move { subscriptions::sync(&hub).await });
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, scheme, "Weft is listening on {scheme}://{local}; the web console is at {scheme}://{local}/");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        tls,
        hub.clone(),
        router(hub.clone()),
        stop_rx,
    ));
    shutdown.await;
    tracing::info!(
        "Shutting down: no new requests; in-flight steps get {} to finish.",
        weft_core::duration::format(options.shutdown_timeout)
    );
    hub.ready.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    triggers.stop();
    retention.abort();
    if let Some(r) = secret_refresh {
        r.abort();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    engine.shutdown();
    let deadline = tokio::time::sleep(options.shutdown_timeout);
    tokio::pin!(deadline);
    let mut drive = drive;
    let mut server = server;
    let mut drive_done = false;
    let mut server_done = false;
    while !(drive_done && server_done) {
        tokio::select! {
            r = &mut drive, if !drive_done => {
                drive_done = true;
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %e, "The engine stopped with an error.");
                }
            }
            r = &mut server, if !server_done => {
                server_done = true;
                if let Err(e) = r {
                    return Err(ServeError::Http(e.to_string()));
                }
            }
            () = &mut deadline => {
                tracing::warn!("In-flight work did not finish in time; it resumes at the next start.");
                break;
            }
        }
    }
    Ok(())
}
