//! References to credentials in project files (connection settings, webhook signature secrets).
//!
//! Credentials are never written in project files: a setting that holds one is a reference,
//! `{ env: NAME }`, resolved when it is used (so a rotated variable takes effect without a restart of
//! a long-running hub). Writing the value itself is a lint error. The core only reads references;
//! resolving them is I/O and lives with the connectors.

use crate::Diagnostics;
use crate::decode;
use crate::yaml::{Kind, Node};

/// Where a credential comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the Weft process.
    Env(String),
}

impl SecretRef {
    /// Reads `{ env: NAME }`, reporting a plain value as a credential written in the file.
    pub fn decode(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<SecretRef> {
        match &node.kind {
            Kind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                match key.name.as_str() {
                    "env" => {
                        let name = decode::string(value, &format!("{what}.env"), diags)?;
                        if name.is_empty() || name.contains('=') || name.contains('\0') {
                            diags.error(
                                value.pos,
                                format!("`{name}` is not an environment variable name"),
                            );
                            return None;
                        }
                        Some(SecretRef::Env(name))
                    }
                    "secret" => {
                        diags.error(
                            key.pos,
                            format!("{what}: the encrypted secret store is not available in this version of Weft yet; use `{{ env: NAME }}`"),
                        );
                        None
                    }
                    other => {
                        diags.error(
                            key.pos,
                            format!("{what}: unknown key `{other}`; write `{{ env: NAME }}`"),
                        );
                        None
                    }
                }
            }
            Kind::Str(_) | Kind::Num(_) => {
                diags.error(
                    node.pos,
                    format!("{what} must not be written in the file; refer to an environment variable with `{{ env: NAME }}`"),
                );
                None
            }
            _ => {
                diags.error(
                    node.pos,
                    format!(
                        "{what} must be `{{ env: NAME }}`, found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn read(src: &str) -> (Option<SecretRef>, Vec<String>) {
        let node = yaml::parse(src).unwrap();
        let mut d = Diagnostics::new("weft.yaml");
        let r = SecretRef::decode(&node, "`auth.token`", &mut d);
        (r, d.into_vec().into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn only_references_are_accepted() {
        assert_eq!(
            read("{env: SHOP_TOKEN}").0,
            Some(SecretRef::Env("SHOP_TOKEN".into()))
        );
        assert!(read("sk_live_123").1[0].contains("must not be written in the file"));
        assert!(read("{secret: shop}").1[0].contains("not available in this version"));
        assert!(read("{vault: x}").1[0].contains("unknown key `vault`"));
    }
}
