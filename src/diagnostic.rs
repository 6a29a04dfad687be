//! Errors that point into the source: a message, the file, line and column, the line
//! itself with a caret under the offending text, and a "did you mean" where one helps.
//!
//! ```text
//! error: unknown stage kind `tokenise`. Did you mean `tokenize`?
//!   ——▶ pipelines/math-sft.yaml:12:11
//!    │
//! 12 │     uses: tokenise
//!    │           ^^^^^^^^
//! ```

use std::fmt::{self, Write};

use crate::source::{Sources, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Span>,
    /// Lines printed after the snippet, e.g. `note: ...`.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Diagnostic { message: message.into(), span: Some(span), notes: Vec::new() }
    }

    pub fn without_span(message: impl Into<String>) -> Self {
        Diagnostic { message: message.into(), span: None, notes: Vec::new() }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    pub fn render(&self, sources: &Sources) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(span) = self.span {
            let source = sources.get(span.file);
            let (line, col) = source.line_col(span.start);
            let text = source.line(line);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}——▶ {}:{line}:{col}", source.name);
            let _ = writeln!(out, "{pad} │");
            let _ = writeln!(out, "{line} │ {text}");
            // The caret covers the span on its first line, at least one character.
            let line_end = source.offset(line + 1, 0).min(source.text.len());
            let end = span.end.min(line_end).max(span.start);
            let width = source.text[span.start..end].trim_end_matches(['\n', '\r']).chars().count().max(1);
            let _ = writeln!(out, "{pad} │ {}{}", " ".repeat(col - 1), "^".repeat(width));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// All the errors found in one pass over a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
    pub sources: Sources,
}

impl Diagnostics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&d.render(&self.sources));
        }
        if self.items.len() > 1 {
            let _ = writeln!(out, "\n{} errors", self.items.len());
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

pub use kiln_stages::names::{did_you_mean, suggestion};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Source;

    #[test]
    fn renders_like_just() {
        let mut sources = Sources::default();
        let id = sources.add(Source::new("p.yaml", None, "stages:\n  x:\n    uses: tokenise\n".into()));
        let start = sources.get(id).text.find("tokenise").unwrap();
        let d =
            Diagnostic::new("unknown stage kind `tokenise`. Did you mean `tokenize`?", Span::new(id, start, start + 8));
        assert_eq!(
            d.render(&sources),
            "error: unknown stage kind `tokenise`. Did you mean `tokenize`?\n ——▶ p.yaml:3:11\n  │\n3 │     uses: tokenise\n  │           ^^^^^^^^\n"
        );
    }
}
