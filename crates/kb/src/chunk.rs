//! Cutting a document's text into passages, the unit the knowledge base indexes and returns.
//!
//! A passage is the text under one heading, so an answer comes back with the heading that frames it.
//! Each format has a small reader that turns the file into a flat list of [`Block`]s (headings and
//! lines of text); [`assemble`] then groups the lines under their heading path and cuts sections that
//! are too long into several passages, each keeping its heading.
//!
//! This module is pure: it gets the file's text and stem and does no I/O. It is deliberately not a
//! full Markdown or HTML parser; it only needs to find headings and readable text.

mod html;
mod markdown;

/// The longest passage, in bytes, before a section is cut on paragraph boundaries.
pub(crate) const MAX_SECTION_BYTES: usize = 2_000;

/// How many bytes of paragraphs a plain text file groups into one passage.
pub(crate) const TEXT_PASSAGE_BYTES: usize = 1_500;

/// The file formats the knowledge base reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Markdown: `.md` and `.markdown`.
    Markdown,
    /// Plain text: `.txt`.
    Text,
    /// HTML: `.html` and `.htm`.
    Html,
}

impl Format {
    /// The format of a file with this extension (without the dot), or `None` when the knowledge base
    /// ignores such files.
    pub(crate) fn from_extension(extension: &str) -> Option<Format> {
        match extension.to_ascii_lowercase().as_str() {
            "md" | "markdown" => Some(Format::Markdown),
            "txt" => Some(Format::Text),
            "html" | "htm" => Some(Format::Html),
            _ => None,
        }
    }
}

/// A document cut into passages.
#[derive(Debug, PartialEq)]
pub(crate) struct Document {
    /// The document's title.
    pub title: String,
    /// The passages, in document order. None has empty text.
    pub chunks: Vec<Chunk>,
}

/// One passage of a document.
#[derive(Debug, PartialEq)]
pub(crate) struct Chunk {
    /// The heading path, ancestors first, joined by `" > "`. Empty before the first heading.
    pub heading: String,
    /// The passage's text, with trailing spaces and repeated blank lines removed.
    pub text: String,
}

/// What a format reader finds in a file, in document order.
#[derive(Debug, PartialEq)]
enum Block {
    /// A heading of level 1 to 6 and its text.
    Heading { level: u8, text: String },
    /// A line of text; an empty line separates paragraphs.
    Line(String),
}

/// Cuts `content` into passages. `stem` is the file name without its extension, the title of a
/// document that names none.
pub(crate) fn chunk(format: Format, stem: &str, content: &str) -> Document {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    match format {
        Format::Markdown => {
            let parsed = markdown::parse(content);
            let title = first_h1(&parsed.blocks)
                .or(parsed.front_matter_title)
                .unwrap_or_else(|| stem.to_owned());
            Document {
                title,
                chunks: assemble(parsed.blocks),
            }
        }
        Format::Html => {
            let parsed = html::parse(content);
            let title = parsed
                .title
                .or_else(|| first_h1(&parsed.blocks))
                .unwrap_or_else(|| stem.to_owned());
            Document {
                title,
                chunks: assemble(parsed.blocks),
            }
        }
        Format::Text => {
            let text = tidy(content.lines());
            let chunks = split_long(&text, TEXT_PASSAGE_BYTES)
                .into_iter()
                .map(|text| Chunk {
                    heading: String::new(),
                    text,
                })
                .collect();
            Document {
                title: stem.to_owned(),
                chunks,
            }
        }
    }
}

/// The text of the first non-empty level-1 heading.
fn first_h1(blocks: &[Block]) -> Option<String> {
    blocks.iter().find_map(|block| match block {
        Block::Heading { level: 1, text } if !text.is_empty() => Some(text.clone()),
        _ => None,
    })
}

