//! Structural edits of a workflow file's text: set, delete, insert and move a value at a path,
//! leaving every other byte of the file as it was (comments, blank lines, key order, quoting).
//!
//! The console's visual editor changes a workflow through these, so that the YAML file in git
//! stays the author's. An edit finds the lines of the value it changes from the positions
//! [`crate::yaml`] keeps and from indentation (block-style YAML: a mapping entry or a list item
//! runs until the next line indented as far as it or less), replaces only those lines with newly
//! written YAML, and then checks itself: the new text is parsed again, and its value must be the old
//! document with exactly this change. An edit that cannot be written that way (a part in flow style,
//! `{ a: 1 }`, say) is refused with a message, and the file is left to the text editor.

use serde_json::Value;

use crate::yaml::{self, Kind, Node};

/// One step of a path into a document: a mapping key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// A mapping key.
    Key(String),
    /// A list index, from 0.
    Index(usize),
}

/// A change to a document.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Sets the value at `path` (adding the key to its mapping when it is missing).
    Set {
        /// Where.
        path: Vec<Step>,
        /// The new value.
        value: Value,
    },
    /// Removes the mapping entry or list item at `path`.
    Delete {
        /// Where.
        path: Vec<Step>,
    },
    /// Inserts `value` into the list at `path` before `index` (at the end when `index` is the
    /// list's length); creates the list when it is missing.
    Insert {
        /// The list.
        path: Vec<Step>,
        /// Where in it.
        index: usize,
        /// The new item.
        value: Value,
    },
    /// Moves the item at `from` of the list at `path` so that it ends up at index `to`.
    Move {
        /// The list.
        path: Vec<Step>,
        /// The item's index now.
        from: usize,
        /// Its index afterwards.
        to: usize,
    },
}

/// Why an edit was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EditError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, EditError> {
    Err(EditError(message.into()))
}

