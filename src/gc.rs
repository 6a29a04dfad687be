//! `kiln gc`: removes the cache entries no kept run refers to. The kept runs are the
//! newest `keep_runs` and every run whose process is still live; a live run's entries
//! include those it has recorded as held before using them. Deciding and removing
//! happen under the store's exclusive guard, which a run takes (shared) whenever it
//! records what it holds, so an entry a running pipeline counts on is never removed.
//! An entry is renamed out of `cache/` before it is deleted: a crash mid-way leaves no
//! half entry that looks valid.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use crate::plan::key::Key;
use crate::runs::{self, Manifest, StageStatus};
use crate::store::{Store, size_of};

/// An entry gc removed (or would remove).
#[derive(Debug, Clone)]
pub struct Removal {
    pub key: Key,
    pub kind: String,
    pub stage: String,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<Removal>,
    pub kept_entries: usize,
    pub kept_bytes: u64,
    pub kept_runs: usize,
    pub live_runs: Vec<String>,
    /// Entries no kept run refers to, left because a run is writing them.
    pub being_written: Vec<Key>,
    /// Leftovers of killed runs removed from `tmp/` and `verify/`: folders and bytes.
    pub leftovers: usize,
    pub leftover_bytes: u64,
    /// Bytes of resumable work in `scratch/`, which gc leaves.
    pub scratch_bytes: u64,
}

/// Removes (or with `dry_run` only lists) the entries no kept run refers to.
pub fn gc(store: &Store, keep_runs: usize, dry_run: bool) -> io::Result<Report> {
    let _guard = store.guard(true)?;
    let mut report = Report::default();
    let runs_dir = store.runs_dir();
    let mut referenced = BTreeSet::new();
    for (n, id) in runs::list(&runs_dir).into_iter().enumerate() {
        let live = store.run_is_live(&id);
        if n >= keep_runs && !live {
            continue;
        }
        let Ok(manifest) = Manifest::load(&runs_dir, &id) else { continue };
        report.kept_runs += 1;
        if live {
            report.live_runs.push(id);
            referenced.extend(manifest.holds.iter().cloned());
        }
        referenced.extend(
            manifest
                .stages
                .iter()
                .filter(|s| matches!(s.status, StageStatus::Cached | StageStatus::Ran))
                .filter_map(|s| s.key.clone()),
        );
    }

    for key in store.keys() {
        let dir = store.entry_dir(&key);
        if referenced.contains(&key) {
            report.kept_entries += 1;
            report.kept_bytes += size_of(&dir);
            continue;
        }
        let Some(_lock) = store.try_lock(&key)? else {
            report.being_written.push(key);
            continue;
        };
        let meta = store.meta(&key);
        report.removed.push(Removal {
            key: key.clone(),
            kind: meta.as_ref().map_or("?".into(), |m| m.kind.clone()),
            stage: meta.as_ref().map_or("?".into(), |m| m.stage.clone()),
            bytes: size_of(&dir),
        });
        if !dry_run {
            let trash = store.tmp_dir(&format!("{key}.gc"));
            fs::create_dir_all(trash.parent().expect("tmp/"))?;
            if trash.exists() {
                fs::remove_dir_all(&trash)?;
            }
            fs::rename(&dir, &trash)?;
            fs::remove_dir_all(&trash)?;
        }
    }

    // `tmp/<key>` of a killed run; a live run holds the key's lock while it writes there.
    for entry in fs::read_dir(store.root().join("tmp")).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = name.split('.').next().unwrap_or(&name).to_string();
        if let Some(_lock) = store.try_lock(&key)? {
            report.leftovers += 1;
            report.leftover_bytes += size_of(&entry.path());
            if !dry_run {
                fs::remove_dir_all(entry.path())?;
            }
        }
    }
    // `verify/` belongs to a verifying run; with none live, what is there is left over.
    let verify = store.root().join("verify");
    if report.live_runs.is_empty() && verify.exists() {
        report.leftovers += 1;
        report.leftover_bytes += size_of(&verify);
        if !dry_run {
            fs::remove_dir_all(&verify)?;
        }
    }
    report.scratch_bytes = size_of(&store.root().join("scratch"));
    Ok(report)
}

/// `412.3 MB`.
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", units[unit]) }
}
