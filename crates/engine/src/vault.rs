//! The project's secret store: named values encrypted with AES-256-GCM under a master key that is
//! kept outside the database, decrypted into a process's [`Secrets`] for its connections.
//!
//! The master key is 32 random bytes, written in base64. It comes from `WEFT_MASTER_KEY`, or from
//! the file `WEFT_MASTER_KEY_FILE` names, or from `.weft/master.key` in the project (created by
//! `weft init`, or by the first `weft secrets set`, with mode 0600). Every write encrypts with a
//! fresh random nonce; the secret's name is the associated data, so a ciphertext moved to another
//! name does not decrypt. Each row records the fingerprint of the key that encrypted it ([`key_id`]),
//! so a wrong key is named as such rather than reported as damaged data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use weft_connectors::secret::Secrets;
use weft_store::{Millis, SecretRecord, Store, StoreError};

/// The environment variable that holds the master key (base64 of 32 bytes).
pub const KEY_VAR: &str = "WEFT_MASTER_KEY";
/// The environment variable that names the file holding the master key.
pub const KEY_FILE_VAR: &str = "WEFT_MASTER_KEY_FILE";
/// The key file's name in the project's data folder, used when neither variable is set.
pub const KEY_FILE: &str = "master.key";

/// Why the secret store cannot do what was asked. Never holds a secret's value or the key.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No master key was found where one is looked for.
    #[error(
        "no master key: set {KEY_VAR}, or {KEY_FILE_VAR} to a key file, or keep the key file at {0} (`weft init` creates it)"
    )]
    NoKey(String),
    /// The master key is malformed.
    #[error("the master key from {source_name} is not usable: {reason}")]
    BadKey {
        /// Where it came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret was encrypted under another master key than the one found.
    #[error(
        "the secret `{name}` was encrypted under master key {stored}, but the master key from {source_name} is {found}; give the key it was written with"
    )]
    WrongKey {
        /// The secret.
        name: String,
        /// The fingerprint it was encrypted under.
        stored: String,
        /// The fingerprint of the key found.
        found: String,
        /// Where the key found came from.
        source_name: String,
    },
    /// The secret's data does not decrypt with the right key: it was changed in the database.
    #[error(
        "the secret `{0}` does not decrypt with its master key: its stored data was altered; set it again"
    )]
    Damaged(String),
    /// The key file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The fingerprint of a master key: 16 hex digits of a SHA-256 over it. Tells keys apart without
/// revealing them.
pub fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"weft master key id\0")
        .chain_update(key)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A master key and where it came from.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    /// `WEFT_MASTER_KEY`, or the key file's path.
    source: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({} from {})", self.id(), self.source)
    }
}

impl MasterKey {
    /// A new random key (not saved anywhere).
    pub fn generate(source: impl Into<String>) -> MasterKey {
        MasterKey {
            key: rand::random(),
            source: source.into(),
        }
    }

    /// Reads a key written in base64 (as [`MasterKey::encoded`] writes it), from `source`.
    pub fn parse(text: &str, source: impl Into<String>) -> Result<MasterKey, VaultError> {
        let source = source.into();
        let bad = |reason: String| VaultError::BadKey {
            source_name: source.clone(),
            reason,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| {
                bad(
                    "it is not base64 (make one with `weft init` or `openssl rand -base64 32`)"
                        .into(),
                )
            })?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            bad(format!(
                "it is {} bytes long; an AES-256 key is 32 bytes",
                b.len()
            ))
        })?;
        Ok(MasterKey { key, source })
    }

    /// The key in base64, as the key file and `WEFT_MASTER_KEY` hold it.
    pub fn encoded(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// Its fingerprint ([`key_id`]).
    pub fn id(&self) -> String {
        key_id(&self.key)
    }

    /// Where it came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }

    /// Encrypts `value` as secret `name` with a fresh nonce.
    pub fn seal(&self, name: &str, value: &str, now: Millis) -> SecretRecord {
        let nonce: [u8; 12] = rand::random();
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            // Encryption fails only for messages beyond 64 GiB.
            .unwrap_or_default();
        SecretRecord {
            name: name.to_string(),
            key_id: self.id(),
            nonce: nonce.to_vec(),
            ciphertext,
            created_at: now,
            updated_at: now,
        }
    }

    /// Decrypts a stored secret.
    pub fn open(&self, secret: &SecretRecord) -> Result<String, VaultError> {
        if secret.key_id != self.id() {
            return Err(VaultError::WrongKey {
                name: secret.name.clone(),
                stored: secret.key_id.clone(),
                found: self.id(),
                source_name: self.source.clone(),
            });
        }
        if secret.nonce.len() != 12 {
            return Err(VaultError::Damaged(secret.name.clone()));
        }
        let clear = self
            .cipher()
            .decrypt(
                Nonce::from_slice(&secret.nonce),
                Payload {
                    msg: &secret.ciphertext,
                    aad: secret.name.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Damaged(secret.name.clone()))?;
        String::from_utf8(clear).map_err(|_| VaultError::Damaged(secret.name.clone()))
    }
}

/// Where the master key of the project whose data folder is `data_dir` is looked for, in order.
#[derive(Clone)]
pub struct KeyLocation {
    /// `WEFT_MASTER_KEY`, if set.
    pub env: Option<String>,
    /// The key file: `WEFT_MASTER_KEY_FILE`, or `<data_dir>/master.key`.
    pub file: PathBuf,
}

impl std::fmt::Debug for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        let env = if self.env.is_some() { "set" } else { "unset" };
        f.debug_struct("KeyLocation")
            .field(KEY_VAR, &env)
            .field("file", &self.file)
            .finish()
    }
}

