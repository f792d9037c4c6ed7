//! The searchable index of one knowledge base folder, and how a question is scored against it.
//!
//! [`Kb::load`] reads the folder, cuts every file into passages and indexes them in memory with
//! tantivy. Each passage is one document with three analyzed fields, its heading path, its file's
//! title and its text, plus its position in [`Kb`]'s own list of passages, which holds what a search
//! returns. A [`Kb`] never changes once built; [`crate::Library`] swaps in a new one when the folder
//! changes.
//!
//! A question is not parsed as a query language. It goes through the same analyzer as the documents
//! and each remaining term is looked up in the three fields, so quotes, colons, `AND` or `-` in a
//! user's question are just words or punctuation and can never cause an error. The BM25 scores of
//! the fields are added with boosts that favour headings: a question whose words are a section's
//! heading is about that section.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::chunk;
use crate::files::{self, SourceFile};
use crate::{KbError, analyzer};

/// The most passages one search returns, whatever limit is asked for.
pub const MAX_LIMIT: usize = 50;

/// The score a passage needs for [`Kb::ask`] to count it as an answer, when the caller has no
/// better value.
///
/// Two rules keep off-topic questions from matching. First, function words ("how", "do", "my") are
/// not search terms, so a passage only scores when it shares a meaningful word with the question;
/// "How do I bake sourdough bread?" finds nothing at all in a support FAQ. Second, this floor drops
/// passages whose only shared words are common in the knowledge base ("day", "send").
///
/// Scores are in units of one distinctive word (see [`Passage::score`]), so the floor means about
/// the same in a knowledge base of ten passages and of a thousand: 0.75 asks for a word that few
/// passages contain, found in a passage's text, or a more common word found in a heading. In the
/// FAQ corpus of this crate's tests, on-topic questions, paraphrased ones ("refunding an order")
/// included, score 0.89 to 5.7, and questions that only share a common word score 0.46 to 0.63.
/// Matching is lexical: a question that shares a heading word by chance ("what time is it in
/// Tokyo" and "Shipping times") still matches.
pub const DEFAULT_MIN_SCORE: f32 = 0.75;

/// How much a match in a heading counts: a question that names a section is about that section.
const HEADING_BOOST: f32 = 2.5;
/// How much a match in a document's title counts.
const TITLE_BOOST: f32 = 1.5;
/// How much a match in a passage's text counts.
const BODY_BOOST: f32 = 1.0;

/// The most distinct terms of a question that are searched; the rest of a pasted essay is ignored.
const MAX_QUESTION_TERMS: usize = 64;

/// The indexing memory budget: tantivy's minimum for one thread, enough for any folder because
/// tantivy writes a segment whenever it is full.
const WRITER_MEMORY_BYTES: usize = 15_000_000;

/// A passage of a knowledge base document, as a search returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Passage {
    /// The document's title: its first level-1 heading or `<title>`, else the file name without
    /// extension.
    pub title: String,
    /// The file, relative to the knowledge base folder, with `/` separators.
    pub source: String,
    /// The heading path of the passage, ancestors first, joined by `" > "`, such as
    /// `Returns > Refunds`. Empty for text before the first heading and for plain text files.
    pub heading: String,
    /// The passage's text, as written in the file (HTML without its tags).
    pub text: String,
    /// How well the passage matches the question; higher is better. Zero outside search results.
    ///
    /// It is the passage's BM25 score divided by the score unit of its knowledge base: the inverse
    /// document frequency of a word that only one passage contains. A passage of average length that
    /// contains such a word of the question once in its text scores about 1.0, whatever the size of
    /// the knowledge base; each further matching word adds to it, and matches in a heading count 2.5
    /// times, in a title 1.5 times.
    pub score: f32,
}

/// The answer to a question: the passages that reach the score floor, best first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hits {
    /// The passages whose score reaches the floor, best first.
    pub passages: Vec<Passage>,
    /// Whether any passage reached the floor. When false, the knowledge base has no good answer and
    /// a workflow should hand over to a person.
    pub matched: bool,
    /// The best score found, even when it is below the floor; `None` when nothing matched at all.
    /// Useful for tuning the floor.
    pub best_score: Option<f32>,
}

/// The fields of the index.
#[derive(Clone, Copy)]
struct Fields {
    title: Field,
    heading: Field,
    body: Field,
    /// The passage's position in [`Kb::passages`].
    ord: Field,
}

/// An immutable, in-memory index of the passages of one knowledge base folder.
pub struct Kb {
    passages: Vec<Passage>,
    files: usize,
    reader: IndexReader,
    fields: Fields,
    analyzer: TextAnalyzer,
    /// The BM25 inverse document frequency of a word found in one passage, the unit of
    /// [`Passage::score`].
    score_unit: f32,
}

impl fmt::Debug for Kb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kb")
            .field("files", &self.files)
            .field("passages", &self.passages.len())
            .finish_non_exhaustive()
    }
}

