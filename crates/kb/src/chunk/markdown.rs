//! Finding the headings of a Markdown file, line by line.
//!
//! It recognises ATX headings (`## Refunds ##`), setext headings (a line underlined with `===` or
//! `---`), fenced code blocks (whose lines are never headings) and YAML front matter (read for its
//! `title:` and otherwise left out of the text). Everything else is kept as written, so a passage
//! reads like the source; the search analyzer ignores the Markdown punctuation anyway.

use super::Block;

/// A Markdown file read into blocks.
pub(super) struct Parsed {
    /// The `title:` of the front matter, if there is one.
    pub front_matter_title: Option<String>,
    /// Headings and lines, in order; front matter excluded.
    pub blocks: Vec<Block>,
}

/// Reads a Markdown file into blocks.
pub(super) fn parse(text: &str) -> Parsed {
    let lines: Vec<&str> = text.lines().collect();
    let (front_matter_title, body_start) = front_matter(&lines);

    let mut blocks = Vec::new();
    let mut fence: Option<Fence> = None;
    // Whether the next line would begin a paragraph, and whether the last line was a one-line
    // paragraph that a setext underline may turn into a heading.
    let mut at_paragraph_start = true;
    let mut setext_candidate = false;
    for &line in &lines[body_start..] {
        if let Some(open) = &fence {
            if open.is_closed_by(line) {
                fence = None;
                at_paragraph_start = true;
            }
            blocks.push(Block::Line(line.to_owned()));
            continue;
        }
        if let Some(open) = Fence::opened_by(line) {
            fence = Some(open);
            setext_candidate = false;
            blocks.push(Block::Line(line.to_owned()));
            continue;
        }
        if let Some((level, text)) = atx_heading(line) {
            blocks.push(Block::Heading { level, text });
            setext_candidate = false;
            at_paragraph_start = true;
            continue;
        }
        // The candidate line is always the last block, so popping it here loses nothing.
        if setext_candidate
            && let Some(level) = setext_underline(line)
            && let Some(Block::Line(text)) = blocks.pop()
        {
            blocks.push(Block::Heading {
                level,
                text: plain_inline(text.trim()),
            });
            setext_candidate = false;
            at_paragraph_start = true;
            continue;
        }
        if is_thematic_break(line) {
            // A horizontal rule separates paragraphs; its characters are not text.
            blocks.push(Block::Line(String::new()));
            setext_candidate = false;
            at_paragraph_start = true;
            continue;
        }
        let blank = line.trim().is_empty();
        setext_candidate = !blank && at_paragraph_start && may_be_setext_text(line);
        at_paragraph_start = blank;
        blocks.push(Block::Line(line.to_owned()));
    }
    Parsed {
        front_matter_title,
        blocks,
    }
}

/// Finds YAML front matter: a first line `---` and a closing `---` or `...` line. Returns its
/// `title:` and the index of the first line after it (0 when there is no front matter).
fn front_matter(lines: &[&str]) -> (Option<String>, usize) {
    if lines.first().map(|line| line.trim_end()) != Some("---") {
        return (None, 0);
    }
    let Some(end) = lines
        .iter()
        .skip(1)
        .position(|line| matches!(line.trim_end(), "---" | "..."))
        .map(|at| at + 1)
    else {
        return (None, 0);
    };
    let title = lines[1..end].iter().find_map(|line| {
        let value = line.strip_prefix("title:")?.trim();
        let value = strip_quotes(value).trim();
        (!value.is_empty()).then(|| value.to_owned())
    });
    (title, end + 1)
}