fn show(path: &[Step]) -> String {
    if path.is_empty() {
        return "the document".into();
    }
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Applies `edit` to a workflow file's `text` and returns the new text.
pub fn apply(text: &str, edit: &Edit) -> Result<String, EditError> {
    let root = yaml::parse(text).map_err(|e| {
        EditError(format!(
            "the file has a YAML error at {}: {}; fix it in the text first",
            e.pos, e.message
        ))
    })?;
    let mut expected = root.to_json();
    apply_json(&mut expected, edit)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let new_text = match edit {
        Edit::Set { path, value } => set(&lines, &root, path, value)?,
        Edit::Delete { path } => delete(&lines, &root, path)?,
        Edit::Insert { path, index, value } => {
            match node_at(&root, path) {
                Some(n) if matches!(&n.kind, Kind::Seq(items) if !items.is_empty()) => {
                    insert(&lines, n, *index, value)?
                }
                // A missing or empty list is written whole.
                Some(Node {
                    kind: Kind::Seq(_) | Kind::Null,
                    ..
                })
                | None => set(&lines, &root, path, &Value::Array(vec![value.clone()]))?,
                Some(_) => return err(format!("{} is not a list", show(path))),
            }
        }
        Edit::Move { path, from, to } => {
            let Some(list) = node_at(&root, path) else {
                return err(format!("{} does not exist", show(path)));
            };
            move_item(&lines, list, *from, *to)?
        }
    };
    // The edit checks itself: the new text must read as the old document with this change.
    match yaml::parse(&new_text) {
        Ok(n) if n.to_json() == expected => Ok(new_text),
        _ => err(format!(
            "this change to {} cannot be written without touching the rest of the file (a part in flow style such as `{{ a: 1 }}`, or an unusual layout); make it in the text",
            show(edit_path(edit))
        )),
    }
}

fn edit_path(edit: &Edit) -> &[Step] {
    match edit {
        Edit::Set { path, .. }
        | Edit::Delete { path }
        | Edit::Insert { path, .. }
        | Edit::Move { path, .. } => path,
    }
}

/// The same edit on the document's value: what the new text must read as.
fn apply_json(doc: &mut Value, edit: &Edit) -> Result<(), EditError> {
    fn parent<'a>(doc: &'a mut Value, path: &[Step]) -> Result<&'a mut Value, EditError> {
        let mut v = doc;
        for s in path {
            v = match (s, v) {
                (Step::Key(k), Value::Object(m)) => m
                    .get_mut(k)
                    .ok_or_else(|| EditError(format!("{} does not exist", show(path))))?,
                (Step::Index(i), Value::Array(a)) => a
                    .get_mut(*i)
                    .ok_or_else(|| EditError(format!("{} does not exist", show(path))))?,
                _ => return err(format!("{} does not exist", show(path))),
            };
        }
        Ok(v)
    }
    match edit {
        Edit::Set { path, value } => {
            let Some((last, up)) = path.split_last() else {
                return err("the whole document cannot be replaced here");
            };
            match (last, parent(doc, up)?) {
                (Step::Key(k), Value::Object(m)) => {
                    m.insert(k.clone(), value.clone());
                }
                (Step::Key(_), Value::Null) if up.is_empty() => {
                    return err("the file is empty; write it in the text first");
                }
                (Step::Index(i), Value::Array(a)) if *i < a.len() => a[*i] = value.clone(),
                _ => return err(format!("{} cannot be set", show(path))),
            }
        }
        Edit::Delete { path } => {
            let Some((last, up)) = path.split_last() else {
                return err("the whole document cannot be deleted");
            };
            match (last, parent(doc, up)?) {
                (Step::Key(k), Value::Object(m)) if m.contains_key(k) => {
                    m.shift_remove(k);
                }
                (Step::Index(i), Value::Array(a)) if *i < a.len() => {
                    a.remove(*i);
                }
                _ => return err(format!("{} does not exist", show(path))),
            }
        }
        Edit::Insert { path, index, value } => {
            let (last, up) = path
                .split_last()
                .ok_or_else(|| EditError("the document is not a list".into()))?;
            let holder = parent(doc, up)?;
            let list = match (last, holder) {
                (Step::Key(k), Value::Object(m)) => m.entry(k.clone()).or_insert(Value::Null),
                (Step::Index(i), Value::Array(a)) if *i < a.len() => &mut a[*i],
                _ => return err(format!("{} does not exist", show(path))),
            };
            if list.is_null() {
                *list = Value::Array(Vec::new());
            }
            match list {
                Value::Array(a) if *index <= a.len() => a.insert(*index, value.clone()),
                Value::Array(a) => {
                    return err(format!(
                        "{} has {} items; {index} is past its end",
                        show(path),
                        a.len()
                    ));
                }
                _ => return err(format!("{} is not a list", show(path))),
            }
        }
        Edit::Move { path, from, to } => match parent(doc, path)? {
            Value::Array(a) if *from < a.len() && *to < a.len() => {
                let item = a.remove(*from);
                a.insert(*to, item);
            }
            Value::Array(_) => return err(format!("{} has no such item", show(path))),
            _ => return err(format!("{} is not a list", show(path))),
        },
    }
    Ok(())
}

fn node_at<'a>(root: &'a Node, path: &[Step]) -> Option<&'a Node> {
    let mut n = root;
    for s in path {
        n = match (s, &n.kind) {
            (Step::Key(k), Kind::Map(entries)) => {
                &entries.iter().find(|(key, _)| &key.name == k)?.1
            }
            (Step::Index(i), Kind::Seq(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(n)
}

/// The indentation of a line with content (not blank, not only a comment).
fn indent(line: &str) -> Option<usize> {
    let body = line.trim_start_matches(' ');
    let t = body.trim();
    if t.is_empty() || t.starts_with('#') {
        None
    } else {
        Some(line.len() - body.len())
    }
}

/// The last line (0-based index) of the block that starts on line `start` at column `col`
/// (0-based): lines indented further belong to it (and, with `dashes`, lines at `col` that start a
/// list item, for a key whose list is not indented); blank and comment lines at its end do not.
fn block_end(lines: &[&str], start: usize, col: usize, dashes: bool) -> usize {
    let mut last = start;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        match indent(line) {
            None => {}
            Some(n) if n > col => last = i,
            Some(n) if dashes && n == col && line[n..].starts_with('-') => last = i,
            Some(_) => break,
        }
    }
    last
}

/// Where a list item starts: its line and the column of its dash (0-based).
fn item_start(lines: &[&str], item: &Node) -> Result<(usize, usize), EditError> {
    let line = item.pos.line as usize - 1;
    let text = lines.get(line).copied().unwrap_or("");
    let col = char_to_byte(text, item.pos.col as usize - 1);
    match text[..col].rfind('-') {
        Some(dash) if text[..dash].trim().is_empty() || text[..dash].trim_end().ends_with('-') => {
            Ok((line, dash))
        }
        _ => {
            err("a list item is not written as `- …` on its own line; make this change in the text")
        }
    }
}

/// The first line of the comments written right above line `first` (no blank line between):
/// they belong to what follows them, and move and go with it.
fn comments_above(lines: &[&str], first: usize) -> usize {
    let mut start = first;
    while start > 0 && lines[start - 1].trim_start().starts_with('#') {
        start -= 1;
    }
    start
}

fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.trim_end_matches('\n').len(), |(i, _)| i)
}

