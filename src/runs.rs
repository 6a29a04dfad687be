//! Run manifests: `runs/<run-id>/manifest.json`, one per `kiln run`, recording what ran
//! (the resolved pipeline, overrides, per stage its key, hit or miss, time, outputs and
//! metrics) so a run can be shown, compared and explained later.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::plan::key::Key;
use crate::store::OutputMeta;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    pub status: RunStatus,
    pub pipeline: PipelineRecord,
    pub overrides: Vec<String>,
    /// `--only`, `--from`, `--until`, `--force` (and `--verify` of a rerun).
    #[serde(default)]
    pub selection: Selection,
    pub kiln_version: String,
    pub device: String,
    /// The keys this run reads or writes, recorded before it uses them: what `kiln gc`
    /// spares while the run is live.
    #[serde(default)]
    pub holds: Vec<Key>,
    pub stages: Vec<StageRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub name: String,
    /// The file as the command line named it.
    pub path: String,
    /// The same file as an absolute path, however it was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// blake3 of the resolved text.
    pub digest: String,
    /// The pipeline after `extends:` and overrides: exactly what ran.
    pub resolved: String,
}

/// Which stages a run computes (recorded in its manifest, so `rerun` can repeat it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Selection {
    /// Only these stages (their inputs must be cached).
    pub only: Vec<String>,
    /// This stage and everything downstream of it.
    pub from: Option<String>,
    /// This stage and everything upstream of it.
    pub until: Option<String>,
    /// Recompute these even if cached.
    pub force: Vec<String>,
    /// Recompute every selected stage that is cached into a scratch area and compare
    /// its bytes with the entry's (`rerun --verify`); the cache is left as it is.
    pub verify: bool,
    /// Before a stage computes, hash its inputs' files and compare them with the digests
    /// their entries recorded (`--verify-inputs`); files and sizes are always compared.
    pub verify_inputs: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    pub status: StageStatus,
    #[serde(default)]
    pub key: Option<Key>,
    #[serde(default)]
    pub key_inputs: Option<serde_json::Value>,
    pub duration_s: f64,
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputMeta>,
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// `rerun --verify`: whether recomputing gave the cached bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    pub reproducible: bool,
    /// `output/file` paths whose bytes differ, or that exist on one side only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differing: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Found in the cache.
    Cached,
    /// Computed in this run.
    Ran,
    Failed,
    /// Not selected and not needed, or after a failure.
    Skipped,
}

/// What became of a stage in a run ([`StageRecord::outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ran,
    Cached,
    Failed,
    Skipped,
    Reproduced,
    Differs,
}

impl Outcome {
    /// The word tables show.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Cached => "cached",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Reproduced => "reproduced",
            Outcome::Differs => "DIFFERS",
        }
    }
}

impl StageStatus {
    pub fn word(self) -> &'static str {
        match self {
            StageStatus::Cached => "cached",
            StageStatus::Ran => "ran",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
        }
    }
}

/// `2026-11-25T17:53:00Z`.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A new run id: the UTC time to the millisecond and 4 hex digits, sortable by time
/// (`20261125-175300123-ab12`).
pub fn new_run_id() -> String {
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let compact: String = time.chars().filter(|c| c.is_ascii_digit()).collect();
    let nonce = blake3::hash(format!("{time}{}{:?}", std::process::id(), std::time::Instant::now()).as_bytes());
    format!("{}-{}-{}", &compact[..8], &compact[8..17], &nonce.to_hex()[..4])
}

pub fn manifest_path(runs_dir: &Path, id: &str) -> PathBuf {
    runs_dir.join(id).join("manifest.json")
}

impl StageRecord {
    /// What became of the stage in its run: its status, or for a cached stage
    /// recomputed by `rerun --verify`, whether it reproduced the cache.
    pub fn outcome(&self) -> Outcome {
        match (&self.verified, self.status) {
            (_, StageStatus::Failed) => Outcome::Failed,
            (Some(v), _) if v.reproducible => Outcome::Reproduced,
            (Some(_), _) => Outcome::Differs,
            (None, StageStatus::Ran) => Outcome::Ran,
            (None, StageStatus::Cached) => Outcome::Cached,
            (None, StageStatus::Skipped) => Outcome::Skipped,
        }
    }

