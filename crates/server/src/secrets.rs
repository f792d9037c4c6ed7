//! The hub's side of the secret store: the task that re-reads it, so that `weft secrets set`, `rm`
//! and `rotate-key` take effect on a running hub within seconds, without a restart.

use std::time::Duration;

use weft_engine::Engine;
use weft_engine::vault::Vault;

/// How often the hub looks for changed secrets.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the secret store into the engine's credentials whenever it changes, until aborted. A
/// store that cannot be decrypted (a wrong key after `rotate-key` elsewhere) keeps the values the
/// hub has and logs why, once per change.
pub async fn refresh(engine: Engine, vault: Vault) {
    let mut seen = vault.version().await.ok();
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let version = match vault.version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("Cannot read the secret store: {e}");
                continue;
            }
        };
        if seen.as_ref() == Some(&version) {
            continue;
        }
        seen = Some(version);
        match vault.load_into(&engine.secrets()).await {
            Ok(count) => tracing::info!(secrets = count, "The secret store changed; reloaded it."),
            Err(e) => tracing::error!(
                "The secret store changed but cannot be read: {e}; the values read before stay in use."
            ),
        }
    }
}
