//! Weft's connectors: the actions that steps call on outside systems.
//!
//! # Brief overview
//!
//! - Each connector lives in its own folder (`http/`, `sql/`) with its settings (`config.rs`, the reference
//!   for what a user writes in `weft.yaml`), its runtime (`action.rs`) and its tests.
//! - [`catalog`] lists every connector's static [`ConnectorSpec`] and the [`library`] of connector
//!   definitions, which `weft lint` uses to check connections and `uses:` steps without any I/O.
//! - [`Registry::build`] turns a project's connections into live [`Connector`]s, which the engine calls.
//! - Every failure crossing this crate's boundary is an [`ActionError`], classified as retryable
//!   (the step's retry policy applies) or fatal (the step fails at once).
//!
//! Connectors know nothing of runs, the store or the engine; they get an input and an idempotency
//! key and return an output.

#![deny(missing_docs)]

pub mod amqp;
pub mod defined;
pub mod http;
pub mod library;
pub mod limit;
pub mod mqtt;
pub mod nats;
pub mod redis;
pub mod secret;
mod settings;
pub mod smtp;
pub mod sql;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use weft_core::{Catalog, Connection, ConnectorSpec, Project};

use crate::secret::Secrets;

/// Every connector type this build knows: those written in code, and the library of definitions
/// (built once per process).
pub fn catalog() -> Catalog {
    static BUILT: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut catalog = Catalog::new(specs().to_vec());
            for definition in library::definitions() {
                // A library type that clashes with a code connector is a bug the tests catch.
                let _ = catalog.define(definition);
            }
            catalog
        })
        .clone()
}

/// Every connector's description; adding a connector means adding it here.
static SPECS: [&ConnectorSpec; 9] = [
    &http::SPEC,
    &sql::POSTGRES,
    &sql::MYSQL,
    &sql::SQLITE,
    &redis::SPEC,
    &nats::SPEC,
    &mqtt::SPEC,
    &amqp::SPEC,
    &smtp::SPEC,
];

fn specs() -> &'static [&'static ConnectorSpec] {
    &SPECS
}

/// Why an action failed, classified at the connector boundary.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// A transient failure (a timeout, a refused connection, a 429 or 5xx): trying again may work.
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the outside system asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
        /// Data about the failure (for HTTP, the response), kept in the step's error.
        details: Value,
    },
    /// A permanent failure (a 4xx, invalid input): trying again will fail the same way.
    #[error("{message}")]
    Fatal {
        /// What happened.
        message: String,
        /// Data about the failure, kept in the step's error.
        details: Value,
    },
}

impl ActionError {
    /// A fatal error without details.
    pub fn fatal(message: impl Into<String>) -> ActionError {
        ActionError::Fatal {
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A retryable error without details.
    pub fn retryable(message: impl Into<String>) -> ActionError {
        ActionError::Retryable {
            message: message.into(),
            retry_after: None,
            details: Value::Null,
        }
    }

    /// Whether the step's retry policy applies.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ActionError::Retryable { .. })
    }

    /// The details, if any.
    pub fn details(&self) -> &Value {
        match self {
            ActionError::Retryable { details, .. } | ActionError::Fatal { details, .. } => details,
        }
    }
}

/// One call of an action.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// The action's name (the part after the dot in `uses:`).
    pub action: &'a str,
    /// The step's evaluated `with:` inputs.
    pub input: Value,
    /// The same for every attempt of this step execution: `<run id>/<step id>[/<item>]`.
    pub idempotency_key: &'a str,
    /// Largest output the action may return, in bytes; larger is a fatal error, never cut short.
    pub max_output_bytes: u64,
}

/// A live connection to an outside system.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Runs an action.
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError>;

    /// Runs an action as `definition` describes it: the connector definition the run's workflow
    /// was compiled with, which a run keeps when the project's definition changes (connectors
    /// written as data use it; the others have nothing to keep and ignore it).
    async fn call_defined(
        &self,
        call: Call<'_>,
        definition: Option<&Arc<weft_core::definition::Definition>>,
    ) -> Result<Value, ActionError> {
        let _ = definition;
        self.call(call).await
    }

    /// Checks, without changing anything there, that the outside system answers and takes the
    /// connection's credentials ("test connection"); returns what was found, in words. What it
    /// does is the connector's [`ConnectorSpec::probe`]; connectors without one refuse.
    async fn probe(&self) -> Result<String, ActionError> {
        Err(ActionError::fatal(
            "this kind of connection cannot check itself; a step that uses it shows whether it works",
        ))
    }

    /// The OAuth2 sign-in of a connection whose auth is `grant: authorization_code`.
    fn sign_in(&self) -> Option<Arc<http::SignIn>> {
        None
    }

    /// Starts consuming messages for a `queue` trigger: `consumer` names the workflow (the default
    /// of durable consumer names), `settings` are the trigger's connector-specific keys, checked
    /// by the connector's [`weft_core::ConsumeSpec`]. Connectors without messages refuse.
    async fn subscribe(
        &self,
        consumer: &str,
        settings: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        let _ = (consumer, settings);
        Err(ActionError::fatal(
            "this connection has no messages to consume",
        ))
    }
}

/// Messages of one `queue` trigger, as they arrive.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next message. An error means the subscription is broken (the connection
    /// was lost); the caller subscribes again, and unsettled messages come back from the broker.
    async fn next(&mut self) -> Result<Delivery, ActionError>;
}

/// One message from a broker, not settled yet.
pub struct Delivery {
    /// The payload as received.
    pub payload: Vec<u8>,
    /// What the broker tells about the message (subject, headers, redelivery…), for `.trigger`.
    pub meta: serde_json::Map<String, Value>,
    /// An id that stays the same when the broker delivers the message again, if it has one.
    pub id: Option<String>,
    /// Acknowledges or rejects the message.
    pub settle: Box<dyn Settle>,
}