/// Groups lines under their heading path and cuts long sections.
///
/// A document whose only level-1 heading is also its first heading uses it as a title, the usual
/// shape of a Markdown page; that heading is left out of the heading paths, so a section reads
/// `Refunds` rather than `Support FAQ > Refunds`. Documents with several level-1 headings keep them.
fn assemble(blocks: Vec<Block>) -> Vec<Chunk> {
    let h1_count = blocks
        .iter()
        .filter(|block| matches!(block, Block::Heading { level: 1, .. }))
        .count();
    let first_heading_level = blocks.iter().find_map(|block| match block {
        Block::Heading { level, .. } => Some(*level),
        Block::Line(_) => None,
    });
    let h1_is_title = h1_count == 1 && first_heading_level == Some(1);

    let mut chunks = Vec::new();
    let mut stack: Vec<(u8, String)> = Vec::new();
    let mut heading = String::new();
    let mut lines: Vec<String> = Vec::new();
    for block in blocks {
        match block {
            Block::Heading { level, text } => {
                flush(&heading, &mut lines, &mut chunks);
                stack.retain(|(open, _)| *open < level);
                if !(h1_is_title && level == 1) {
                    stack.push((level, text));
                }
                heading = stack
                    .iter()
                    .map(|(_, text)| text.as_str())
                    .filter(|text| !text.is_empty())
                    .collect::<Vec<_>>()
                    .join(" > ");
            }
            Block::Line(line) => lines.push(line),
        }
    }
    flush(&heading, &mut lines, &mut chunks);
    chunks
}

/// Turns the lines gathered under `heading` into passages, if they hold any text.
fn flush(heading: &str, lines: &mut Vec<String>, chunks: &mut Vec<Chunk>) {
    let text = tidy(lines.iter().map(String::as_str));
    lines.clear();
    for text in split_long(&text, MAX_SECTION_BYTES) {
        chunks.push(Chunk {
            heading: heading.to_owned(),
            text,
        });
    }
}

/// Joins lines with their trailing spaces removed, runs of blank lines reduced to one and no blank
/// lines at either end, so paragraphs are separated by exactly `"\n\n"`.
fn tidy<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::new();
    let mut blank_pending = false;
    for line in lines {
        let line = line.trim_end();
        if line.trim_start().is_empty() {
            blank_pending = !text.is_empty();
            continue;
        }
        if blank_pending {
            text.push_str("\n\n");
            blank_pending = false;
        } else if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
    }
    text
}

/// Cuts tidied text into passages of at most about `max` bytes, on paragraph boundaries where it can,
/// else on line or word boundaries. Empty text gives no passage.
fn split_long(text: &str, max: usize) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    if text.len() <= max {
        return vec![text.to_owned()];
    }
    let mut passages = Vec::new();
    let mut current = String::new();
    for paragraph in text.split("\n\n") {
        for piece in split_paragraph(paragraph, max) {
            if !current.is_empty() && current.len() + 2 + piece.len() > max {
                passages.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(piece);
        }
    }
    if !current.is_empty() {
        passages.push(current);
    }
    passages
}

