//! What a running stage is handed: its inputs, writers for its outputs, its seed, a
//! scratch folder and a progress sink. The orchestrator builds it; the stage never sees
//! cache keys or paths other than these.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, StageError};
use crate::stage::Artifact;
use crate::table::{TableReader, TableWriter};

/// Where a stage reports how far it is. The CLI shows it as a progress bar.
pub trait Progress: Sync {
    /// Starts (or restarts) a count of `total` units, e.g. `rows` or `steps`.
    fn start(&self, total: u64, unit: &str);
    /// Advances the count by `n`.
    fn advance(&self, n: u64);
    /// A short status, such as the current loss.
    fn message(&self, text: &str);
}

/// Progress that goes nowhere, for tests and library use.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: u64, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _text: &str) {}
}

/// A bound input or output: the folder holding the artifact and what it is.
#[derive(Debug, Clone)]
pub struct Slot {
    pub dir: PathBuf,
    pub artifact: Artifact,
    /// Where the artifact comes from, for error messages (`stage.output`).
    pub origin: String,
}

pub struct StageContext<'a> {
    pub stage: String,
    pub seed: u64,
    inputs: BTreeMap<String, Slot>,
    outputs: BTreeMap<String, Slot>,
    scratch: PathBuf,
    progress: &'a dyn Progress,
}

impl<'a> StageContext<'a> {
    pub fn new(
        stage: impl Into<String>,
        seed: u64,
        inputs: BTreeMap<String, Slot>,
        outputs: BTreeMap<String, Slot>,
        scratch: PathBuf,
        progress: &'a dyn Progress,
    ) -> Self {
        StageContext { stage: stage.into(), seed, inputs, outputs, scratch, progress }
    }

    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    /// A folder that survives a killed run of the same key (for resumable stages).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The names of the bound inputs, in order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs.keys().cloned().collect()
    }

    /// Whether an (optional) input is bound.
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.contains_key(name)
    }

    pub fn input(&self, name: &str) -> Result<&Slot> {
        self.inputs.get(name).ok_or_else(|| StageError::Internal(format!("stage has no input `{name}` bound")))
    }

    /// Opens a table input.
    pub fn table(&self, name: &str) -> Result<TableReader> {
        let slot = self.input(name)?;
        match slot.artifact {
            Artifact::Table(_) => TableReader::open(&slot.dir),
            Artifact::Files(kind) => Err(StageError::Internal(format!("input `{name}` is a {kind}, not a table"))),
        }
    }

    /// The folder of a files input.
    pub fn files(&self, name: &str) -> Result<&Path> {
        Ok(&self.input(name)?.dir)
    }

    fn output(&self, name: &str) -> Result<&Slot> {
        self.outputs.get(name).ok_or_else(|| StageError::Internal(format!("stage has no output `{name}`")))
    }

    /// A writer for a table output.
    pub fn write_table(&self, name: &str) -> Result<TableWriter> {
        let slot = self.output(name)?;
        match &slot.artifact {
            Artifact::Table(schema) => TableWriter::create(&slot.dir, schema),
            Artifact::Files(kind) => Err(StageError::Internal(format!("output `{name}` is a {kind}, not a table"))),
        }
    }

    /// The folder a files output is written into (created).
    pub fn output_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.output(name)?.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
        Ok(dir)
    }
}