/// Removes one pair of matching single or double quotes around a YAML scalar.
fn strip_quotes(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// Removes the up to three spaces of indentation a block may have; `None` for a line indented by
/// four or more, which Markdown reads as code.
fn block_indent(line: &str) -> Option<&str> {
    let rest = line.trim_start_matches(' ');
    (line.len() - rest.len() <= 3).then_some(rest)
}

/// An ATX heading (`#` to `######` then a space) and its text without the closing `#`s.
fn atx_heading(line: &str) -> Option<(u8, String)> {
    let rest = block_indent(line)?;
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &rest[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut text = rest.trim();
    let without_closing = text.trim_end_matches('#');
    if without_closing.is_empty() {
        text = "";
    } else if without_closing.ends_with([' ', '\t']) {
        text = without_closing.trim_end();
    }
    Some((level as u8, plain_inline(text)))
}

/// The level a setext underline gives the line above it: 1 for `===`, 2 for `---`.
fn setext_underline(line: &str) -> Option<u8> {
    let rest = block_indent(line)?.trim_end();
    if !rest.is_empty() && rest.bytes().all(|b| b == b'=') {
        Some(1)
    } else if rest.len() >= 2 && rest.bytes().all(|b| b == b'-') {
        Some(2)
    } else {
        None
    }
}

/// Whether a line may be the text of a setext heading: not a list item, quote or table row, which
/// an underline below would not turn into a heading.
fn may_be_setext_text(line: &str) -> bool {
    let Some(rest) = block_indent(line) else {
        return false;
    };
    let ordered_item = {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(['.', ')'])
    };
    !ordered_item && !rest.starts_with(['-', '*', '+', '>', '|'])
}

/// A line of three or more `-`, `*` or `_` (spaces allowed between them), a horizontal rule.
fn is_thematic_break(line: &str) -> bool {
    let Some(rest) = block_indent(line) else {
        return false;
    };
    let marks: Vec<char> = rest.chars().filter(|c| !c.is_whitespace()).collect();
    marks.len() >= 3
        && matches!(marks[0], '-' | '*' | '_')
        && marks.iter().all(|&c| c == marks[0])
        && rest.chars().all(|c| c == marks[0] || c == ' ' || c == '\t')
}

/// An open fenced code block: its character and how many of them opened it.
struct Fence {
    mark: char,
    len: usize,
}

impl Fence {
    /// The fence a line opens: three or more backticks or tildes.
    fn opened_by(line: &str) -> Option<Fence> {
        let rest = block_indent(line)?;
        let mark = rest.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let len = rest.chars().take_while(|&c| c == mark).count();
        (len >= 3).then_some(Fence { mark, len })
    }

    /// Whether a line closes this fence: at least as many of the same character and nothing else.
    fn is_closed_by(&self, line: &str) -> bool {
        let Some(rest) = block_indent(line) else {
            return false;
        };
        let rest = rest.trim_end();
        let len = rest.chars().take_while(|&c| c == self.mark).count();
        len >= self.len && len == rest.chars().count()
    }
}

/// Heading text without the inline Markdown that would look odd in a heading path: code
/// backticks, `**` emphasis and link targets (`[text](url)` becomes `text`).
fn plain_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let target = &after[close + 2..];
            target.find(')').map(|end| (close, close + 2 + end + 1))
        });
        match link {
            Some((close, end)) => {
                out.push_str(&rest[..open]);
                out.push_str(&after[..close]);
                rest = &after[end..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("**", "").replace('`', "").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::testing::pairs;
    use super::super::{Chunk, Format, chunk};
    use super::*;

    fn sections(markdown: &str) -> Vec<(String, String)> {
        super::super::testing::sections(Format::Markdown, markdown)
    }

    #[test]
    fn atx_headings_start_sections_with_nested_paths() {
        let md = "Intro text.\n\n## Returns\nSend it back.\n### Refunds ###\nMoney back in 5 days.\n\
                  #### Card\nTo the card.\n## Shipping\nTwo days.\n";
        assert_eq!(
            sections(md),
            pairs(&[
                ("", "Intro text."),
                ("Returns", "Send it back."),
                ("Returns > Refunds", "Money back in 5 days."),
                ("Returns > Refunds > Card", "To the card."),
                ("Shipping", "Two days."),
            ])
        );
    }

    #[test]
    fn atx_heading_edge_cases() {
        assert_eq!(atx_heading("# Title"), Some((1, "Title".into())));
        assert_eq!(
            atx_heading("   ###### Six #####  "),
            Some((6, "Six".into()))
        );
        assert_eq!(atx_heading("## C#"), Some((2, "C#".into())));
        assert_eq!(atx_heading("## ##"), Some((2, String::new())));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(atx_heading("    # indented code"), None);
        assert_eq!(
            atx_heading("## The `kb` [folder](https://x.test/a) **now**"),
            Some((2, "The kb folder now".into()))
        );
    }

    #[test]
    fn headings_inside_code_fences_are_text() {
        let md = "## Setup\n```sh\n# not a heading\n```\n~~~~\n## nor this\n~~~\nstill code\n~~~~\n## Use\nRun it.\n";
        assert_eq!(
            sections(md),
            pairs(&[
                (
                    "Setup",
                    "```sh\n# not a heading\n```\n~~~~\n## nor this\n~~~\nstill code\n~~~~"
                ),
                ("Use", "Run it."),
            ])
        );
    }

    #[test]
    fn front_matter_gives_the_title_and_is_not_text() {
        let doc = chunk(
            Format::Markdown,
            "stem",
            "---\nlayout: page\ntitle: \"Help centre\"\n---\nHello.\n## Hours\nNine to five.\n",
        );
        assert_eq!(doc.title, "Help centre");
        assert_eq!(
            doc.chunks,
            vec![
                Chunk {
                    heading: String::new(),
                    text: "Hello.".into()
                },
                Chunk {
                    heading: "Hours".into(),
                    text: "Nine to five.".into()
                },
            ]
        );
    }

    #[test]
    fn the_title_falls_back_from_h1_to_front_matter_to_stem() {
        let title = |md: &str| chunk(Format::Markdown, "file-stem", md).title;
        assert_eq!(
            title("---\ntitle: Front\n---\n# Heading one\n"),
            "Heading one"
        );
        assert_eq!(title("---\ntitle: 'Front'\n---\n## Two\n"), "Front");
        assert_eq!(title("## Two\ntext\n"), "file-stem");
        // An unclosed front matter block is ordinary text.
        assert_eq!(title("---\ntitle: Front\n"), "file-stem");
    }

    #[test]
    fn setext_headings_are_recognised() {
        let md = "Guide\n=====\nWelcome.\n\nRefunds\n-------\nFive days.\n\n- item\n--\n\ntext\nmore text\n---\nend\n";
        assert_eq!(
            sections(md),
            pairs(&[
                ("", "Welcome."),
                (
                    "Refunds",
                    "Five days.\n\n- item\n--\n\ntext\nmore text\n\nend"
                ),
            ])
        );
        assert_eq!(chunk(Format::Markdown, "stem", md).title, "Guide");
    }

    #[test]
    fn thematic_breaks_are_not_text() {
        assert!(is_thematic_break("***"));
        assert!(is_thematic_break(" - - -"));
        assert!(!is_thematic_break("--"));
        assert!(!is_thematic_break("-*-"));
        assert_eq!(sections("a\n\n***\n\nb"), pairs(&[("", "a\n\nb")]));
    }

    #[test]
    fn sections_without_text_are_skipped() {
        assert_eq!(
            sections("# Title\n## Empty\n\n## Full\nx\n"),
            pairs(&[("Full", "x")])
        );
        assert!(sections("").is_empty());
    }

    #[test]
    fn crlf_line_endings_and_a_bom_are_handled() {
        assert_eq!(
            sections("\u{feff}## Hours\r\nNine to five.\r\n"),
            pairs(&[("Hours", "Nine to five.")])
        );
    }
}
