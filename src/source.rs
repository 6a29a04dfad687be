//! Source texts and byte spans into them, so every error can point at what caused it.

use std::path::{Path, PathBuf};

/// An index into a [`Sources`].
pub type FileId = usize;

/// A byte range of one source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end: end.max(start) }
    }
}

/// A pipeline file, or a command-line override, as text.
#[derive(Debug, Clone)]
pub struct Source {
    /// What error messages call it: a path as given, or `--set`.
    pub name: String,
    /// The file on disk, for files.
    pub path: Option<PathBuf>,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(name: impl Into<String>, path: Option<PathBuf>, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Source { name: name.into(), path, text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..offset.min(self.text.len())].chars().count();
        (line + 1, col + 1)
    }

    /// The byte offset of a 1-based line and 0-based character column.
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i)
    }

    /// The text of a 1-based line, without its newline.
    pub fn line(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).map_or(self.text.len(), |&e| e - 1);
        self.text[start..end].trim_end_matches('\r')
    }
}

/// Every source of one pipeline: the file, the files it extends, the overrides.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<Source>,
}

impl Sources {
    pub fn add(&mut self, source: Source) -> FileId {
        self.files.push(source);
        self.files.len() - 1
    }

    pub fn get(&self, id: FileId) -> &Source {
        &self.files[id]
    }

    /// Reads a file; the name shown in messages is the path as given.
    pub fn read(&mut self, path: &Path) -> std::io::Result<FileId> {
        let text = std::fs::read_to_string(path)?;
        Ok(self.add(Source::new(path.display().to_string(), Some(path.to_path_buf()), text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let s = Source::new("f", None, "ab\nçd: x\n".into());
        let x = s.text.find('x').unwrap();
        assert_eq!(s.line_col(x), (2, 5));
        assert_eq!(s.offset(2, 4), x);
        assert_eq!(s.line(2), "çd: x");
    }
}
