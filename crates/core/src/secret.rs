//! References to credentials in project files (connection settings, webhook signature secrets), and
//! the [`Scrubber`] that keeps their values out of everything Weft stores or prints.
//!
//! Credentials are never written in project files: a setting that holds one is a reference,
//! `{ env: NAME }` (an environment variable) or `{ secret: NAME }` (the project's encrypted secret
//! store), resolved when it is used (so a rotated value takes effect without a restart of a
//! long-running hub). Writing the value itself is a lint error. The core only reads references;
//! resolving them is I/O and lives with the connectors.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

use crate::Diagnostics;
use crate::decode;
use crate::yaml::{Kind, Node};

/// Where a credential comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the Weft process.
    Env(String),
    /// A secret of the project's secret store (`weft secrets set NAME`).
    Store(String),
}

/// The longest name a secret may have.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a secret's name: 1 to 128 letters, digits, `_`, `-` or `.`, starting with a letter or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "`{name}` is not a secret name: use 1 to {MAX_NAME_LEN} letters, digits, `_`, `-` or `.`, starting with a letter or `_`"
        ));
    }
    Ok(())
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
                        let name = decode::string(value, &format!("{what}.secret"), diags)?;
                        if let Err(message) = check_name(&name) {
                            diags.error(value.pos, message);
                            return None;
                        }
                        Some(SecretRef::Store(name))
                    }
                    other => {
                        diags.error(
                            key.pos,
                            format!("{what}: unknown key `{other}`; write `{{ env: NAME }}` or `{{ secret: NAME }}`"),
                        );
                        None
                    }
                }
            }
            Kind::Str(_) | Kind::Num(_) => {
                diags.error(
                    node.pos,
                    format!("{what} must not be written in the file; refer to the secret store with `{{ secret: NAME }}` or to an environment variable with `{{ env: NAME }}`"),
                );
                None
            }
            _ => {
                diags.error(
                    node.pos,
                    format!(
                        "{what} must be `{{ secret: NAME }}` or `{{ env: NAME }}`, found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }
}

/// The shortest value the scrubber replaces: shorter ones would match ordinary text everywhere.
pub const MIN_SCRUBBED_LEN: usize = 4;

/// Replaces every known credential value, wherever it appears (also inside a longer string), with
/// `[secret NAME]`. Built once per set of values; cheap to apply when a text holds none of them.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// `None` when there is nothing to scrub.
    matcher: Option<AhoCorasick>,
    /// The replacement of each pattern, by pattern index.
    labels: Vec<String>,
}

/// Only how many values and which labels: the automaton's own `Debug` would spell the values out.
impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        labels.dedup();
        f.debug_struct("Scrubber").field("labels", &labels).finish()
    }
}

impl Scrubber {
    /// A scrubber for `(label, value)` pairs; the label names the secret in the replacement text,
    /// never the value. Values shorter than [`MIN_SCRUBBED_LEN`] are left out. Each value is also
    /// matched in its JSON-escaped form, as it appears inside serialised JSON and JSON log lines.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Scrubber {
        let mut patterns: Vec<String> = Vec::new();
        let mut labels = Vec::new();
        for (label, value) in secrets {
            if value.len() < MIN_SCRUBBED_LEN {
                continue;
            }
            let replacement = format!("[secret {label}]");
            let escaped = Value::String(value.to_string()).to_string();
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != value {
                patterns.push(escaped.to_string());
                labels.push(replacement.clone());
            }
            patterns.push(value.to_string());
            labels.push(replacement);
        }
        if patterns.is_empty() {
            return Scrubber::default();
        }
        // Leftmost-longest, so a secret that contains another is replaced whole. Building fails
        // only beyond the automaton's size limits, far above any set of credentials; should it
        // ever, a fuller automaton is tried rather than scrubbing nothing.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .or_else(|_| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                    .build(&patterns)
            })
            .ok();
        Scrubber { matcher, labels }
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret value replaced.
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        if !matcher.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        matcher.replace_all_with(text, &mut out, |m, _, dst| {
            dst.push_str(&self.labels[m.pattern().as_usize()]);
            true
        });
        Cow::Owned(out)
    }

    /// Whether a string or object key of `value` holds a secret value.
    pub fn finds(&self, value: &Value) -> bool {
        let Some(matcher) = &self.matcher else {
            return false;
        };
        match value {
            Value::String(s) => matcher.is_match(s),
            Value::Array(items) => items.iter().any(|v| self.finds(v)),
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| matcher.is_match(k) || self.finds(v)),
            _ => false,
        }
    }

    /// Replaces every secret value in the strings and object keys of `value`; says whether anything
    /// changed.
    pub fn json(&self, value: &mut Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            Value::String(s) => match self.text(s) {
                Cow::Owned(clean) => {
                    *s = clean;
                    true
                }
                Cow::Borrowed(_) => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.json(item) | changed),
            Value::Object(map) => {
                let dirty_keys = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
                if dirty_keys {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.json(&mut v);
                        map.insert(self.text(&k).into_owned(), v);
                    }
                    return true;
                }
                map.values_mut()
                    .fold(false, |changed, v| self.json(v) | changed)
            }
            _ => false,
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
        assert_eq!(
            read("{secret: shop.token}").0,
            Some(SecretRef::Store("shop.token".into()))
        );
        assert!(read("{secret: 'a b'}").1[0].contains("is not a secret name"));
        assert!(read("{vault: x}").1[0].contains("unknown key `vault`"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("SHOP_TOKEN").is_ok());
        assert!(check_name("_a.b-c9").is_ok());
        for bad in ["", "9lives", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_scrubber_replaces_values_also_inside_longer_strings_and_keys() {
        let s = Scrubber::new([("shop", "sk_live_51Hx"), ("db", "pa\"ss"), ("pin", "123")]);
        assert_eq!(
            s.text("Authorization: Bearer sk_live_51Hx; again sk_live_51Hx"),
            "Authorization: Bearer [secret shop]; again [secret shop]"
        );
        // As it appears inside serialised JSON (a quote is escaped).
        assert_eq!(s.text(r#"{"p":"pa\"ss"}"#), r#"{"p":"[secret db]"}"#);
        assert_eq!(s.text("pa\"ss"), "[secret db]");
        // Too short to scrub.
        assert_eq!(s.text("pin 123"), "pin 123");
        let mut v = serde_json::json!({"echo": {"headers": ["x sk_live_51Hx y"]}, "sk_live_51Hx": 1, "n": 5});
        assert!(s.json(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"echo": {"headers": ["x [secret shop] y"]}, "[secret shop]": 1, "n": 5})
        );
        assert!(s.finds(&serde_json::json!([{"k": "..sk_live_51Hx.."}])));
        let mut clean = serde_json::json!({"a": "nothing here"});
        assert!(!s.finds(&clean));
        assert!(!s.json(&mut clean));
        assert!(Scrubber::new([]).is_empty());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("sk_live") && shown.contains("[secret shop]"),
            "{shown}"
        );
    }

    #[test]
    fn a_secret_containing_another_is_replaced_whole() {
        let s = Scrubber::new([("short", "abcd"), ("long", "xxabcdyy")]);
        assert_eq!(
            s.text("1 xxabcdyy 2 abcd"),
            "1 [secret long] 2 [secret short]"
        );
    }
}