impl Kb {
    /// Reads and indexes the Markdown (`.md`, `.markdown`), text (`.txt`) and HTML (`.html`,
    /// `.htm`) files under `dir`, recursively, skipping hidden files and folders.
    ///
    /// A folder that does not exist gives an empty knowledge base. A file that cannot be read, is
    /// not UTF-8 or is larger than [`crate::MAX_FILE_BYTES`] is an error naming the file.
    pub fn load(dir: &Path) -> Result<Kb, KbError> {
        Kb::from_files(&files::list(dir)?)
    }

    /// Reads, cuts and indexes listed files.
    pub(crate) fn from_files(files: &[SourceFile]) -> Result<Kb, KbError> {
        let mut passages = Vec::new();
        for file in files {
            let text = files::read(file)?;
            let stem = file
                .path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let document = chunk::chunk(file.format, &stem, &text);
            passages.extend(document.chunks.into_iter().map(|chunk| Passage {
                title: document.title.clone(),
                source: file.rel.clone(),
                heading: chunk.heading,
                text: chunk.text,
                score: 0.0,
            }));
        }
        Kb::index(passages, files.len()).map_err(|source| KbError::Index { source })
    }

    /// Builds the index of `passages`.
    fn index(passages: Vec<Passage>, files: usize) -> tantivy::Result<Kb> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        let analyzer = analyzer::analyzer();
        index
            .tokenizers()
            .register(analyzer::NAME, analyzer.clone());

        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        // Merging would only cost time: the index is built once and never updated.
        writer.set_merge_policy(Box::new(NoMergePolicy));
        for (ord, passage) in passages.iter().enumerate() {
            let mut document = TantivyDocument::default();
            document.add_text(fields.title, &passage.title);
            document.add_text(fields.heading, &passage.heading);
            document.add_text(fields.body, &passage.text);
            document.add_u64(fields.ord, ord as u64);
            writer.add_document(document)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Kb {
            score_unit: score_unit(passages.len()),
            passages,
            files,
            reader,
            fields,
            analyzer,
        })
    }

    /// The number of passages.
    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// Whether the knowledge base has no passage at all.
    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The number of files read, including files that gave no passage.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The passages that share at least one meaningful word with `question`, best first, at most
    /// `limit` of them and never more than [`MAX_LIMIT`].
    ///
    /// Any text is a valid question; one with no meaningful word ("how?", "", "!!!") finds nothing.
    pub fn search(&self, question: &str, limit: usize) -> Result<Vec<Passage>, KbError> {
        let limit = limit.min(MAX_LIMIT);
        if limit == 0 || self.passages.is_empty() {
            return Ok(Vec::new());
        }
        let mut terms = analyzer::terms(&mut self.analyzer.clone(), question);
        terms.truncate(MAX_QUESTION_TERMS);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let fields = [
            (self.fields.heading, HEADING_BOOST),
            (self.fields.title, TITLE_BOOST),
            (self.fields.body, BODY_BOOST),
        ];
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .flat_map(|term| {
                fields.map(|(field, boost)| {
                    let term = Term::from_field_text(field, term);
                    let query = TermQuery::new(term, IndexRecordOption::WithFreqs);
                    let query: Box<dyn Query> = Box::new(BoostQuery::new(Box::new(query), boost));
                    (Occur::Should, query)
                })
            })
            .collect();

        let search_error = |source| KbError::Search { source };
        let searcher = self.reader.searcher();
        let top = searcher
            .search(
                &BooleanQuery::new(clauses),
                &TopDocs::with_limit(limit).order_by_score(),
            )
            .map_err(search_error)?;
        let mut passages = Vec::with_capacity(top.len());
        for (score, address) in top {
            let document: TantivyDocument = searcher.doc(address).map_err(search_error)?;
            let ord = document
                .get_first(self.fields.ord)
                .and_then(|value| value.as_u64())
                .expect("every indexed passage stores its position");
            let mut passage = self.passages[ord as usize].clone();
            passage.score = score / self.score_unit;
            passages.push(passage);
        }
        Ok(passages)
    }

    /// Searches like [`Kb::search`] and keeps the passages scoring at least `min_score`
    /// (usually [`DEFAULT_MIN_SCORE`]), telling whether the knowledge base has an answer.
    pub fn ask(&self, question: &str, limit: usize, min_score: f32) -> Result<Hits, KbError> {
        let passages = self.search(question, limit)?;
        let best_score = passages.first().map(|passage| passage.score);
        let passages: Vec<Passage> = passages
            .into_iter()
            .filter(|passage| passage.score >= min_score)
            .collect();
        Ok(Hits {
            matched: !passages.is_empty(),
            passages,
            best_score,
        })
    }
}

/// The inverse document frequency, as BM25 computes it, of a word that one of `passages` contains.
fn score_unit(passages: usize) -> f32 {
    let others = passages.saturating_sub(1) as f32;
    (1.0 + (others + 0.5) / 1.5).ln()
}

/// The index schema: three analyzed text fields and the stored passage position.
fn schema() -> (Schema, Fields) {
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analyzer::NAME)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let mut builder = Schema::builder();
    let fields = Fields {
        title: builder.add_text_field("title", text.clone()),
        heading: builder.add_text_field("heading", text.clone()),
        body: builder.add_text_field("body", text),
        ord: builder.add_u64_field("ord", STORED),
    };
    (builder.build(), fields)
}

#[cfg(test)]
mod tests;