/// A mapping entry's lines: first, last, and its key's column (0-based bytes).
fn entry_lines(lines: &[&str], key: &yaml::Key, value: &Node) -> (usize, usize, usize) {
    let line = key.pos.line as usize - 1;
    let col = char_to_byte(lines[line], key.pos.col as usize - 1);
    let dashes = matches!(value.kind, Kind::Seq(_));
    (line, block_end(lines, line, col, dashes), col)
}

/// Whether a mapping is written in flow style (`{ … }`): its entries cannot be edited line by line.
fn is_flow(lines: &[&str], map: &Node) -> bool {
    let line = map.pos.line as usize - 1;
    let Some(text) = lines.get(line) else {
        return false;
    };
    let col = char_to_byte(text, map.pos.col as usize - 1);
    text[col..].starts_with('{') || text[col..].starts_with('[')
}

/// The last step of `path` and the block-style mapping or list it is in.
fn holder<'a, 'p>(
    lines: &[&str],
    root: &'a Node,
    path: &'p [Step],
) -> Result<(&'p Step, &'p [Step], &'a Node), EditError> {
    let Some((last, up)) = path.split_last() else {
        return err("the whole document cannot be changed here");
    };
    let Some(holder) = node_at(root, up) else {
        return err(format!("{} does not exist", show(up)));
    };
    if is_flow(lines, holder) {
        return err(format!(
            "{} is written in flow style; make this change in the text",
            show(up)
        ));
    }
    Ok((last, up, holder))
}

fn set(lines: &[&str], root: &Node, path: &[Step], value: &Value) -> Result<String, EditError> {
    let (last, up, holder) = holder(lines, root, path)?;
    match (last, &holder.kind) {
        (Step::Key(k), Kind::Map(entries)) => {
            if let Some((key, node)) = entries.iter().find(|(key, _)| &key.name == k) {
                let (first, end, col) = entry_lines(lines, key, node);
                let prefix = &lines[first][..col];
                let rendered = render_entry(k, value, col);
                Ok(splice(lines, first, end, &format!("{prefix}{rendered}")))
            } else {
                // A new key goes after the mapping's last entry, at its indentation.
                let Some((lk, lv)) = entries.last() else {
                    return err(format!("{} is empty; write it in the text first", show(up)));
                };
                let (_, end, _) = entry_lines(lines, lk, lv);
                let (first_key, _) = &entries[0];
                let col = char_to_byte(
                    lines[first_key.pos.line as usize - 1],
                    first_key.pos.col as usize - 1,
                );
                let rendered = format!("{}{}", " ".repeat(col), render_entry(k, value, col));
                Ok(insert_after(lines, end, &rendered))
            }
        }
        (Step::Index(i), Kind::Seq(items)) if *i < items.len() => {
            let (first, dash) = item_start(lines, &items[*i])?;
            let end = block_end(lines, first, dash, false);
            let prefix = &lines[first][..dash];
            Ok(splice(
                lines,
                first,
                end,
                &format!("{prefix}{}", render_item(value, dash)),
            ))
        }
        _ => err(format!("{} cannot be set", show(path))),
    }
}

