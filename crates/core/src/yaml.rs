//! A YAML reader that keeps the source position of every value.
//!
//! Weft's files are YAML, and every problem in them must be reported as `file:line:column`. Serde-based
//! readers stop at the first error and forget positions, so this module turns the event stream of
//! `saphyr-parser` into a small tree of [`Node`]s that carry their [`Pos`]. Typed decoding (and the
//! collection of every problem at once) happens in [`crate::decode`]; this module only knows YAML.
//!
//! Scalars are resolved with the YAML 1.2 core schema (`null`, `true`, numbers, strings). Aliases are
//! expanded, with a bound on the size of the result so that a hostile file cannot exhaust memory.
//!
//! jq is full of `: ` and `{`, which YAML does not allow in a plain scalar, so `map: ${{ {id: .a} }}`
//! would be a YAML error. Before parsing, [`quote_expressions`] wraps every unquoted block value that
//! holds `${{` in single quotes, and positions are mapped back to the file as written.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Number, Value};

/// Deepest nesting accepted, so that hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 128;
/// Most nodes one document may expand to (aliases included).
const MAX_NODES: usize = 1_000_000;

/// A position in a source file: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters, starting at 1.
    pub col: u32,
}

impl Pos {
    /// Makes a position from a 1-based line and column.
    pub fn new(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One YAML value with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the value starts in its file.
    pub pos: Pos,
    /// The value itself.
    pub kind: Kind,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer or a finite float.
    Num(Number),
    /// A string, with the positions of the `${{` openers inside it.
    Str(Str),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order.
    Map(Vec<(Key, Node)>),
}

/// A string scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Str {
    /// The string's value after YAML unescaping.
    pub value: String,
    /// Source position of each `${{` in the value, in order, so that expression errors point inside
    /// the string.
    pub expr_pos: Vec<Pos>,
}

/// A mapping key.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

impl Node {
    /// A short name for the kind of value, for messages such as "expected a string, found a list".
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Num(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The string value, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(&s.value),
            _ => None,
        }
    }

    /// Converts the node to JSON, dropping positions.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Num(n) => Value::Number(n.clone()),
            Kind::Str(s) => Value::String(s.value.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// A YAML syntax problem, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// Parses one YAML document. An empty file yields a `null` node at 1:1.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let (prepared, columns) = quote_expressions(source);
    let mut reader = Reader {
        parser: Parser::new_from_str(&prepared),
        source: &prepared,
        columns,
        char_bytes: None,
        anchors: HashMap::new(),
        nodes: 0,
    };
    reader.document()
}

