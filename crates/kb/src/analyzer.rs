//! How text becomes search terms, the same way for documents and for questions.
//!
//! Words are split on anything that is not a letter or digit, lowercased, folded to ASCII
//! (`café` → `cafe`), stripped of common function words and reduced to their English stem
//! (`refunded`, `refunds` → `refund`). Removing function words matters for matching questions: in
//! "how do I bake bread", only `bake` and `bread` say what the question is about, and a passage that
//! shares nothing but "how" and "do" with a question is not an answer to it. Our list is therefore
//! longer than the usual search-engine list and includes question words and pronouns.

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream,
};

/// The name the analyzer is registered under in the index.
pub(crate) const NAME: &str = "en_stem";

/// Words longer than this many bytes are dropped; they are data (hashes, URLs), not words.
const MAX_WORD_BYTES: usize = 40;

/// Function words that never decide whether a passage answers a question.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but", "by",
    "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "hello", "her",
    "hers", "hi", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "me",
    "my", "no", "not", "of", "on", "or", "our", "ours", "please", "she", "should", "so", "some",
    "such", "than", "thank", "thanks", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "us", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "whose", "why", "will", "with", "would", "you", "your",
    "yours",
    // What is left of contractions once the apostrophe splits them ("don't" → "don", "t").
    "aren", "couldn", "d", "didn", "doesn", "don", "isn", "ll", "m", "re", "s", "shouldn", "t",
    "ve", "wasn", "won", "wouldn",
];

/// The analyzer for every text field and for questions.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|word| (*word).to_owned()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The distinct terms of `text`, in the order they first appear.
pub(crate) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let term = &stream.token().text;
        if !terms.contains(term) {
            terms.push(term.clone());
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms_of(text: &str) -> Vec<String> {
        terms(&mut analyzer(), text)
    }

    #[test]
    fn words_are_lowercased_folded_and_stemmed() {
        assert_eq!(
            terms_of("Refunded REFUNDS, shipping: Café"),
            vec!["refund", "ship", "cafe"]
        );
    }

    #[test]
    fn question_words_are_not_terms() {
        assert_eq!(
            terms_of("How do I bake sourdough bread?"),
            vec!["bake", "sourdough", "bread"]
        );
        assert_eq!(terms_of("Why don't you? What is it?"), Vec::<String>::new());
    }

    #[test]
    fn query_syntax_is_plain_text() {
        assert_eq!(
            terms_of(r#"refund AND "title:shipping" -(opening*)"#),
            vec!["refund", "titl", "ship", "open"]
        );
    }

    #[test]
    fn very_long_words_are_dropped() {
        assert_eq!(
            terms_of(&format!("{} refund", "x".repeat(41))),
            vec!["refund"]
        );
    }
}
