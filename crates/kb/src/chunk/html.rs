//! Reading the headings and visible text of an HTML page with a small hand-written scanner.
//!
//! The scanner walks the page once. It takes the `<title>`, turns `<h1>`…`<h6>` into headings,
//! drops comments and the content of `<head>`, `<script>`, `<style>` and similar elements, turns
//! block elements into paragraph breaks, removes all other tags, decodes the common character
//! references and collapses whitespace. It does not build a tree and does not try to repair broken
//! markup; a `<` that does not start a tag is kept as text.

use std::borrow::Cow;

use super::Block;

/// Elements whose content is never visible text; it is skipped up to the closing tag.
const HIDDEN: &[&str] = &["script", "style", "template", "noscript", "svg"];

/// Elements that end a paragraph.
const PARAGRAPH_BREAKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "nav",
    "aside",
    "ul",
    "ol",
    "dl",
    "table",
    "blockquote",
    "pre",
    "hr",
    "form",
    "figure",
    "details",
    "summary",
];

/// Elements that end a line.
const LINE_BREAKS: &[&str] = &["br", "li", "tr", "dt", "dd", "caption", "figcaption"];

/// An HTML page read into blocks.
pub(super) struct Parsed {
    /// The text of the first `<title>`, if not empty.
    pub title: Option<String>,
    /// Headings and lines of visible text, in order.
    pub blocks: Vec<Block>,
}

/// Reads an HTML page into blocks.
pub(super) fn parse(html: &str) -> Parsed {
    // Tag names and closing tags are searched in an ASCII-lowercased copy, which has the same byte
    // offsets as the original, so slices of either line up.
    let lower = html.to_ascii_lowercase();
    let mut out = Output::default();
    let mut in_head = false;
    let mut pos = 0;
    while pos < html.len() {
        let Some(lt) = html[pos..].find('<').map(|at| pos + at) else {
            out.text(&html[pos..], in_head);
            break;
        };
        out.text(&html[pos..lt], in_head);
        let rest = &lower[lt..];
        if rest.starts_with("<!--") {
            pos = find_after(&lower, lt + 4, "-->");
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            pos = find_after(&lower, lt, ">");
            continue;
        }
        let Some(tag) = Tag::at(&lower, lt) else {
            out.text("<", in_head);
            pos = lt + 1;
            continue;
        };
        pos = tag.end;
        let name = tag.name;
        if tag.closing {
            match name {
                "head" => in_head = false,
                _ if heading_level(name).is_some() => out.end_heading(),
                _ if PARAGRAPH_BREAKS.contains(&name) => out.paragraph_break(),
                _ if LINE_BREAKS.contains(&name) => out.line_break(),
                _ => {}
            }
            continue;
        }
        match name {
            "head" => in_head = true,
            "body" => in_head = false,
            "title" => {
                let end = closing_tag(&lower, pos, "title");
                if out.title.is_none() {
                    let title = collapse_whitespace(&decode_entities(&html[pos..end.start]));
                    out.title = (!title.is_empty()).then_some(title);
                }
                pos = end.end;
            }
            _ if HIDDEN.contains(&name) && !tag.self_closing => {
                pos = closing_tag(&lower, pos, name).end;
            }
            _ => {
                if let Some(level) = heading_level(name) {
                    out.start_heading(level);
                } else if PARAGRAPH_BREAKS.contains(&name) {
                    out.paragraph_break();
                } else if LINE_BREAKS.contains(&name) {
                    out.line_break();
                } else if matches!(name, "td" | "th") {
                    out.text(" ", in_head);
                }
            }
        }
    }
    out.finish()
}

/// The offset just past the next `needle` at or after `from`, or the end of the text.
fn find_after(lower: &str, from: usize, needle: &str) -> usize {
    lower[from..]
        .find(needle)
        .map_or(lower.len(), |at| from + at + needle.len())
}

