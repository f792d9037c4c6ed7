//! `weft secrets set|list|rm|rotate-key`: the project's encrypted secret store
//! ([`weft_engine::vault`]). Values come from standard input, never from arguments (which other
//! users of the machine can see in the process list); nothing here ever prints a value.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::anyhow;
use serde_json::json;
use weft_core::secret::{MIN_SCRUBBED_LEN, check_name};
use weft_engine::vault::VaultError;
use weft_store::now_millis;

use crate::{CliError, CmdResult, exit, setup};

/// A store failure is the system's; anything else (no key, another key, altered data) is how the
/// project is set up, which the message says how to mend.
pub(crate) fn vault_error(e: VaultError) -> CliError {
    match e {
        VaultError::Store(e) => CliError::internal(e),
        e => CliError::usage(e),
    }
}

/// Sets a secret from standard input.
pub(crate) async fn set(dir: &Path, name: &str) -> CmdResult {
    check_name(name).map_err(|m| CliError::usage(anyhow!(m)))?;
    let loaded = setup::load(dir)?;
    let value = read_value(name)?;
    let store = setup::store(&loaded).await?;
    let vault = setup::vault(&loaded, store.clone());
    let (created, key_file) = vault
        .set(name, &value, now_millis())
        .await
        .map_err(vault_error)?;
    if let Some(path) = key_file {
        eprintln!(
            "Created the master key in {} (mode 0600). Back it up apart from the database: without it the secrets cannot be read.",
            path.display()
        );
    }
    let action = if created {
        "secret.create"
    } else {
        "secret.update"
    };
    weft_server::audit::record(store.as_ref(), "cli", action, name, json!({})).await;
    eprintln!(
        "{} secret `{name}`; connections use it as {{ secret: {name} }}.",
        if created { "Stored" } else { "Updated" }
    );
    Ok(exit::OK)
}

/// The value from standard input: the whole of it when piped (without one final line break), or
/// one line typed at a prompt that does not echo.
fn read_value(name: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let value = if stdin.is_terminal() {
        eprint!("Value of `{name}` (not shown): ");
        let echo_off = set_echo(false);
        let mut line = String::new();
        let read = stdin.read_line(&mut line);
        if echo_off {
            set_echo(true);
        }
        eprintln!();
        read.map_err(|e| CliError::usage(anyhow!("cannot read the value: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let mut bytes = Vec::new();
        stdin.lock().read_to_end(&mut bytes).map_err(|e| {
            CliError::usage(anyhow!("cannot read the value from standard input: {e}"))
        })?;
        let mut text = String::from_utf8(bytes).map_err(|_| {
            CliError::usage(anyhow!("the value on standard input is not UTF-8 text"))
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    if value.is_empty() {
        return Err(CliError::usage(anyhow!(
            "no value: pipe it in (`printf %s \"$VALUE\" | weft secrets set {name}`) or type it at the prompt"
        )));
    }
    if value.chars().count() < MIN_SCRUBBED_LEN {
        return Err(CliError::usage(anyhow!(
            "the value is shorter than {MIN_SCRUBBED_LEN} characters: too short to be told apart from other text, so it could not be kept out of logs and run data"
        )));
    }
    Ok(value)
}

/// Turns the terminal's echo on or off with `stty`; says whether it worked.
fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lists the secrets' names and dates.
pub(crate) async fn list(dir: &Path, json: bool) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let secrets = setup::vault(&loaded, store)
        .list()
        .await
        .map_err(vault_error)?;
    if json {
        println!(
            "{}",
            serde_json::to_value(&secrets).map_err(CliError::internal)?
        );
        return Ok(exit::OK);
    }
    for s in &secrets {
        println!(
            "{:<32} updated {}  created {}",
            s.name,
            crate::output::time(s.updated_at),
            crate::output::time(s.created_at)
        );
    }
    if secrets.is_empty() {
        eprintln!("No secrets yet; add one with `weft secrets set NAME`.");
    }
    Ok(exit::OK)
}

/// Deletes a secret.
pub(crate) async fn remove(dir: &Path, name: &str) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    if !setup::vault(&loaded, store.clone())
        .remove(name)
        .await
        .map_err(vault_error)?
    {
        return Err(CliError::usage(anyhow!(
            "there is no secret `{name}`; `weft secrets list` shows them"
        )));
    }
    weft_server::audit::record(store.as_ref(), "cli", "secret.delete", name, json!({})).await;
    eprintln!("Deleted secret `{name}`.");
    Ok(exit::OK)
}

/// Re-encrypts every secret under a new master key.
pub(crate) async fn rotate_key(dir: &Path) -> CmdResult {
    let loaded = setup::load(dir)?;
    let store = setup::store(&loaded).await?;
    let vault = setup::vault(&loaded, store.clone());
    let old = vault.location().require().map_err(vault_error)?.id();
    let (new, count) = vault.rotate_key().await.map_err(vault_error)?;
    weft_server::audit::record(
        store.as_ref(),
        "cli",
        "secret.rotate_key",
        &new.id(),
        json!({"secrets": count, "previous_key": old}),
    )
    .await;
    if vault.location().env.is_some() {
        println!("{}", new.encoded());
        eprintln!(
            "Re-encrypted {count} secrets under new master key {}, printed above and kept in {} (mode 0600). Set WEFT_MASTER_KEY to it before the hub starts again (a running hub keeps the values it read), then delete that file.",
            new.id(),
            vault.pending_key_file().display()
        );
    } else {
        eprintln!(
            "Re-encrypted {count} secrets under new master key {} in {}.",
            new.id(),
            vault.location().file.display()
        );
    }
    Ok(exit::OK)
}