struct Reader<'s> {
    parser: Parser<'s, saphyr_parser::StrInput<'s>>,
    source: &'s str,
    /// For lines that [`quote_expressions`] rewrote: the original column of each column.
    columns: HashMap<u32, Vec<u32>>,
    /// Byte offset of each character, built on first need (only strings holding `${{` need it).
    char_bytes: Option<Vec<usize>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl<'s> Reader<'s> {
    fn next(&mut self) -> Result<(Event<'s>, Span), SyntaxError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(SyntaxError {
                pos: self.pos(e.marker().line() as u32, e.marker().col() as u32 + 1),
                message: format!("YAML syntax error: {}", e.info()),
            }),
            None => Err(SyntaxError {
                pos: Pos::new(1, 1),
                message: "YAML syntax error: unexpected end of input".into(),
            }),
        }
    }

    fn document(&mut self) -> Result<Node, SyntaxError> {
        let mut root = None;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::DocumentStart(_) if root.is_some() => {
                    return Err(SyntaxError {
                        pos: self.pos_of(&span),
                        message: "a file holds one YAML document; remove the second `---`".into(),
                    });
                }
                Event::DocumentStart(_) => {
                    let (event, span) = self.next()?;
                    root = Some(self.node(event, span, 0)?);
                }
                Event::StreamEnd => {
                    return Ok(root.unwrap_or(Node {
                        pos: Pos::new(1, 1),
                        kind: Kind::Null,
                    }));
                }
                _ => {
                    return Err(SyntaxError {
                        pos: self.pos_of(&span),
                        message: "YAML syntax error: unexpected content".into(),
                    });
                }
            }
        }
    }

    /// The position in the file as written of a 1-based line and column of the prepared text.
    fn pos(&self, line: u32, col: u32) -> Pos {
        match self.columns.get(&line) {
            Some(map) => Pos::new(line, map.get(col as usize - 1).copied().unwrap_or(col)),
            None => Pos::new(line, col),
        }
    }

    fn pos_of(&self, span: &Span) -> Pos {
        self.pos(span.start.line() as u32, span.start.col() as u32 + 1)
    }

    fn count(&mut self, pos: Pos, n: usize) -> Result<(), SyntaxError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                pos,
                message: format!("the document expands to more than {MAX_NODES} values"),
            });
        }
        Ok(())
    }

    fn node(&mut self, event: Event<'s>, span: Span, depth: usize) -> Result<Node, SyntaxError> {
        let pos = self.pos_of(&span);
        if depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!("values are nested more than {MAX_DEPTH} levels deep"),
            });
        }
        self.count(pos, 1)?;
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                self.count(pos, size_of_tree(&target))?;
                (Node { pos, ..target }, 0)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = tag
                    .as_ref()
                    .is_some_and(|t| t.handle == "tag:yaml.org,2002:" && t.suffix == "str");
                let kind = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&text).map_err(|message| SyntaxError { pos, message })?
                } else {
                    Kind::Str(Str {
                        value: text.to_string(),
                        expr_pos: Vec::new(),
                    })
                };
                let kind = match kind {
                    Kind::Str(mut s) => {
                        if s.value.contains("${{") {
                            s.expr_pos = self.expr_positions(&span);
                        }
                        Kind::Str(s)
                    }
                    other => other,
                };
                (Node { pos, kind }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span, depth + 1)?);
                }
                (
                    Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::MappingEnd) {
                        break;
                    }
                    let key_node = self.node(event, span, depth + 1)?;
                    let key = match key_node.kind {
                        Kind::Str(s) => s.value,
                        Kind::Null => "null".into(),
                        Kind::Bool(b) => b.to_string(),
                        Kind::Num(n) => n.to_string(),
                        Kind::Seq(_) | Kind::Map(_) => {
                            return Err(SyntaxError {
                                pos: key_node.pos,
                                message: "mapping keys must be plain text, not lists or mappings"
                                    .into(),
                            });
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == key) {
                        return Err(SyntaxError {
                            pos: key_node.pos,
                            message: format!("duplicate key `{key}` (first at {})", first.pos),
                        });
                    }
                    let (event, span) = self.next()?;
                    let value = self.node(event, span, depth + 1)?;
                    entries.push((
                        Key {
                            name: key,
                            pos: key_node.pos,
                        },
                        value,
                    ));
                }
                (
                    Node {
                        pos,
                        kind: Kind::Map(entries),
                    },
                    anchor,
                )
            }
            _ => {
                return Err(SyntaxError {
                    pos,
                    message: "YAML syntax error: unexpected event".into(),
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    /// Finds where each `${{` of a string scalar sits in the source, by scanning the scalar's raw text.
    /// Escapes and folding never produce or remove a `${{`, so the n-th opener in the raw text is the
    /// n-th opener in the value.
    fn expr_positions(&mut self, span: &Span) -> Vec<Pos> {
        let source = self.source;
        let bytes = &*self
            .char_bytes
            .get_or_insert_with(|| source.char_indices().map(|(b, _)| b).collect());
        let byte_at = |ci: usize| bytes.get(ci).copied().unwrap_or(source.len());
        let raw = &source[byte_at(span.start.index())..byte_at(span.end.index())];
        let (mut line, mut col) = (span.start.line() as u32, span.start.col() as u32 + 1);
        let mut out = Vec::new();
        let mut rest = raw;
        while !rest.is_empty() {
            if rest.starts_with("${{") {
                out.push((line, col));
            }
            let c = rest.chars().next().unwrap_or(' ');
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            rest = &rest[c.len_utf8()..];
        }
        out.into_iter().map(|(l, c)| self.pos(l, c)).collect()
    }
}

/// Wraps every unquoted block value that holds `${{` in single quotes, so that jq's `: `, `{` and
/// `#` do not break YAML. Returns the new text and, for each rewritten line, the original column of
/// every column of the new line. Lines inside block scalars (`|`, `>`) are left alone.
pub fn quote_expressions(source: &str) -> (String, HashMap<u32, Vec<u32>>) {
    let mut out = String::with_capacity(source.len() + 16);
    let mut columns = HashMap::new();
    // Indentation of the line that opened a block scalar; deeper lines are its content.
    let mut block_parent: Option<usize> = None;
    for (index, line) in source.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = body.len() - body.trim_start_matches(' ').len();
        if let Some(parent) = block_parent {
            if body.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_parent = None;
        }
        let Some(start) = value_start(body) else {
            out.push_str(line);
            continue;
        };
        let value = &body[start..];
        if value.starts_with(['|', '>']) {
            block_parent = Some(indent);
            out.push_str(line);
            continue;
        }
        if !value.contains("${{")
            || value.starts_with(['\'', '"', '{', '[', '&', '*', '!', '|', '>', '#'])
        {
            out.push_str(line);
            continue;
        }
        let Some(end) = value_end(value) else {
            out.push_str(line);
            continue;
        };
        // Build the new line and the column map: column n of the new line came from column map[n-1].
        let mut map: Vec<u32> = Vec::new();
        let mut new_line = String::with_capacity(body.len() + 4);
        let mut col = 1u32;
        for c in body[..start].chars() {
            new_line.push(c);
            map.push(col);
            col += 1;
        }
        new_line.push('\'');
        map.push(col);
        for c in value[..end].chars() {
            if c == '\'' {
                new_line.push('\'');
                map.push(col);
            }
            new_line.push(c);
            map.push(col);
            col += 1;
        }
        new_line.push('\'');
        map.push(col);
        for c in value[end..].chars() {
            new_line.push(c);
            map.push(col);
            col += 1;
        }
        columns.insert(index as u32 + 1, map);
        out.push_str(&new_line);
        out.push_str(ending);
    }
    (out, columns)
}

/// Where the value of a block mapping entry (`key: value`) or sequence entry (`- value`) starts.
fn value_start(line: &str) -> Option<usize> {
    let mut i = line.len() - line.trim_start_matches(' ').len();
    let bytes = line.as_bytes();
    let mut had_dash = false;
    while bytes.get(i) == Some(&b'-') && matches!(bytes.get(i + 1), Some(b' ')) {
        i += 2;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        had_dash = true;
    }
    let rest = &line[i..];
    // A key: quoted, or plain up to the first `: `.
    let key_end = match rest.as_bytes().first() {
        Some(q @ (b'"' | b'\'')) => rest[1..].find(*q as char).map(|e| e + 2),
        Some(b'#' | b'{' | b'[' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`') | None => {
            None
        }
        Some(_) => rest
            .find(": ")
            .filter(|&e| !rest[..e].contains(" #") && !rest[..e].contains("${{")),
    };
    match key_end {
        Some(e) if rest[e..].starts_with(": ") || rest[e..].starts_with(":\t") => {
            let after = i + e + 1;
            Some(after + (line.len() - after) - line[after..].trim_start().len())
        }
        _ if had_dash => Some(i),
        _ => None,
    }
}

/// Where a plain value holding expressions ends: after its last `}}` and any text up to a ` #`
/// comment outside the expressions, without trailing spaces. `None` when an expression is unclosed.
fn value_end(value: &str) -> Option<usize> {
    let mut i = 0;
    let bytes = value.as_bytes();
    // Steps byte by byte: compare bytes, since `i` may sit inside a multi-byte character.
    while i < bytes.len() {
        if bytes[i..].starts_with(b"${{") {
            let close = crate::expr::find_close(&value[i + 3..])?;
            i += 3 + close + 2;
            continue;
        }
        if bytes[i] == b'#' && i > 0 && bytes[i - 1] == b' ' {
            break;
        }
        i += 1;
    }
    Some(value[..i].trim_end().len())
}

fn size_of_tree(node: &Node) -> usize {
    match &node.kind {
        Kind::Seq(items) => 1 + items.iter().map(size_of_tree).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| size_of_tree(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Result<Kind, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Kind::Null),
        "true" | "True" | "TRUE" => return Ok(Kind::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Kind::Bool(false)),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            return Err(format!(
                "`{text}` is not a JSON number; quote it if you mean the text"
            ));
        }
        _ => {}
    }
    if let Some(n) = parse_int(text) {
        return Ok(Kind::Num(n));
    }
    if is_float(text)
        && let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Ok(Kind::Num(n));
    }
    Ok(Kind::Str(Str {
        value: text.to_string(),
        expr_pos: Vec::new(),
    }))
}