/// Where an element's content ends (`start`) and where the text after its closing tag begins
/// (`end`). An element that is never closed runs to the end of the page.
fn closing_tag(lower: &str, from: usize, name: &str) -> std::ops::Range<usize> {
    let needle = format!("</{name}");
    match lower[from..].find(&needle) {
        Some(at) => from + at..find_after(lower, from + at, ">"),
        None => lower.len()..lower.len(),
    }
}

/// The level of a heading element name (`h1` to `h6`).
fn heading_level(name: &str) -> Option<u8> {
    match name.as_bytes() {
        [b'h', digit @ b'1'..=b'6'] => Some(digit - b'0'),
        _ => None,
    }
}

/// A start or end tag found in the lowercased page.
struct Tag<'a> {
    /// The element name, lowercase.
    name: &'a str,
    /// Whether it is an end tag (`</p>`).
    closing: bool,
    /// Whether it ends with `/>`.
    self_closing: bool,
    /// The offset just past its `>`.
    end: usize,
}

impl<'a> Tag<'a> {
    /// Reads the tag that starts at `lt`, the offset of a `<`. `None` when the `<` does not start a
    /// tag (it is not followed by a letter, or no `>` closes it).
    fn at(lower: &'a str, lt: usize) -> Option<Tag<'a>> {
        let mut start = lt + 1;
        let closing = lower[start..].starts_with('/');
        if closing {
            start += 1;
        }
        let name_len = lower[start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if !lower[start..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let name = &lower[start..start + name_len];
        // Find the `>` that ends the tag, ignoring any inside quoted attribute values.
        let mut quote = None;
        for (at, c) in lower[start + name_len..].char_indices() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(open), _) if c == open => quote = None,
                (None, '>') => {
                    let end = start + name_len + at + 1;
                    let self_closing = lower[..end - 1].ends_with('/');
                    return Some(Tag {
                        name,
                        closing,
                        self_closing,
                        end,
                    });
                }
                _ => {}
            }
        }
        None
    }
}

/// The blocks being built, with the paragraph or heading text being collected.
#[derive(Default)]
struct Output {
    title: Option<String>,
    blocks: Vec<Block>,
    paragraph: String,
    /// The level and text of the heading being read, between `<hN>` and `</hN>`.
    heading: Option<(u8, String)>,
}

impl Output {
    /// Adds raw text from between tags: character references decoded, whitespace collapsed.
    fn text(&mut self, raw: &str, in_head: bool) {
        if in_head || raw.is_empty() {
            return;
        }
        let target = match &mut self.heading {
            Some((_, text)) => text,
            None => &mut self.paragraph,
        };
        for c in decode_entities(raw).chars() {
            if c.is_whitespace() {
                if !target.is_empty() && !target.ends_with(' ') {
                    target.push(' ');
                }
            } else {
                target.push(c);
            }
        }
    }

    /// Ends the current line of text.
    fn line_break(&mut self) {
        let line = self.paragraph.trim();
        if !line.is_empty() {
            self.blocks.push(Block::Line(line.to_owned()));
        }
        self.paragraph.clear();
    }

    /// Ends the current paragraph, and a heading left open: a block element never belongs to a
    /// heading's text.
    fn paragraph_break(&mut self) {
        self.end_heading();
        self.line_break();
        self.blocks.push(Block::Line(String::new()));
    }

    /// Begins collecting the text of a heading.
    fn start_heading(&mut self, level: u8) {
        self.paragraph_break();
        self.heading = Some((level, String::new()));
    }

    /// Ends the heading being collected, if any.
    fn end_heading(&mut self) {
        if let Some((level, text)) = self.heading.take() {
            self.blocks.push(Block::Heading {
                level,
                text: text.trim().to_owned(),
            });
        }
    }

    /// Ends the page: whatever is still open becomes a block.
    fn finish(mut self) -> Parsed {
        self.end_heading();
        self.line_break();
        Parsed {
            title: self.title,
            blocks: self.blocks,
        }
    }
}

