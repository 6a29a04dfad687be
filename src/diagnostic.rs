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
            let _ = writeln!(out, "{line} │ {}", text.replace('\t', TAB));
            // The caret covers the span on its first line, at least one column, under the
            // characters as a terminal shows them (wide, combining, tabs).
            let line_start = source.line_start(line).unwrap_or(0);
            let from = source.floor(span.start).saturating_sub(line_start).min(text.len());
            let to = source.ceil(span.end).saturating_sub(line_start).clamp(from, text.len());
            let before = display_width(&text[..from]);
            let under = display_width(&text[from..to]).max(1);
            let _ = writeln!(out, "{pad} │ {}{}", " ".repeat(before), "^".repeat(under));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// How a tab in a quoted line is shown.
const TAB: &str = "    ";

/// The columns a terminal gives a text: two for wide characters (CJK), none for
/// combining marks and controls, four for a tab (shown as four spaces).
fn display_width(text: &str) -> usize {
    use unicode_width::UnicodeWidthChar;
    text.chars().map(|c| if c == '\t' { TAB.len() } else { c.width().unwrap_or(0) }).sum()
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

    /// The caret goes under the span as a terminal shows the line, for every class of
    /// character before and in it, and spans that start or end inside a character (or
    /// past the line) render without panicking.
    #[test]
    fn carets_line_up_under_every_kind_of_character() {
        // (text before the span, the span, columns before, caret width)
        let cases = [
            ("key: ", "abc", 5, 3),
            ("ké: ", "é…", 4, 2),
            ("名前: ", "値です", 6, 6),
            ("e\u{301}: ", "x\u{301}y", 3, 2),
            ("\tkey: ", "v", 9, 1),
            ("😀 ", "😀", 3, 2),
            ("k: ", "\u{200b}", 3, 1),
        ];
        for (before, span_text, columns, width) in cases {
            let mut sources = Sources::default();
            let line = format!("{before}{span_text} # tail");
            let id = sources.add(Source::new("p.yaml", None, format!("name: p\n{line}\n")));
            let start = 8 + before.len();
            let d = Diagnostic::new("bad", Span::new(id, start, start + span_text.len()));
            let shown = d.render(&sources);
            let caret = shown.lines().nth(4).unwrap();
            assert_eq!(caret, format!("  │ {}{}", " ".repeat(columns), "^".repeat(width)), "{before:?} {span_text:?}");
            assert_eq!(shown.lines().nth(3).unwrap(), format!("2 │ {}", line.replace('\t', TAB)));
            for (a, b) in [(start + 1, start + 2), (start, start + span_text.len() + 40), (start + 2, start + 1)] {
                let text = Diagnostic::new("inside", Span { file: id, start: a, end: b }).render(&sources);
                assert!(text.contains("p.yaml:2:"), "{text}");
            }
        }
    }
}