fn delete(lines: &[&str], root: &Node, path: &[Step]) -> Result<String, EditError> {
    let (last, _, holder) = holder(lines, root, path)?;
    match (last, &holder.kind) {
        (Step::Key(k), Kind::Map(entries)) => {
            let Some(at) = entries.iter().position(|(key, _)| &key.name == k) else {
                return err(format!("{} does not exist", show(path)));
            };
            let (key, node) = &entries[at];
            let (first, end, col) = entry_lines(lines, key, node);
            if !lines[first][..col].trim().is_empty() {
                return err(format!(
                    "{} is the first key of its list item; make this change in the text",
                    show(path)
                ));
            }
            Ok(splice(lines, first, end, ""))
        }
        (Step::Index(i), Kind::Seq(items)) if *i < items.len() => {
            let (first, dash) = item_start(lines, &items[*i])?;
            let end = block_end(lines, first, dash, false);
            Ok(splice(lines, comments_above(lines, first), end, ""))
        }
        _ => err(format!("{} does not exist", show(path))),
    }
}

fn insert(lines: &[&str], list: &Node, index: usize, value: &Value) -> Result<String, EditError> {
    let Kind::Seq(items) = &list.kind else {
        return err("not a list");
    };
    if is_flow(lines, list) {
        return err("the list is written in flow style (`[ … ]`); make this change in the text");
    }
    let (_, dash) = item_start(lines, &items[0])?;
    let rendered = format!("{}{}", " ".repeat(dash), render_item(value, dash));
    if index < items.len() {
        let (first, _) = item_start(lines, &items[index])?;
        Ok(insert_after_or_before(
            lines,
            comments_above(lines, first),
            &rendered,
            true,
        ))
    } else {
        let (first, dash) = item_start(lines, &items[items.len() - 1])?;
        let end = block_end(lines, first, dash, false);
        Ok(insert_after(lines, end, &rendered))
    }
}

fn move_item(lines: &[&str], list: &Node, from: usize, to: usize) -> Result<String, EditError> {
    let Kind::Seq(items) = &list.kind else {
        return err("not a list");
    };
    if from >= items.len() || to >= items.len() {
        return err("no such item");
    }
    if from == to {
        return Ok(lines.concat());
    }
    // Each item's lines, verbatim; the item moves with its own comments.
    let mut spans = Vec::new();
    for item in items {
        let (first, dash) = item_start(lines, item)?;
        spans.push((
            comments_above(lines, first),
            block_end(lines, first, dash, false),
        ));
    }
    let texts: Vec<String> = spans
        .iter()
        .map(|(a, b)| with_newline(lines[*a..=*b].concat()))
        .collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    let moved = order.remove(from);
    order.insert(to, moved);
    // Rewrite the run of lines from the first item to the last, keeping what lies between items
    // (blank lines, comments) in place.
    let mut out = String::new();
    out.push_str(&lines[..spans[0].0].concat());
    for (slot, &(_, end)) in spans.iter().enumerate() {
        out.push_str(&texts[order[slot]]);
        let next = spans.get(slot + 1).map_or(end + 1, |(a, _)| *a);
        out.push_str(&lines[end + 1..next].concat());
    }
    out.push_str(&lines[spans[spans.len() - 1].1 + 1..].concat());
    Ok(out)
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

fn splice(lines: &[&str], first: usize, last: usize, replacement: &str) -> String {
    let mut out = lines[..first].concat();
    if !replacement.is_empty() {
        out.push_str(replacement);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&lines[last + 1..].concat());
    out
}

fn insert_after(lines: &[&str], last: usize, text: &str) -> String {
    insert_after_or_before(lines, last, text, false)
}

fn insert_after_or_before(lines: &[&str], line: usize, text: &str, before: bool) -> String {
    let at = if before { line } else { line + 1 };
    let mut out = lines[..at].concat();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(text);
    out.push_str(&lines[at..].concat());
    out
}

/// `key: value` as block YAML whose key sits at column `col`, ending with a newline; lines after
/// the first are indented.
fn render_entry(key: &str, value: &Value, col: usize) -> String {
    let k = scalar_text(&Value::String(key.to_string()));
    match value {
        Value::Object(m) if !m.is_empty() => format!("{k}:\n{}", render_map(m, col + 2)),
        Value::Array(a) if !a.is_empty() => format!("{k}:\n{}", render_seq(a, col + 2)),
        other => format!("{k}: {}\n", scalar_text(other)),
    }
}

/// A mapping as a block YAML document that [`crate::yaml`] reads back as the same value (keys in
/// the map's order).
pub fn render_document(map: &serde_json::Map<String, Value>) -> String {
    render_map(map, 0)
}

fn render_map(map: &serde_json::Map<String, Value>, col: usize) -> String {
    map.iter()
        .map(|(k, v)| format!("{}{}", " ".repeat(col), render_entry(k, v, col)))
        .collect()
}

fn render_seq(items: &[Value], col: usize) -> String {
    items
        .iter()
        .map(|v| format!("{}{}", " ".repeat(col), render_item(v, col)))
        .collect()
}

/// `- value` as a block list item whose dash sits at column `col` (the caller writes the
/// indentation of the first line).
fn render_item(value: &Value, col: usize) -> String {
    match value {
        Value::Object(m) if !m.is_empty() => {
            let inner = col + 2;
            let mut out = String::from("- ");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(inner));
                }
                out.push_str(&render_entry(k, v, inner));
            }
            out
        }
        Value::Array(a) if !a.is_empty() => format!("-\n{}", render_seq(a, col + 2)),
        other => format!("- {}\n", scalar_text(other)),
    }
}

