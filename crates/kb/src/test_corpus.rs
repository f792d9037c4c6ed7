//! A small support knowledge base written to a temporary folder, shared by the tests of the index
//! and of the library. It mixes the three formats and holds files the knowledge base must skip.

use std::fs;

use tempfile::TempDir;

/// The Markdown FAQ: one title heading and several sections.
pub(crate) const FAQ_MD: &str = "\
# Support FAQ

Answers to the questions our customers ask most often.

## Refunds

Once we receive a returned item, we refund the full price to the original payment method.
The money usually appears on your statement five to seven business days later.

## Shipping times

Orders leave our warehouse within one business day. Standard delivery takes three to five
days; express delivery arrives the next working day.

## Opening hours

The support team answers the phone Monday to Friday, 9:00 to 17:00 CET. The chat is staffed
every day of the week.

## Account

### Changing your password

Open Settings, choose Security and click \"Change password\". We send an email to confirm.

### Deleting your account

Write to privacy@example.com from the address of the account. Deletion is final after 30 days.
";

/// A plain text returns policy.
pub(crate) const RETURNS_TXT: &str = "\
You can send back any item within 30 days of delivery. It must be unused and in its original
packaging.

To start a return, log in, open the order and choose Return items. Print the label and drop the
parcel at any post office.
";

/// An HTML page about the warranty.
pub(crate) const WARRANTY_HTML: &str = "\
<!DOCTYPE html>
<html><head><title>Warranty</title><style>p { margin: 0 }</style></head>
<body>
<h1>Warranty</h1>
<p>Every device comes with a two-year warranty against manufacturing defects.</p>
<h2>Repairs</h2>
<p>Send a faulty device to our repair centre in Lyon; we fix it or replace it within
two weeks. Damage from drops or water is not covered.</p>
<script>document.write('<h2>Not a heading</h2>')</script>
</body></html>
";

/// Writes the corpus to a new temporary folder: `faq.md`, `policies/returns.txt`,
/// `policies/warranty.html`, and files that must be ignored.
pub(crate) fn write() -> TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    let files = [
        ("faq.md", FAQ_MD),
        ("policies/returns.txt", RETURNS_TXT),
        ("policies/warranty.html", WARRANTY_HTML),
        (
            "logo.svg",
            "<svg><text>sourdough bread recipes</text></svg>",
        ),
        (
            ".drafts/bread.md",
            "## Sourdough bread\nBake at 230 degrees.\n",
        ),
    ];
    for (rel, text) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("a parent folder")).expect("a folder");
        fs::write(path, text).expect("a file");
    }
    dir
}
