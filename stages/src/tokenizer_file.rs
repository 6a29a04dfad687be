//! The tokenizer artifact: a folder holding Hugging Face's `tokenizer.json`, written by
//! `tokenizer.train` and `tokenizer.load` and read by every stage that tokenizes or
//! decodes (so those stage kinds share this module, not each other).

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{Result, StageError};

/// The file name of a tokenizer artifact.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

pub fn save(tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
    let path = dir.join(TOKENIZER_FILE);
    let json = tokenizer.to_string(false).map_err(tok_err)?;
    std::fs::write(&path, json).map_err(|e| StageError::io(&path, e))
}

/// Loads a tokenizer artifact.
pub fn load(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join(TOKENIZER_FILE);
    Tokenizer::from_file(&path).map_err(|e| StageError::Tokenizer(format!("{}: {e}", path.display())))
}

pub(crate) fn tok_err(e: tokenizers::Error) -> StageError {
    StageError::Tokenizer(e.to_string())
}