impl KeyLocation {
    /// The locations the process environment gives, for the data folder `data_dir` (`.weft/`).
    pub fn from_env(data_dir: &Path) -> KeyLocation {
        KeyLocation {
            env: std::env::var(KEY_VAR).ok().filter(|v| !v.trim().is_empty()),
            file: std::env::var_os(KEY_FILE_VAR)
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join(KEY_FILE)),
        }
    }

    /// The key, if one is there.
    pub fn find(&self) -> Result<Option<MasterKey>, VaultError> {
        if let Some(text) = &self.env {
            return MasterKey::parse(text, KEY_VAR).map(Some);
        }
        match std::fs::read_to_string(&self.file) {
            Ok(text) => MasterKey::parse(&text, self.file.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VaultError::File {
                path: self.file.display().to_string(),
                message: format!("cannot read the master key: {e}"),
            }),
        }
    }

    /// The key, or why there is none.
    pub fn require(&self) -> Result<MasterKey, VaultError> {
        self.find()?
            .ok_or_else(|| VaultError::NoKey(self.file.display().to_string()))
    }

    /// Creates a new key in the key file (mode 0600), which must not exist yet.
    pub fn create_file(&self) -> Result<MasterKey, VaultError> {
        let key = MasterKey::generate(self.file.display().to_string());
        write_key_file(&self.file, &key, false)?;
        Ok(key)
    }
}

/// The key in a file that may not exist (or hold no usable key).
fn read_key_file(path: &Path) -> Option<MasterKey> {
    let text = std::fs::read_to_string(path).ok()?;
    MasterKey::parse(&text, path.display().to_string()).ok()
}