fn parse_int(text: &str) -> Option<Number> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = digits.strip_prefix("0o") {
        (8, d)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        let v = i64::try_from(magnitude).ok()?;
        Some(Number::from(-v))
    } else {
        Some(Number::from(magnitude))
    }
}

fn is_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], Some(&mantissa[i + 1..])),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_entry<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.kind {
            Kind::Map(entries) => &entries.iter().find(|(k, _)| k.name == key).unwrap().1,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn keeps_positions_of_values_and_keys() {
        let doc = parse("name: hello\nsteps:\n  - id: a\n    map: 1\n").unwrap();
        assert_eq!(doc.pos, Pos::new(1, 1));
        let steps = map_entry(&doc, "steps");
        let Kind::Seq(items) = &steps.kind else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos::new(3, 5));
        assert_eq!(map_entry(&items[0], "map").pos, Pos::new(4, 10));
        let Kind::Map(entries) = &items[0].kind else {
            panic!()
        };
        assert_eq!(entries[1].0.pos, Pos::new(4, 5));
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let doc =
            parse("[~, null, true, False, 12, -3, 0x1f, 1.5, 2e3, '12', hello, 1.2.3]").unwrap();
        let json = doc.to_json();
        assert_eq!(
            json,
            serde_json::json!([
                null, null, true, false, 12, -3, 31, 1.5, 2000.0, "12", "hello", "1.2.3"
            ])
        );
    }

    #[test]
    fn rejects_nan_and_duplicate_keys() {
        let err = parse("a: .nan").unwrap_err();
        assert_eq!(err.pos, Pos::new(1, 4));
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(3, 1));
        assert_eq!(err.message, "duplicate key `a` (first at 1:1)");
    }

    #[test]
    fn finds_expression_openers_inside_strings() {
        let doc = parse("a: \"x ${{ .a }} y ${{ .b }}\"\nb: |\n  line\n  at ${{ .c }}\n").unwrap();
        let Kind::Str(s) = &map_entry(&doc, "a").kind else {
            panic!()
        };
        assert_eq!(s.expr_pos, vec![Pos::new(1, 7), Pos::new(1, 19)]);
        let Kind::Str(s) = &map_entry(&doc, "b").kind else {
            panic!()
        };
        assert_eq!(s.expr_pos, vec![Pos::new(4, 6)]);
    }

    #[test]
    fn expressions_need_no_quotes() {
        let src = "a: ${{ {id: .x, n: 1} }}\nb:\n  - ${{ .a # comment }} # yaml comment\n  - k: it's ${{ .b }}\nc: |\n  d: ${{ .raw }}\ne: '${{ .q }}'\n";
        let doc = parse(src).unwrap();
        assert_eq!(
            doc.to_json(),
            serde_json::json!({
                "a": "${{ {id: .x, n: 1} }}",
                "b": ["${{ .a # comment }}", {"k": "it's ${{ .b }}"}],
                "c": "d: ${{ .raw }}\n",
                "e": "${{ .q }}",
            })
        );
        let Kind::Str(s) = &map_entry(&doc, "a").kind else {
            panic!()
        };
        assert_eq!(s.expr_pos, vec![Pos::new(1, 4)]);
        assert_eq!(map_entry(&doc, "a").pos, Pos::new(1, 4));
        let Kind::Seq(items) = &map_entry(&doc, "b").kind else {
            panic!()
        };
        let Kind::Str(s) = &map_entry(&items[1], "k").kind else {
            panic!()
        };
        assert_eq!(s.expr_pos, vec![Pos::new(4, 13)]);
    }

    #[test]
    fn expands_aliases_but_bounds_them() {
        let doc = parse("a: &x {k: 1}\nb: *x\n").unwrap();
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"a": {"k": 1}, "b": {"k": 1}})
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                std::iter::repeat_n(prev.as_str(), 10)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(
            err.message.contains("expands to more than"),
            "{}",
            err.message
        );
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(
            err.message.starts_with("YAML syntax error"),
            "{}",
            err.message
        );
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2);
        let err = parse(&"[".repeat(500)).unwrap_err();
        assert!(
            err.message.contains("nested") || err.message.contains("recursion limit"),
            "{}",
            err.message
        );
    }
}