/// How a message is settled with its broker, once.
#[async_trait]
pub trait Settle: Send {
    /// The message's run is committed; the broker may forget the message.
    async fn ack(self: Box<Self>) -> Result<(), ActionError>;
    /// The message can never be read: drop it, or dead-letter it where the broker can.
    async fn reject(self: Box<Self>, reason: &str) -> Result<(), ActionError>;
}

/// A connection that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("connection `{connection}`: {message}")]
pub struct BuildError {
    /// The connection's name.
    pub connection: String,
    /// Why.
    pub message: String,
}

/// The live connectors of a project, by connection name.
#[derive(Clone, Default)]
pub struct Registry {
    connectors: BTreeMap<String, Arc<dyn Connector>>,
    /// The credentials the connectors resolve through; what is scrubbed from run data.
    secrets: Secrets,
}

impl Registry {
    /// Builds a live connector for every connection of the project; `dir` is the project folder
    /// (a SQLite connection's `path` is relative to it). Nothing connects yet.
    /// Credentials resolve through `secrets`.
    pub fn build(project: &Project, dir: &Path, secrets: &Secrets) -> Result<Registry, BuildError> {
        let mut connectors: BTreeMap<String, Arc<dyn Connector>> = BTreeMap::new();
        for (name, connection) in &project.connections {
            let built = match project.catalog.get(&connection.type_name) {
                Some(weft_core::Spec::Defined(definition)) => {
                    let built = Registry::defined(definition, connection, secrets)?;
                    // The vendor's documented limit, unless the connection sets its own.
                    match (&connection.rate_limit, &definition.rate_limit) {
                        (None, Some(limit)) => Arc::new(limit::Limited::new(built, limit)),
                        _ => Registry::limited(connection, built),
                    }
                }
                _ => Registry::connect(connection, dir, secrets)?,
            };
            connectors.insert(name.clone(), built);
        }
        Ok(Registry {
            connectors,
            secrets: secrets.clone(),
        })
    }

    /// Builds the live connector of one connection, within its `rate_limit` if it has one.
    /// Nothing connects yet.
    pub fn connect(
        connection: &Connection,
        dir: &Path,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Connector>, BuildError> {
        let built = Registry::connect_unlimited(connection, dir, secrets)?;
        Ok(Registry::limited(connection, built))
    }

    /// `built` within the connection's `rate_limit`, if it has one.
    fn limited(connection: &Connection, built: Arc<dyn Connector>) -> Arc<dyn Connector> {
        match &connection.rate_limit {
            Some(limit) => Arc::new(limit::Limited::new(built, limit)),
            None => built,
        }
    }

    /// The live connector of a connection of a type a definition gives.
    fn defined(
        definition: &Arc<weft_core::definition::Definition>,
        connection: &Connection,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Connector>, BuildError> {
        defined::DefinedConnector::build(definition.clone(), connection, secrets)
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
            .map_err(|message| BuildError {
                connection: connection.name.clone(),
                message,
            })
    }

    fn connect_unlimited(
        connection: &Connection,
        dir: &Path,
        secrets: &Secrets,
    ) -> Result<Arc<dyn Connector>, BuildError> {
        let failed = |message| BuildError {
            connection: connection.name.clone(),
            message,
        };
        Ok(match connection.type_name.as_str() {
            "http" => Arc::new(http::HttpConnector::build(connection, secrets).map_err(failed)?),
            "redis" => Arc::new(redis::RedisConnector::build(connection, secrets).map_err(failed)?),
            "nats" => Arc::new(nats::NatsConnector::build(connection, secrets).map_err(failed)?),
            "mqtt" => Arc::new(mqtt::MqttConnector::build(connection, secrets).map_err(failed)?),
            "amqp" => Arc::new(amqp::AmqpConnector::build(connection, secrets).map_err(failed)?),
            "smtp" => Arc::new(smtp::SmtpConnector::build(connection, secrets).map_err(failed)?),
            "postgres" | "mysql" | "sqlite" => {
                Arc::new(sql::SqlConnector::build(connection, dir, secrets).map_err(failed)?)
            }
            other => {
                return Err(failed(format!(
                    "no connector of type `{other}` in this build"
                )));
            }
        })
    }

    /// Adds or replaces a connector, as tests do with fakes.
    pub fn insert(&mut self, name: impl Into<String>, connector: Arc<dyn Connector>) {
        self.connectors.insert(name.into(), connector);
    }

    /// The credentials this registry's connectors resolve through.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The connector of connection `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_the_code_connectors_and_the_library() {
        let catalog = catalog();
        for (file, _) in library::FILES {
            let name = file.trim_end_matches(".yaml");
            assert!(
                matches!(catalog.get(name), Some(weft_core::Spec::Defined(_))),
                "{name}"
            );
        }
        assert_eq!(
            catalog.type_names().len(),
            SPECS.len() + library::FILES.len()
        );
    }

    #[test]
    fn every_spec_has_a_unique_type_and_documented_actions() {
        let mut names: Vec<&str> = specs().iter().map(|s| s.type_name).collect();
        names.dedup();
        assert_eq!(names.len(), specs().len());
        for spec in specs() {
            assert!(!spec.summary.is_empty());
            for action in spec.actions {
                assert!(
                    !action.summary.is_empty(),
                    "{}.{}",
                    spec.type_name,
                    action.name
                );
                for required in action.required {
                    assert!(action.inputs.contains(required));
                }
            }
        }
    }
}