    /// Whether the stage computed something in this run (ran, failed, or was recomputed
    /// to verify the cache): its time is worth showing and the manifest worth saving.
    pub fn took_time(&self) -> bool {
        matches!(self.status, StageStatus::Ran | StageStatus::Failed) || self.verified.is_some()
    }
}

impl Manifest {
    /// Writes the manifest atomically (write beside, rename).
    pub fn save(&self, runs_dir: &Path) -> io::Result<()> {
        let path = manifest_path(runs_dir, &self.id);
        fs::create_dir_all(path.parent().expect("runs/<id>"))?;
        let tmp = path.with_extension("json.tmp");
        let written = fs::write(&tmp, serde_json::to_string_pretty(self).expect("manifest serializes"))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            // A full disk leaves no partial file behind; the last complete record stays.
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    pub fn load(runs_dir: &Path, id: &str) -> io::Result<Manifest> {
        let text = fs::read_to_string(manifest_path(runs_dir, id))?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Run ids, newest first.
pub fn list(runs_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(runs_dir)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().join("manifest.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.reverse();
    ids
}

/// The overrides (`--set`) of the newest run of the pipeline file at `pipeline` (the same
/// file, however its path was written), with that run's id; `None` if no recent run
/// ran it.
pub fn latest_overrides(runs_dir: &Path, pipeline: &Path) -> Option<(String, Vec<String>)> {
    const RECENT: usize = 50;
    let wanted = fs::canonicalize(pipeline).ok()?;
    list(runs_dir).into_iter().take(RECENT).find_map(|id| {
        let manifest = Manifest::load(runs_dir, &id).ok()?;
        let recorded = match &manifest.pipeline.file {
            Some(file) => PathBuf::from(file),
            None => fs::canonicalize(&manifest.pipeline.path).ok()?,
        };
        let same = recorded == wanted;
        same.then_some((manifest.id, manifest.overrides))
    })
}

/// A stage's newest cached entry in earlier runs: what a stage that will run is
/// compared with.
#[derive(Debug, Clone)]
pub struct Previous {
    pub run: String,
    pub key: Key,
    pub key_inputs: serde_json::Value,
}

/// For each stage of a pipeline, the newest entry an earlier run recorded for it that
/// is still cached (`cached` says which keys are), looking back at most `RECENT` runs.
pub fn previous_entries(runs_dir: &Path, pipeline: &str, cached: impl Fn(&str) -> bool) -> BTreeMap<String, Previous> {
    const RECENT: usize = 50;
    let mut found = BTreeMap::new();
    for id in list(runs_dir).into_iter().take(RECENT) {
        let Ok(manifest) = Manifest::load(runs_dir, &id) else { continue };
        if manifest.pipeline.name != pipeline {
            continue;
        }
        for stage in manifest.stages {
            let (Some(key), Some(key_inputs)) = (stage.key, stage.key_inputs) else { continue };
            if !found.contains_key(&stage.name) && cached(&key) {
                found.insert(stage.name, Previous { run: manifest.id.clone(), key, key_inputs });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A save that fails (here the `.tmp` is a link to /dev/full: "no space left")
    /// leaves no partial file, and the manifest saved before stays whole.
    #[test]
    fn a_failed_save_leaves_the_last_manifest_and_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let record = PipelineRecord {
            name: "p".into(),
            path: "p.yaml".into(),
            file: None,
            digest: "d".into(),
            resolved: "name: p".into(),
        };
        let mut manifest = Manifest {
            id: new_run_id(),
            started: now(),
            finished: None,
            status: RunStatus::Running,
            pipeline: record,
            overrides: Vec::new(),
            selection: Selection::default(),
            kiln_version: "test".into(),
            device: "cpu".into(),
            holds: Vec::new(),
            stages: Vec::new(),
        };
        manifest.save(dir.path()).unwrap();
        let path = manifest_path(dir.path(), &manifest.id);
        let tmp = path.with_extension("json.tmp");
        std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
        manifest.status = RunStatus::Ok;
        let err = manifest.save(dir.path()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "the .tmp is removed");
        assert_eq!(Manifest::load(dir.path(), &manifest.id).unwrap().status, RunStatus::Running);
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261125-175300123-abcd".len());
        assert!(id.starts_with("20"));
    }
}
