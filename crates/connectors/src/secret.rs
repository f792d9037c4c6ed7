//! Resolving credential references ([`SecretRef`]) to their values, when a connection or a webhook
//! trigger uses them. Reading them from files is the core's job; this is the I/O half.

pub use weft_core::secret::SecretRef;

/// Resolves a [`SecretRef`] to the credential's value now.
pub trait Resolve {
    /// The credential's value now, or why it cannot be had (never the value itself).
    fn resolve(&self) -> Result<String, String>;
}

impl Resolve for SecretRef {
    fn resolve(&self) -> Result<String, String> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("the environment variable {name} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("the environment variable {name} is not valid UTF-8")
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_say_which() {
        let r = SecretRef::Env("WEFT_TEST_SURELY_UNSET_VARIABLE".into());
        assert_eq!(
            r.resolve().unwrap_err(),
            "the environment variable WEFT_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }
}