/// Collapses every run of whitespace into one space and trims the ends.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the character references pages commonly use: `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`,
/// `&nbsp;`, a few typographic ones, and numeric references (`&#39;`, `&#x2019;`). Anything else is
/// left as written.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest
            .get(1..rest.len().min(12))
            .and_then(|window| window.find(';'))
            .and_then(|semi| Some((entity(&rest[1..semi + 1])?, semi + 2)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character a reference name (between `&` and `;`) stands for.
fn entity(name: &str) -> Option<char> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "copy" => '©',
        "reg" => '®',
        "euro" => '€',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            return Some(
                char::from_u32(code)
                    .filter(|&c| c != '\0')
                    .unwrap_or(char::REPLACEMENT_CHARACTER),
            );
        }
    };
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::super::testing::pairs;
    use super::super::{Format, chunk};
    use super::*;

    fn sections(html: &str) -> Vec<(String, String)> {
        super::super::testing::sections(Format::Html, html)
    }

    #[test]
    fn headings_start_sections_and_tags_are_removed() {
        let html = r#"<!DOCTYPE html>
<html><head><title>Help &amp; support</title>
<meta charset="utf-8"><style>h1 { color: red }</style>
<script>var x = "<h2>not a heading</h2>";</script></head>
<body>
<h1>Help</h1>
<p>Welcome to   the
   <a href="/faq" title="a > b">help</a> pages.</p>
<h2>Returns</h2><p>Send it back.</p>
<h3 class="x">Refunds <em>policy</em></h3>
<p>Money back</p><p>in five days.</p>
<ul><li>Card</li><li>Cash</li></ul>
<!-- <h2>Hidden</h2> -->
</body></html>"#;
        let doc = chunk(Format::Html, "stem", html);
        assert_eq!(doc.title, "Help & support");
        assert_eq!(
            sections(html),
            pairs(&[
                ("", "Welcome to the help pages."),
                ("Returns", "Send it back."),
                (
                    "Returns > Refunds policy",
                    "Money back\n\nin five days.\n\nCard\nCash"
                ),
            ])
        );
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            decode_entities(
                "a &amp; b &lt;c&gt; &quot;d&quot; &#39;e&#39; f&nbsp;g &#x41;&#66; &rsquo;"
            ),
            "a & b <c> \"d\" 'e' f\u{a0}g AB ’"
        );
        assert_eq!(
            decode_entities("AT&T &unknown; & &#xZZ; &#0;"),
            "AT&T &unknown; & &#xZZ; \u{fffd}"
        );
        assert_eq!(
            sections("<p>fish&nbsp;&amp;&nbsp;chips</p>"),
            pairs(&[("", "fish & chips")])
        );
    }

    #[test]
    fn scripts_styles_and_comments_are_dropped() {
        let html = "<p>before</p><SCRIPT type=\"x\">alert('<p>no</p>')</SCRIPT><style>p{}</style>\
                    <!-- gone --><p>after</p><noscript>enable js</noscript>";
        assert_eq!(sections(html), pairs(&[("", "before\n\nafter")]));
    }

    #[test]
    fn the_title_falls_back_to_the_first_h1_then_the_stem() {
        assert_eq!(
            chunk(Format::Html, "stem", "<h1>Top</h1><p>x</p>").title,
            "Top"
        );
        assert_eq!(
            chunk(Format::Html, "stem", "<title> </title><p>x</p>").title,
            "stem"
        );
    }

    #[test]
    fn a_stray_less_than_sign_is_text() {
        assert_eq!(
            sections("<p>1 < 2 and 3 <4</p>"),
            pairs(&[("", "1 < 2 and 3 <4")])
        );
    }

    #[test]
    fn unclosed_elements_do_not_lose_text() {
        assert_eq!(
            sections("<h2>Hours<p>Nine to five"),
            pairs(&[("Hours", "Nine to five")])
        );
        assert_eq!(
            sections("<p>text</p><script>never closed"),
            pairs(&[("", "text")])
        );
    }

    #[test]
    fn a_page_without_a_body_tag_is_read() {
        assert_eq!(
            sections("<head><title>T</title></head>Plain words"),
            pairs(&[("", "Plain words")])
        );
    }
}
