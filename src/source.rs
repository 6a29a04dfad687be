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

    /// 1-based line and column (in characters) of a byte offset (inside a character:
    /// that character's).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor(offset);
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count();
        (line + 1, col + 1)
    }

    /// The character boundary at or before `offset` (the text's end at most).
    pub fn floor(&self, offset: usize) -> usize {
        let mut at = offset.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// The character boundary at or after `offset` (the text's end at most).
    pub fn ceil(&self, offset: usize) -> usize {
        let mut at = offset.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at += 1;
        }
        at
    }

    /// The byte offset where a 1-based line starts.
    pub fn line_start(&self, line: usize) -> Option<usize> {
        self.line_starts.get(line.checked_sub(1)?).copied()
    }

    /// The byte offset just past the character at `offset` (the text's end at most).
    pub fn next_char(&self, offset: usize) -> usize {
        let at = self.floor(offset);
        self.text[at..].chars().next().map_or(self.text.len(), |c| at + c.len_utf8())
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

    /// Reads a file (`read_text`); the name shown in messages is the path as given.
    pub fn read(&mut self, path: &Path) -> Result<FileId, String> {
        let text = read_text(path)?;
        Ok(self.add(Source::new(path.display().to_string(), Some(path.to_path_buf()), text)))
    }
}

/// The most a pipeline file may hold: a pipeline of 100,000 stages is under 10 MB.
pub const MAX_SOURCE_BYTES: u64 = 64 << 20;

/// A text file kiln reads whole: a regular file (a device, FIFO or folder is refused
/// before it is opened, so `/dev/zero` cannot fill memory and a FIFO cannot block),
/// at most [`MAX_SOURCE_BYTES`], UTF-8 (the first bad byte is named by line and
/// column); a leading byte-order mark is dropped.
pub fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a folder" } else { "not a regular file (a device, FIFO or socket)" };
        return Err(format!("it is {what}"));
    }
    let too_big = || format!("it is larger than {} MiB, the limit for a pipeline file", MAX_SOURCE_BYTES >> 20);
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(too_big());
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let good = std::str::from_utf8(good).expect("valid up to here");
        let line = good.matches('\n').count() + 1;
        let col = good.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        format!("it is not UTF-8: a bad byte at line {line}, column {col}")
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..3);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-order mark is dropped; a folder, a FIFO, a device, a file over the limit
    /// and bad UTF-8 are refused with what is wrong (the FIFO without blocking).
    #[test]
    fn text_files_are_regular_bounded_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let bom = dir.path().join("bom.yaml");
        std::fs::write(&bom, b"\xef\xbb\xbfname: x\n").unwrap();
        assert_eq!(read_text(&bom).unwrap(), "name: x\n");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, b"name: x\nstages: caf\xe9\n").unwrap();
        assert_eq!(read_text(&bad).unwrap_err(), "it is not UTF-8: a bad byte at line 2, column 12");
        let big = dir.path().join("big.yaml");
        std::fs::File::create(&big).unwrap().set_len(MAX_SOURCE_BYTES + 1).unwrap();
        assert!(read_text(&big).unwrap_err().contains("larger than 64 MiB"));
        assert_eq!(read_text(dir.path()).unwrap_err(), "it is a folder");
        assert!(read_text(Path::new("/dev/zero")).unwrap_err().contains("not a regular file"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        assert!(read_text(&fifo).unwrap_err().contains("not a regular file"));
    }

    #[test]
    fn lines_and_columns_count_characters() {
        let s = Source::new("f", None, "ab\nçd: x\n".into());
        let x = s.text.find('x').unwrap();
        assert_eq!(s.line_col(x), (2, 5));
        assert_eq!(s.line_start(2).map(|l| l + "çd: ".len()), Some(x));
        assert_eq!(s.line(2), "çd: x");
    }
}