/// Cuts one paragraph into pieces of at most `max` bytes, preferring the last line break, then the
/// last space, before the limit.
fn split_paragraph(paragraph: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = paragraph;
    while rest.len() > max {
        let limit = rest.floor_char_boundary(max);
        let window = &rest[..limit];
        let cut = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&at| at > 0)
            .unwrap_or(limit.max(rest.ceil_char_boundary(1)));
        pieces.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// What the format tests of `markdown` and `html` share.
#[cfg(test)]
mod testing {
    use super::{Chunk, Format, chunk};

    /// The (heading, text) of each chunk of `text` read as `format`.
    pub(super) fn sections(format: Format, text: &str) -> Vec<(String, String)> {
        chunk(format, "stem", text)
            .chunks
            .into_iter()
            .map(|Chunk { heading, text }| (heading, text))
            .collect()
    }

    /// Owned (heading, text) pairs, to compare with [`sections`].
    pub(super) fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(h, t)| (h.to_string(), t.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headings(doc: &Document) -> Vec<&str> {
        doc.chunks.iter().map(|c| c.heading.as_str()).collect()
    }

    #[test]
    fn formats_are_chosen_by_extension() {
        assert_eq!(Format::from_extension("MD"), Some(Format::Markdown));
        assert_eq!(Format::from_extension("markdown"), Some(Format::Markdown));
        assert_eq!(Format::from_extension("txt"), Some(Format::Text));
        assert_eq!(Format::from_extension("htm"), Some(Format::Html));
        assert_eq!(Format::from_extension("pdf"), None);
    }

    #[test]
    fn text_files_group_paragraphs() {
        let doc = chunk(
            Format::Text,
            "notes",
            "First line\nsame paragraph  \n\n\n\nSecond.\n",
        );
        assert_eq!(doc.title, "notes");
        assert_eq!(
            doc.chunks,
            vec![Chunk {
                heading: String::new(),
                text: "First line\nsame paragraph\n\nSecond.".to_owned(),
            }]
        );
    }

    #[test]
    fn long_text_files_are_cut_between_paragraphs() {
        // 449 bytes each: three fit in one passage, four do not.
        let paragraph = "word ".repeat(90);
        let content = [paragraph.trim(); 7].join("\n\n");
        let doc = chunk(Format::Text, "long", &content);
        assert_eq!(doc.chunks.len(), 3, "{doc:#?}");
        for chunk in &doc.chunks {
            assert!(chunk.text.len() <= TEXT_PASSAGE_BYTES);
            assert!(chunk.text.starts_with("word") && chunk.text.ends_with("word"));
        }
        let words: usize = doc
            .chunks
            .iter()
            .map(|c| c.text.split_whitespace().count())
            .sum();
        assert_eq!(words, 630, "no word is lost");
    }

    #[test]
    fn long_sections_keep_their_heading() {
        let paragraph = format!("{}end.", "refund policy details ".repeat(30));
        let body = [paragraph.as_str(); 8].join("\n\n");
        let doc = chunk(
            Format::Markdown,
            "faq",
            &format!("## Refunds\n\n{body}\n## Next\nshort"),
        );
        let refunds: Vec<_> = doc
            .chunks
            .iter()
            .filter(|c| c.heading == "Refunds")
            .collect();
        assert!(refunds.len() >= 2, "{doc:#?}");
        assert!(refunds.iter().all(|c| c.text.len() <= MAX_SECTION_BYTES));
        assert_eq!(doc.chunks.last().unwrap().heading, "Next");
    }

    #[test]
    fn a_paragraph_without_breaks_is_cut_on_spaces_and_char_boundaries() {
        assert_eq!(
            split_paragraph("aaaa bbbb cccc", 9),
            vec!["aaaa", "bbbb cccc"]
        );
        let accents = "é".repeat(10); // 20 bytes, no space
        let pieces = split_paragraph(&accents, 5);
        assert!(pieces.iter().all(|p| p.len() <= 5 && !p.is_empty()));
        assert_eq!(pieces.concat(), accents);
    }

    #[test]
    fn tidy_drops_trailing_spaces_and_extra_blank_lines() {
        assert_eq!(tidy(["", "  ", "a  ", "", "", "  b", ""]), "a\n\n  b");
    }

    #[test]
    fn the_lone_first_h1_is_the_title_not_part_of_paths() {
        let doc = chunk(
            Format::Markdown,
            "faq",
            "# Support FAQ\nWelcome.\n## Returns\nIntro.\n### Refunds\nFive days.\n",
        );
        assert_eq!(doc.title, "Support FAQ");
        assert_eq!(headings(&doc), vec!["", "Returns", "Returns > Refunds"]);
    }

    #[test]
    fn several_h1s_stay_in_the_paths() {
        let doc = chunk(
            Format::Markdown,
            "guide",
            "# Part one\n## A\nx\n# Part two\n## B\ny\n",
        );
        assert_eq!(doc.title, "Part one");
        assert_eq!(headings(&doc), vec!["Part one > A", "Part two > B"]);
    }
}
