//! Helpers that turn [`Node`]s into typed values while collecting every problem.
//!
//! Each getter takes the node and a [`Diagnostics`] collector, reports what is wrong with a message
//! that names the field, and returns `None` so that the caller can go on decoding the rest. The
//! [`Fields`] reader walks a mapping, hands out known keys and reports every key it was never asked
//! for as unknown, with a "did you mean" hint.

use std::time::Duration;

use crate::diag::{Diagnostics, did_you_mean};
use crate::duration;
use crate::yaml::{Key, Kind, Node, Pos};

/// Reads the entries of one mapping, each at most once.
pub struct Fields<'a> {
    what: &'a str,
    pos: Pos,
    entries: &'a [(Key, Node)],
    known: &'static [&'static str],
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// Starts reading `node` as a mapping of `what` (for messages, such as "step") with the given
    /// known keys. Reports a problem and returns `None` when `node` is not a mapping.
    pub fn new(
        node: &'a Node,
        what: &'a str,
        known: &'static [&'static str],
        diags: &mut Diagnostics,
    ) -> Option<Fields<'a>> {
        match &node.kind {
            Kind::Map(entries) => Some(Fields {
                what,
                pos: node.pos,
                entries,
                known,
                taken: vec![false; entries.len()],
            }),
            _ => {
                diags.error(
                    node.pos,
                    format!("{what} must be a mapping, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// Where the mapping starts.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// Takes the value of `key`, if present.
    pub fn get(&mut self, key: &str) -> Option<&'a Node> {
        debug_assert!(
            self.known.contains(&key),
            "`{key}` is not declared as known"
        );
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.taken[i] = true;
        Some(&self.entries[i].1)
    }

    /// Takes the key and value of `key`, if present.
    pub fn get_entry(&mut self, key: &str) -> Option<(&'a Key, &'a Node)> {
        debug_assert!(
            self.known.contains(&key),
            "`{key}` is not declared as known"
        );
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.taken[i] = true;
        Some((&self.entries[i].0, &self.entries[i].1))
    }

    /// Whether `key` is present (without taking it).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.name == key)
    }

    /// Takes the value of a key that must be present, reporting it missing otherwise.
    pub fn require(&mut self, key: &str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let value = self.get(key);
        if value.is_none() {
            diags.error(self.pos, format!("{} needs `{key}`", self.what));
        }
        value
    }

    /// Reports every key that was never taken as unknown.
    pub fn finish(self, diags: &mut Diagnostics) {
        for ((key, _), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let message = if self.known.contains(&key.name.as_str()) {
                // A known key that the decoder chose not to read: it does not apply here.
                format!("`{}` does not apply to this {}", key.name, self.what)
            } else {
                match did_you_mean(&key.name, self.known.iter().copied()) {
                    Some(hint) => format!(
                        "unknown key `{}` in {}; did you mean `{hint}`?",
                        key.name, self.what
                    ),
                    None => format!(
                        "unknown key `{}` in {}; expected one of: {}",
                        key.name,
                        self.what,
                        self.known.join(", ")
                    ),
                }
            };
            diags.error(key.pos, message);
        }
    }
}

/// Reads a string.
pub fn string(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<String> {
    match &node.kind {
        Kind::Str(s) => Some(s.value.clone()),
        _ => {
            diags.error(
                node.pos,
                format!("{what} must be a string, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// Reads a boolean.
pub fn boolean(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<bool> {
    match &node.kind {
        Kind::Bool(b) => Some(*b),
        _ => {
            diags.error(
                node.pos,
                format!("{what} must be true or false, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// Reads a whole number between `min` and `max`.
pub fn integer(
    node: &Node,
    what: &str,
    min: u64,
    max: u64,
    diags: &mut Diagnostics,
) -> Option<u64> {
    let value = match &node.kind {
        Kind::Num(n) => n.as_u64(),
        _ => None,
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            let found = match &node.kind {
                Kind::Num(n) => n.to_string(),
                _ => node.kind_name().to_string(),
            };
            diags.error(
                node.pos,
                format!("{what} must be a whole number from {min} to {max}, found {found}"),
            );
            None
        }
    }
}

/// Reads a duration written with a unit, such as `500ms`, `30s`, `5m`, `1h30m` or `2d`.
pub fn duration(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Duration> {
    let text = match &node.kind {
        Kind::Str(s) => s.value.clone(),
        Kind::Num(n) => n.to_string(),
        _ => {
            diags.error(
                node.pos,
                format!(
                    "{what} must be a duration such as `30s`, found {}",
                    node.kind_name()
                ),
            );
            return None;
        }
    };
    match duration::parse(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.error(node.pos, format!("{what}: {e}"));
            None
        }
    }
}

/// Reads a list, returning its items.
pub fn list<'a>(node: &'a Node, what: &str, diags: &mut Diagnostics) -> Option<&'a [Node]> {
    match &node.kind {
        Kind::Seq(items) => Some(items),
        _ => {
            diags.error(
                node.pos,
                format!("{what} must be a list, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// Reads a mapping, returning its entries (for mappings with free-form keys).
pub fn entries<'a>(
    node: &'a Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<&'a [(Key, Node)]> {
    match &node.kind {
        Kind::Map(entries) => Some(entries),
        _ => {
            diags.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.kind_name()),
            );
            None
        }
    }
}

/// Whether `name` is usable as a jq object key without quoting (`.steps.name`), which is what step
/// ids, workflow names used in paths, and connection names must be.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[test]
    fn reports_unknown_and_missing_keys_together() {
        let node = yaml::parse("id: a\nretyr: 3\ncolour: red\n").unwrap();
        let mut diags = Diagnostics::new("f.yaml");
        let mut fields = Fields::new(&node, "step", &["id", "retry", "uses"], &mut diags).unwrap();
        assert!(fields.get("id").is_some());
        assert!(fields.require("uses", &mut diags).is_none());
        fields.finish(&mut diags);
        let out: Vec<String> = diags.into_vec().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            out,
            vec![
                "f.yaml:1:1: step needs `uses`",
                "f.yaml:2:1: unknown key `retyr` in step; did you mean `retry`?",
                "f.yaml:3:1: unknown key `colour` in step; expected one of: id, retry, uses",
            ]
        );
    }

    #[test]
    fn checks_types_and_ranges() {
        let node = yaml::parse("[abc, 0, 5s, x]").unwrap();
        let Kind::Seq(items) = &node.kind else {
            panic!()
        };
        let mut diags = Diagnostics::new("f.yaml");
        assert_eq!(integer(&items[0], "attempts", 1, 10, &mut diags), None);
        assert_eq!(integer(&items[1], "attempts", 1, 10, &mut diags), None);
        assert_eq!(
            duration(&items[2], "timeout", &mut diags),
            Some(Duration::from_secs(5))
        );
        assert_eq!(duration(&items[3], "timeout", &mut diags), None);
        let out: Vec<String> = diags.into_vec().iter().map(|d| d.message.clone()).collect();
        assert_eq!(
            out[0],
            "attempts must be a whole number from 1 to 10, found a string"
        );
        assert_eq!(
            out[1],
            "attempts must be a whole number from 1 to 10, found 0"
        );
        assert!(out[2].starts_with("timeout: "), "{}", out[2]);
    }

    #[test]
    fn identifiers_are_jq_keys() {
        assert!(is_identifier("order_1"));
        assert!(!is_identifier("1order"));
        assert!(!is_identifier("order-status"));
        assert!(!is_identifier(""));
    }
}
