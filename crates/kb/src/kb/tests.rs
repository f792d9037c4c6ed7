//! Search tests against the support corpus in [`crate::test_corpus`]: ranking, stemming, the
//! score floor, odd questions and loading errors.

use std::fs;

use super::*;
use crate::test_corpus;

fn corpus() -> (tempfile::TempDir, Kb) {
    let dir = test_corpus::write();
    let kb = Kb::load(dir.path()).unwrap();
    (dir, kb)
}

/// The `(source, heading)` of the best passage for a question.
fn best(kb: &Kb, question: &str) -> (String, String) {
    let passages = kb.search(question, 5).unwrap();
    let first = passages
        .first()
        .unwrap_or_else(|| panic!("no passage for {question:?}"));
    (first.source.clone(), first.heading.clone())
}

fn answer(source: &str, heading: &str) -> (String, String) {
    (source.to_owned(), heading.to_owned())
}

#[test]
fn the_corpus_is_read_with_titles_sources_and_headings() {
    let (_dir, kb) = corpus();
    assert_eq!(kb.files(), 3, "hidden and unsupported files are skipped");
    let mut found: Vec<(&str, &str, &str)> = kb
        .passages
        .iter()
        .map(|p| (p.source.as_str(), p.title.as_str(), p.heading.as_str()))
        .collect();
    found.dedup();
    assert_eq!(
        found,
        vec![
            ("faq.md", "Support FAQ", ""),
            ("faq.md", "Support FAQ", "Refunds"),
            ("faq.md", "Support FAQ", "Shipping times"),
            ("faq.md", "Support FAQ", "Opening hours"),
            ("faq.md", "Support FAQ", "Account > Changing your password"),
            ("faq.md", "Support FAQ", "Account > Deleting your account"),
            ("policies/returns.txt", "returns", ""),
            ("policies/warranty.html", "Warranty", ""),
            ("policies/warranty.html", "Warranty", "Repairs"),
        ]
    );
    assert_eq!(kb.len(), 9);
}

#[test]
fn a_question_answered_by_a_section_returns_that_section_first() {
    let (_dir, kb) = corpus();
    let passages = kb.search("How long does a refund take?", 5).unwrap();
    let first = &passages[0];
    assert_eq!(first.heading, "Refunds");
    assert_eq!(first.source, "faq.md");
    assert_eq!(first.title, "Support FAQ");
    assert!(first.text.starts_with("Once we receive a returned item"));
    assert!(first.score > 0.0);
    assert!(
        passages
            .windows(2)
            .all(|pair| pair[0].score >= pair[1].score),
        "best first"
    );
}

#[test]
fn questions_find_their_sections_in_every_format() {
    let (_dir, kb) = corpus();
    let cases = [
        (
            "When are the opening hours of support?",
            "faq.md",
            "Opening hours",
        ),
        (
            "I forgot my password",
            "faq.md",
            "Account > Changing your password",
        ),
        (
            "delete my account",
            "faq.md",
            "Account > Deleting your account",
        ),
        ("Where do I drop the parcel?", "policies/returns.txt", ""),
        ("Is my device under warranty?", "policies/warranty.html", ""),
        (
            "Who repairs a faulty device?",
            "policies/warranty.html",
            "Repairs",
        ),
    ];
    for (question, source, heading) in cases {
        assert_eq!(best(&kb, question), answer(source, heading), "{question}");
    }
}

#[test]
fn a_heading_match_outranks_the_same_word_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let faq = "## Store credit\nInstead of a refund you can take store credit. A refund to store \
               credit is instant.\n## Refunds\nMoney goes back to the original card within five \
               days.\n## Delivery\nParcels arrive in two days.\n";
    fs::write(dir.path().join("faq.md"), faq).unwrap();
    let kb = Kb::load(dir.path()).unwrap();
    assert_eq!(
        best(&kb, "How do refunds work?"),
        answer("faq.md", "Refunds")
    );
}

#[test]
fn stemming_matches_other_forms_of_a_word() {
    let (_dir, kb) = corpus();
    assert_eq!(best(&kb, "refunded"), answer("faq.md", "Refunds"));
    assert_eq!(best(&kb, "refunding an order"), answer("faq.md", "Refunds"));
    assert_eq!(
        best(&kb, "When is my order shipped?"),
        answer("faq.md", "Shipping times")
    );
    assert_eq!(
        best(&kb, "REPAIRED devices"),
        answer("policies/warranty.html", "Repairs")
    );
}

#[test]
fn on_topic_questions_reach_the_default_floor() {
    let (_dir, kb) = corpus();
    for question in [
        "How long does a refund take?",
        "refunding an order",
        "How fast is shipping?",
        "What are your opening hours?",
        "change password",
        "Is water damage covered by the warranty?",
        // Only the text, not a heading, has the word.
        "Where is your warehouse?",
        "payment method",
    ] {
        let hits = kb.ask(question, 3, DEFAULT_MIN_SCORE).unwrap();
        assert!(hits.matched, "{question}: {hits:?}");
        assert_eq!(hits.best_score, Some(hits.passages[0].score));
    }
}

