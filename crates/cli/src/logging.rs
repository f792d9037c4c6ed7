//! Log lines on standard error, with every credential the process knows replaced before a line is
//! written: the secret store's values and each `{ env: NAME }` credential once it has been used.
//!
//! The log writer is installed before the project is read, so the credentials it scrubs are the
//! process's one [`Secrets`] ([`secrets`]), which `setup` loads and every connection resolves
//! through.

use std::io::Write;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use weft_connectors::secret::Secrets;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The credentials of this process, shared by its connections and its log writer.
pub(crate) fn secrets() -> &'static Secrets {
    static SECRETS: OnceLock<Secrets> = OnceLock::new();
    SECRETS.get_or_init(Secrets::new)
}

/// Installs the log writer: `WEFT_LOG` (an env-filter) or `default_level` decides what is written.
pub(crate) fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Scrubbed)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // The current span (a run's `run_id` and `workflow`) is enough; the whole list repeats it.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Makes one [`Line`] per log event.
struct Scrubbed;

impl<'a> MakeWriter<'a> for Scrubbed {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

/// One log event, gathered whole, scrubbed and written to standard error when dropped.
struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = std::io::stderr()
            .lock()
            .write_all(scrubbed(&self.0).as_bytes());
    }
}

/// A formatted log event without any credential this process knows.
fn scrubbed(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    secrets().scrubber().text(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_never_carries_a_known_credential() {
        secrets().set_stored([("db".to_string(), "hunter2-hunter2".to_string())].into());
        assert_eq!(
            scrubbed(b"cannot connect as app:hunter2-hunter2@db\n"),
            "cannot connect as app:[secret db]@db\n"
        );
        // In a JSON log line, where a quote in the value is escaped.
        secrets().set_stored([("q".to_string(), "say \"cheese\"".to_string())].into());
        assert_eq!(
            scrubbed(br#"{"message":"say \"cheese\""}"#),
            r#"{"message":"[secret q]"}"#
        );
    }
}
