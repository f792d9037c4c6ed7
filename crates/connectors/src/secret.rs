//! Resolving credential references ([`SecretRef`]) to their values, when a connection or a webhook
//! trigger uses them, and knowing every value resolved so far so that it can be scrubbed.
//! Reading references from files is the core's job; this is the I/O half.
//!
//! [`Secrets`] is shared by everything of one process that handles credentials: the connectors
//! resolve through it, the engine and the log writer scrub with its [`Scrubber`]. It holds the
//! decrypted values of the secret store (given to it whole by whoever decrypted them) and learns each
//! environment variable's value the first time a reference to it is resolved.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use weft_core::secret::{Scrubber, SecretRef};

/// The credentials one process knows, and the scrubber made of them. Cloning shares them.
#[derive(Clone, Default)]
pub struct Secrets {
    inner: Arc<RwLock<Known>>,
    /// Writes a value into the secret store, when this process may (the hub sets it).
    persist: Arc<RwLock<Option<Persist>>>,
}

/// Writes `(name, value)` into the project's secret store, encrypted, or says why it cannot.
pub type Persist = Arc<
    dyn Fn(
            String,
            String,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

#[derive(Default)]
struct Known {
    /// The secret store's values by name, as last loaded.
    stored: BTreeMap<String, String>,
    /// Environment variables resolved so far, by name.
    env: BTreeMap<String, String>,
    /// Other values to scrub, with their labels: earlier values of secrets that were replaced or
    /// removed (often still valid for a while), and forms derived from credentials (a Basic
    /// `Authorization` value, an OAuth2 access token).
    other: BTreeMap<String, String>,
    /// Built from both maps whenever one changes.
    scrubber: Arc<Scrubber>,
}

impl Known {
    fn rebuild(&mut self) {
        let env_labels: Vec<(String, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (format!("${name}"), value.as_str()))
            .collect();
        let pairs = self
            .stored
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .chain(
                env_labels
                    .iter()
                    .map(|(label, value)| (label.as_str(), *value)),
            )
            .chain(
                self.other
                    .iter()
                    .map(|(value, label)| (label.as_str(), value.as_str())),
            );
        self.scrubber = Arc::new(Scrubber::new(pairs));
    }
}

impl Secrets {
    /// No credentials known yet.
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Replaces the secret store's values (all of them, decrypted) with `values`.
    pub fn set_stored(&self, values: BTreeMap<String, String>) {
        let mut known = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if known.stored != values {
            // A replaced or removed value stays scrubbed for the life of the process.
            let retired: Vec<(String, String)> = known
                .stored
                .iter()
                .filter(|(name, value)| values.get(*name) != Some(*value))
                .map(|(name, value)| (value.clone(), name.clone()))
                .collect();
            known.other.extend(retired);
            known.stored = values;
            known.rebuild();
        }
    }

    /// Lets connectors write secrets (OAuth2 tokens they were given or refreshed) through `persist`.
    pub fn set_persist(&self, persist: Persist) {
        *self.persist.write().unwrap_or_else(|e| e.into_inner()) = Some(persist);
    }

    /// The secret store's value `name`, if this process holds it.
    pub fn stored(&self, name: &str) -> Option<String> {
        let known = self.inner.read().unwrap_or_else(|e| e.into_inner());
        known.stored.get(name).cloned()
    }

    /// Writes `value` as the secret store's `name` (encrypted, through the hub's store) and holds
    /// it from now on; the value it replaces stays scrubbed. Fails where nothing may write the
    /// store (`weft run` without a hub) — the value is then held by this process only.
    pub async fn store(&self, name: &str, value: &str) -> Result<(), String> {
        {
            let mut known = self.inner.write().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = known.stored.insert(name.to_string(), value.to_string())
                && old != value
            {
                known.other.insert(old, name.to_string());
            }
            known.rebuild();
        }
        let persist = self
            .persist
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match persist {
            Some(persist) => persist(name.to_string(), value.to_string()).await,
            None => Err(format!(
                "the secret `{name}` is held by this process only: nothing here may write the secret store"
            )),
        }
    }

    /// The names of the secret store's values this process holds.
    pub fn stored_names(&self) -> Vec<String> {
        let known = self.inner.read().unwrap_or_else(|e| e.into_inner());
        known.stored.keys().cloned().collect()
    }

    /// The scrubber of every value known now. Take it again later to see values learned since.
    pub fn scrubber(&self) -> Arc<Scrubber> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scrubber
            .clone()
    }

    /// The credential's value now, or why it cannot be had (never the value itself).
    pub fn resolve(&self, reference: &SecretRef) -> Result<String, String> {
        match reference {
            SecretRef::Store(name) => {
                let known = self.inner.read().unwrap_or_else(|e| e.into_inner());
                known.stored.get(name).cloned().ok_or_else(|| {
                    format!(
                        "the secret `{name}` is not in the project's secret store; add it with `weft secrets set {name}`"
                    )
                })
            }
            SecretRef::Env(name) => {
                let value = std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        format!("the environment variable {name} is not set")
                    }
                    std::env::VarError::NotUnicode(_) => {
                        format!("the environment variable {name} is not valid UTF-8")
                    }
                })?;
                self.learn_env(name, &value);
                Ok(value)
            }
        }
    }

    /// Adds a value to scrub that is made from a credential (labelled by what it came from), such
    /// as the base64 of a Basic `user:password` or an access token fetched with a client secret.
    pub fn learn(&self, label: &str, value: &str) {
        let known = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if known.other.contains_key(value) {
            return;
        }
        drop(known);
        let mut known = self.inner.write().unwrap_or_else(|e| e.into_inner());
        known.other.insert(value.to_string(), label.to_string());
        known.rebuild();
    }

    fn learn_env(&self, name: &str, value: &str) {
        let known = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if known.env.get(name).map(String::as_str) == Some(value) {
            return;
        }
        drop(known);
        let mut known = self.inner.write().unwrap_or_else(|e| e.into_inner());
        known.env.insert(name.to_string(), value.to_string());
        known.rebuild();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_and_secrets_say_which() {
        let secrets = Secrets::new();
        let r = SecretRef::Env("WEFT_TEST_SURELY_UNSET_VARIABLE".into());
        assert_eq!(
            secrets.resolve(&r).unwrap_err(),
            "the environment variable WEFT_TEST_SURELY_UNSET_VARIABLE is not set"
        );
        let r = SecretRef::Store("shop".into());
        assert!(
            secrets
                .resolve(&r)
                .unwrap_err()
                .contains("add it with `weft secrets set shop`")
        );
    }

    #[test]
    fn stored_values_resolve_and_every_resolved_value_is_scrubbed() {
        let secrets = Secrets::new();
        secrets.set_stored(BTreeMap::from([("shop".into(), "sk_live_abc123".into())]));
        assert_eq!(
            secrets.resolve(&SecretRef::Store("shop".into())).unwrap(),
            "sk_live_abc123"
        );
        // PATH is set in every test environment; its value is learned once resolved.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            secrets.scrubber().text(&format!("{path}!")),
            format!("{path}!")
        );
        secrets.resolve(&SecretRef::Env("PATH".into())).unwrap();
        let scrubber = secrets.scrubber();
        assert_eq!(
            scrubber.text(&format!("key sk_live_abc123 path {path}!")),
            "key [secret shop] path [secret $PATH]!"
        );
        // A removed value stays scrubbed; derived values are scrubbed once learned.
        secrets.set_stored(BTreeMap::new());
        assert_eq!(secrets.scrubber().text("sk_live_abc123"), "[secret shop]");
        secrets.learn("oauth2 token", "eyJ0eXAi.token");
        assert_eq!(
            secrets.scrubber().text("Bearer eyJ0eXAi.token"),
            "Bearer [secret oauth2 token]"
        );
    }
}