/// Writes `key` to a new file at `path` with mode 0600; with `replace`, a file already there is
/// removed first (never written through, so its mode or a link cannot widen who reads the key).
fn write_key_file(path: &Path, key: &MasterKey, replace: bool) -> Result<(), VaultError> {
    use std::io::Write;
    let failed = |e: std::io::Error| VaultError::File {
        path: path.display().to_string(),
        message: format!("cannot write the master key: {e}"),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    if replace {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
            _ => {}
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(format!("{}\n", key.encoded()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)
}

/// A secret's name and dates, never its value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was first set (ms since the epoch).
    pub created_at: Millis,
    /// When it was last set.
    pub updated_at: Millis,
    /// The fingerprint of the master key it is encrypted under.
    pub key_id: String,
}

/// The secret store of one project: its store and where its master key is.
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    location: KeyLocation,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The secret store kept in `store`, with its key at `location`.
    pub fn new(store: Arc<dyn Store>, location: KeyLocation) -> Vault {
        Vault { store, location }
    }

    /// Where the master key is looked for.
    pub fn location(&self) -> &KeyLocation {
        &self.location
    }

    /// Where `rotate-key` writes a new key before the store changes.
    pub fn pending_key_file(&self) -> PathBuf {
        let mut name = self.location.file.as_os_str().to_owned();
        name.push(".new");
        PathBuf::from(name)
    }

    /// Names and dates of every secret.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(self
            .store
            .list_secrets()
            .await?
            .into_iter()
            .map(|s| SecretInfo {
                name: s.name,
                created_at: s.created_at,
                updated_at: s.updated_at,
                key_id: s.key_id,
            })
            .collect())
    }

    /// Sets secret `name` to `value`; says whether it is new. Without a master key, one is created
    /// in the key file, but only while the store holds no secret (a missing key must not orphan the
    /// ones there are). Returns the key file's path when it created one.
    pub async fn set(
        &self,
        name: &str,
        value: &str,
        now: Millis,
    ) -> Result<(bool, Option<PathBuf>), VaultError> {
        let existing = self.store.list_secrets().await?;
        let (key, created_key) = match self.location.find()? {
            Some(key) => (key, None),
            None if existing.is_empty() => (
                self.location.create_file()?,
                Some(self.location.file.clone()),
            ),
            None => {
                return Err(VaultError::NoKey(self.location.file.display().to_string()));
            }
        };
        // Every secret stays under one key: refuse a key the others do not decrypt with.
        if let Some(other) = existing.iter().find(|s| s.key_id != key.id()) {
            return Err(VaultError::WrongKey {
                name: other.name.clone(),
                stored: other.key_id.clone(),
                found: key.id(),
                source_name: key.source().to_string(),
            });
        }
        let created = self.store.put_secret(&key.seal(name, value, now)).await?;
        Ok((created, created_key))
    }

    /// Deletes secret `name`; says whether there was one.
    pub async fn remove(&self, name: &str) -> Result<bool, VaultError> {
        Ok(self.store.delete_secret(name).await?)
    }

    /// Every secret, decrypted. No secrets need no key.
    pub async fn load(&self) -> Result<BTreeMap<String, String>, VaultError> {
        let stored = self.store.list_secrets().await?;
        if stored.is_empty() {
            return Ok(BTreeMap::new());
        }
        let key = self.location.require()?;
        let opened: Result<BTreeMap<String, String>, VaultError> = stored
            .iter()
            .map(|s| Ok((s.name.clone(), key.open(s)?)))
            .collect();
        match opened {
            // A rotation that stopped between the store's commit and the key file's rename.
            Err(VaultError::WrongKey { stored: id, .. })
                if read_key_file(&self.pending_key_file()).is_some_and(|k| k.id() == id) =>
            {
                Err(VaultError::File {
                    path: self.pending_key_file().display().to_string(),
                    message: format!(
                        "the secrets are under the key in this file (a `weft secrets rotate-key` did not finish); move it to {} or put it in {KEY_VAR}",
                        self.location.file.display()
                    ),
                })
            }
            other => other,
        }
    }

    /// Decrypts every secret into `secrets`, replacing what it held.
    pub async fn load_into(&self, secrets: &Secrets) -> Result<usize, VaultError> {
        let values = self.load().await?;
        let count = values.len();
        secrets.set_stored(values);
        Ok(count)
    }

    /// A summary of the stored secrets that changes whenever one is set, removed or re-encrypted;
    /// cheaper to compare than decrypting them all.
    pub async fn version(&self) -> Result<Vec<(String, String, Vec<u8>)>, VaultError> {
        // The nonce is new with every write, even two in the same millisecond.
        Ok(self
            .store
            .list_secrets()
            .await?
            .into_iter()
            .map(|s| (s.name, s.key_id, s.nonce))
            .collect())
    }

    /// Re-encrypts every secret under a new key and returns it with its count. The new key is
    /// written to `<key file>.new` (0600) before the store changes, so a crash at any point leaves
    /// it on disk. A key from the key file is then replaced by it (renamed over it once the store
    /// has committed); for a key from `WEFT_MASTER_KEY` the `.new` file stays, for the caller to
    /// hand over and delete.
    pub async fn rotate_key(&self) -> Result<(MasterKey, usize), VaultError> {
        let old = self.location.require()?;
        let stored = self.store.list_secrets().await?;
        let from_env = self.location.env.is_some();
        let new_source = if from_env {
            KEY_VAR.to_string()
        } else {
            self.location.file.display().to_string()
        };
        let new = MasterKey::generate(new_source);
        let mut sealed = Vec::with_capacity(stored.len());
        for secret in &stored {
            let value = old.open(secret)?;
            let mut record = new.seal(&secret.name, &value, secret.updated_at);
            record.created_at = secret.created_at;
            sealed.push(record);
        }
        let pending = self.pending_key_file();
        write_key_file(&pending, &new, true)?;
        self.store.reencrypt_secrets(&old.id(), &sealed).await?;
        if !from_env {
            std::fs::rename(&pending, &self.location.file).map_err(|e| VaultError::File {
                path: pending.display().to_string(),
                message: format!(
                    "the secrets are re-encrypted under this new key, but it could not be moved to {}: {e}; move it there by hand",
                    self.location.file.display()
                ),
            })?;
        }
        Ok((new, sealed.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_store::{SqliteOptions, SqliteStore};

    async fn open_vault(dir: &tempfile::TempDir, env: Option<String>) -> Vault {
        let mut options = SqliteOptions::new(dir.path().join("weft.db"));
        options.sync_full = false;
        let store = SqliteStore::open(options).await.unwrap();
        Vault::new(
            Arc::new(store),
            KeyLocation {
                env,
                file: dir.path().join(KEY_FILE),
            },
        )
    }

    #[test]
    fn sealing_uses_a_fresh_nonce_and_binds_the_name() {
        let key = MasterKey::generate("test");
        let a = key.seal("shop", "sk_live_1", 1);
        let b = key.seal("shop", "sk_live_1", 1);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert!(
            !a.ciphertext
                .windows(9)
                .any(|w| w == b"sk_live_1".as_slice())
        );
        assert_eq!(key.open(&a).unwrap(), "sk_live_1");
        // Moved to another name, or altered, it does not decrypt.
        let moved = SecretRecord {
            name: "other".into(),
            ..a.clone()
        };
        assert!(matches!(key.open(&moved), Err(VaultError::Damaged(_))));
        let mut altered = a.clone();
        altered.ciphertext[0] ^= 1;
        assert!(matches!(key.open(&altered), Err(VaultError::Damaged(_))));
        let other = MasterKey::generate("other");
        assert!(matches!(other.open(&a), Err(VaultError::WrongKey { .. })));
    }

    #[test]
    fn keys_are_read_as_base64_of_32_bytes() {
        let key = MasterKey::generate("x");
        let again = MasterKey::parse(&format!("{}\n", key.encoded()), "file").unwrap();
        assert_eq!(again.id(), key.id());
        let short = MasterKey::parse("c2hvcnQ=", KEY_VAR)
            .unwrap_err()
            .to_string();
        assert!(short.contains("5 bytes long"), "{short}");
        assert!(
            MasterKey::parse("not base64!", KEY_VAR)
                .unwrap_err()
                .to_string()
                .contains("not base64")
        );
    }

    #[tokio::test]
    async fn the_first_secret_creates_a_private_key_file_and_rotation_reencrypts_all() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open_vault(&dir, None).await;
        assert!(vault.load().await.unwrap().is_empty());
        let (created, key_file) = vault.set("shop", "sk_live_abc", 10).await.unwrap();
        assert!(created);
        let key_file = key_file.expect("a key file was created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        vault.set("db", "pa55word", 11).await.unwrap();
        let old_id = vault.location().require().unwrap().id();
        let (new, count) = vault.rotate_key().await.unwrap();
        assert_eq!(count, 2);
        assert_ne!(new.id(), old_id);
        assert_eq!(vault.location().require().unwrap().id(), new.id());
        let values = vault.load().await.unwrap();
        assert_eq!(values["shop"], "sk_live_abc");
        assert_eq!(values["db"], "pa55word");
        assert!(
            vault
                .list()
                .await
                .unwrap()
                .iter()
                .all(|s| s.key_id == new.id())
        );

        // Without its key the store says so, and refuses to start a second key beside the first.
        std::fs::remove_file(&key_file).unwrap();
        assert!(matches!(vault.load().await, Err(VaultError::NoKey(_))));
        assert!(matches!(
            vault.set("x", "value", 12).await,
            Err(VaultError::NoKey(_))
        ));
        // A different key is named as such.
        let wrong = open_vault(&dir, Some(MasterKey::generate("e").encoded())).await;
        let err = wrong.load().await.unwrap_err().to_string();
        assert!(err.contains("was encrypted under master key"), "{err}");
        assert!(matches!(
            wrong.set("x", "value", 12).await,
            Err(VaultError::WrongKey { .. })
        ));
    }
}