/// A scalar (or an empty collection) as YAML text: plain where that reads back as the same value,
/// `${{ … }}` expressions plain as Weft files write them, JSON-quoted otherwise.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => {
            if plain_ok(s) || (s.starts_with("${{") && !s.contains('\n') && !s.contains(" #")) {
                s.clone()
            } else {
                serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
            }
        }
    }
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    !s.contains(": ")
        && !s.contains(" #")
        && !s.contains('\n')
        && !s.ends_with(':')
        && s.trim() == s
        && !"-?:,[]{}#&*!|>'\"%@`$".contains(first)
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off"
        )
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "\
# The order workflow. Comments stay where they are.
name: order
trigger:
  webhook:
    path: shop/orders   # the shop posts here
steps:
  - id: total
    map: ${{ [.input.lines[] | .qty * .price] | add }}

  # Free shipping from 50.
  - id: shipping
    if: ${{ .steps.total >= 50 }}
    then:
      - id: free
        map: free
  - id: send
    uses: api.request
    with: { method: POST, path: /orders }
output: ${{ .steps.total }}
";

    fn path(p: Value) -> Vec<Step> {
        serde_json::from_value(p).unwrap()
    }

    fn edit(e: Value) -> Edit {
        serde_json::from_value(e).unwrap()
    }

    #[test]
    fn setting_a_value_changes_only_its_lines() {
        let out = apply(
            FILE,
            &edit(json!({"op": "set", "path": ["steps", 0, "map"], "value": "${{ 1 + 1 }}"})),
        )
        .unwrap();
        assert_eq!(
            out,
            FILE.replace(
                "map: ${{ [.input.lines[] | .qty * .price] | add }}",
                "map: ${{ 1 + 1 }}"
            )
        );
        // The first key of an item keeps its dash.
        let out = apply(
            FILE,
            &edit(json!({"op": "set", "path": ["steps", 0, "id"], "value": "sum"})),
        )
        .unwrap();
        assert!(out.contains("  - id: sum\n    map:"), "{out}");
        // A comment on a line that is not edited stays.
        let out = apply(
            FILE,
            &edit(json!({"op": "set", "path": ["output"], "value": {"total": "${{ .steps.total }}", "ok": true}})),
        )
        .unwrap();
        assert!(out.contains("path: shop/orders   # the shop posts here"));
        assert!(
            out.ends_with("output:\n  total: ${{ .steps.total }}\n  ok: true\n"),
            "{out}"
        );
    }

    #[test]
    fn a_new_key_goes_after_the_last_entry_of_its_mapping() {
        let out = apply(
            FILE,
            &edit(json!({"op": "set", "path": ["steps", 0, "retry"], "value": {"attempts": 3}})),
        )
        .unwrap();
        assert!(
            out.contains("    map: ${{ [.input.lines[] | .qty * .price] | add }}\n    retry:\n      attempts: 3\n\n  # Free shipping"),
            "{out}"
        );
    }

    #[test]
    fn items_are_inserted_deleted_and_moved_with_their_comments() {
        let step = json!({"id": "log", "map": "${{ .steps.total }}"});
        let out = apply(
            FILE,
            &edit(json!({"op": "insert", "path": ["steps"], "index": 1, "value": step})),
        )
        .unwrap();
        assert!(
            out.contains("\n  - id: log\n    map: ${{ .steps.total }}\n  # Free shipping"),
            "{out}"
        );
        let out = apply(
            FILE,
            &edit(json!({"op": "insert", "path": ["steps"], "index": 3, "value": step})),
        )
        .unwrap();
        assert!(
            out.contains("    with: { method: POST, path: /orders }\n  - id: log\n"),
            "{out}"
        );
        // Inside a branch, and a branch that does not exist yet.
        let out = apply(
            FILE,
            &edit(json!({"op": "insert", "path": ["steps", 1, "then"], "index": 1, "value": step})),
        )
        .unwrap();
        assert!(
            out.contains("        map: free\n      - id: log\n"),
            "{out}"
        );
        let out = apply(FILE, &edit(json!({"op": "insert", "path": ["steps", 1, "else"], "index": 0, "value": {"id": "paid", "map": "paid"}}))).unwrap();
        assert!(
            out.contains(
                "        map: free\n    else:\n      - id: paid\n        map: paid\n  - id: send"
            ),
            "{out}"
        );

        // The comment right above an item is the item's: it goes with it.
        let out = apply(FILE, &edit(json!({"op": "delete", "path": ["steps", 1]}))).unwrap();
        assert!(!out.contains("shipping") && !out.contains("free"), "{out}");
        assert!(out.contains("add }}\n\n  - id: send"), "{out}");
        assert!(out.contains("# The order workflow."), "{out}");

        let out = apply(
            FILE,
            &edit(json!({"op": "move", "path": ["steps"], "from": 2, "to": 0})),
        )
        .unwrap();
        assert!(
            out.contains("steps:\n  - id: send\n    uses: api.request\n    with: { method: POST, path: /orders }\n\n  - id: total\n    map: ${{ [.input.lines[] | .qty * .price] | add }}\n  # Free shipping from 50.\n  - id: shipping\n"),
            "{out}"
        );
        let out = apply(
            FILE,
            &edit(json!({"op": "move", "path": ["steps"], "from": 1, "to": 2})),
        )
        .unwrap();
        assert!(
            out.contains("add }}\n\n  - id: send\n    uses: api.request\n    with: { method: POST, path: /orders }\n  # Free shipping from 50.\n  - id: shipping\n"),
            "{out}"
        );
    }

    #[test]
    fn flow_style_and_missing_paths_are_refused_with_a_reason() {
        let e = apply(
            FILE,
            &edit(json!({"op": "set", "path": ["steps", 2, "with", "path"], "value": "/x"})),
        )
        .unwrap_err();
        assert!(e.0.contains("flow style"), "{e}");
        let e = apply(FILE, &edit(json!({"op": "delete", "path": ["steps", 9]}))).unwrap_err();
        assert!(e.0.contains("does not exist"), "{e}");
        let e = apply("name: [", &edit(json!({"op": "delete", "path": ["name"]}))).unwrap_err();
        assert!(e.0.contains("YAML error"), "{e}");
        // The whole `with` can still be replaced, in block style.
        let out = apply(FILE, &edit(json!({"op": "set", "path": ["steps", 2, "with"], "value": {"method": "GET", "path": "/x: y"}}))).unwrap();
        assert!(
            out.contains("    with:\n      method: GET\n      path: \"/x: y\"\n"),
            "{out}"
        );
    }

    #[test]
    fn values_read_back_as_written() {
        for v in [
            json!("plain"),
            json!("true"),
            json!("12"),
            json!("a: b"),
            json!("- x"),
            json!("line\nbreak"),
            json!("${{ {a: .x} }}"),
            json!(""),
            json!(null),
            json!(3.5),
            json!([1, "two", {"three": 3}]),
            json!({}),
            json!([]),
        ] {
            let out = apply(
                FILE,
                &Edit::Set {
                    path: path(json!(["steps", 0, "map"])),
                    value: v.clone(),
                },
            )
            .unwrap_or_else(|e| panic!("{v}: {e}"));
            let doc = yaml::parse(&out).unwrap().to_json();
            assert_eq!(doc["steps"][0]["map"], v, "{out}");
        }
    }
}