#[test]
fn off_topic_questions_do_not_match() {
    let (_dir, kb) = corpus();
    for question in [
        "How do I bake sourdough bread?",
        "What is the capital of France?",
        "Can you tell me a joke?",
    ] {
        // No meaningful word of these is in the knowledge base: nothing scores at all.
        assert!(kb.search(question, 3).unwrap().is_empty(), "{question}");
        let hits = kb.ask(question, 3, DEFAULT_MIN_SCORE).unwrap();
        assert!(!hits.matched, "{question}: {hits:?}");
        assert_eq!(hits.best_score, None);
    }
    for question in ["How many days until Christmas?", "send me a pizza"] {
        // These share a common word ("day", "send") with some passages; the floor drops them.
        let hits = kb.ask(question, 3, DEFAULT_MIN_SCORE).unwrap();
        assert!(hits.best_score.is_some(), "{question}");
        assert!(!hits.matched, "{question}: {hits:?}");
        assert!(hits.passages.is_empty());
    }
}

#[test]
fn the_floor_drops_weak_passages_but_reports_the_best_score() {
    let (_dir, kb) = corpus();
    let all = kb.search("refund", 10).unwrap();
    let best_score = all[0].score;
    let hits = kb.ask("refund", 10, best_score + 1.0).unwrap();
    assert!(!hits.matched);
    assert!(hits.passages.is_empty());
    assert_eq!(hits.best_score, Some(best_score));

    let hits = kb.ask("refund", 10, best_score).unwrap();
    assert!(hits.matched);
    assert_eq!(hits.passages[0].heading, "Refunds");
    assert!(hits.passages.iter().all(|p| p.score >= best_score));
}

#[test]
fn any_text_is_a_valid_question() {
    let (_dir, kb) = corpus();
    for question in [
        "",
        "   ",
        "?!",
        "\"",
        "((",
        "title:",
        "AND OR NOT",
        "refund AND",
        "-refund",
        "\"refund",
        "refund^3 [1 TO 2] *",
        "how do I?",
        "日本語の質問",
    ] {
        let result = kb.search(question, 5);
        assert!(result.is_ok(), "{question:?}: {result:?}");
    }
    let essay: String = (0..5000).map(|i| format!("word{i} ")).collect();
    assert_eq!(
        kb.search(&format!("refund {essay}"), 5).unwrap()[0].heading,
        "Refunds"
    );
    assert!(kb.search("?!", 5).unwrap().is_empty());
    assert!(kb.search("how do I?", 5).unwrap().is_empty());
    assert_eq!(best(&kb, "-refund"), answer("faq.md", "Refunds"));
    assert_eq!(best(&kb, "title:refund\""), answer("faq.md", "Refunds"));
}

#[test]
fn the_limit_is_respected_and_capped() {
    let (_dir, kb) = corpus();
    assert!(kb.search("refund", 0).unwrap().is_empty());
    assert_eq!(kb.search("day", 1).unwrap().len(), 1);

    let dir = tempfile::tempdir().unwrap();
    let many: String = (0..80)
        .map(|i| format!("## Part {i}\nThe same words.\n"))
        .collect();
    fs::write(dir.path().join("many.md"), many).unwrap();
    let kb = Kb::load(dir.path()).unwrap();
    assert_eq!(kb.len(), 80);
    assert_eq!(kb.search("same words", 1000).unwrap().len(), MAX_LIMIT);
}

#[test]
fn a_missing_folder_is_an_empty_knowledge_base() {
    let dir = tempfile::tempdir().unwrap();
    let kb = Kb::load(&dir.path().join("kb")).unwrap();
    assert!(kb.is_empty());
    assert_eq!(kb.files(), 0);
    assert!(kb.search("refund", 5).unwrap().is_empty());
    assert!(!kb.ask("refund", 5, DEFAULT_MIN_SCORE).unwrap().matched);
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_naming_it() {
    let dir = test_corpus::write();
    fs::write(dir.path().join("policies/latin1.md"), b"## Caf\xe9\n").unwrap();
    let err = Kb::load(dir.path()).unwrap_err();
    assert!(matches!(err, KbError::NotUtf8 { offset: 6, .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("latin1.md") && message.contains("UTF-8"),
        "{message}"
    );
}

#[test]
fn passages_serialize_for_steps_and_tools() {
    let (_dir, kb) = corpus();
    let hits = kb.ask("refund", 1, DEFAULT_MIN_SCORE).unwrap();
    let json = serde_json::to_value(&hits).unwrap();
    assert_eq!(json["matched"], true);
    let passage = &json["passages"][0];
    assert_eq!(passage["title"], "Support FAQ");
    assert_eq!(passage["source"], "faq.md");
    assert_eq!(passage["heading"], "Refunds");
    assert!(
        passage["text"]
            .as_str()
            .unwrap()
            .contains("refund the full price")
    );
    assert!(passage["score"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_distinctive_word_scores_about_one_whatever_the_size() {
    for count in [3, 30, 300] {
        let dir = tempfile::tempdir().unwrap();
        let sections: String = (0..count)
            .map(|i| format!("## Section\nThe same filler text, then marker zq{i}x.\n"))
            .collect();
        fs::write(dir.path().join("kb.md"), sections).unwrap();
        let kb = Kb::load(dir.path()).unwrap();
        assert_eq!(kb.len(), count);
        let passages = kb.search("zq2x", 5).unwrap();
        assert_eq!(passages.len(), 1);
        let score = passages[0].score;
        assert!((score - 1.0).abs() < 0.05, "{count} passages: {score}");
        // A word every passage has is worth little.
        let common = kb.search("filler", 1).unwrap()[0].score;
        assert!(common < 0.3, "{count} passages: {common}");
    }
}

#[test]
fn kb_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Kb>();
}
