//! `rerun --verify`: a cached stage recomputed beside the cache and compared with it
//! byte for byte.

use std::path::Path;
use std::time::Instant;

use super::compute::produce;
use super::{Reporter, cached_record};
use crate::plan::key::Key;
use crate::plan::{Plan, PlannedStage};
use crate::runs::{StageRecord, StageStatus, Verified};
use crate::store::{EntryMeta, Store};

/// Recomputes a cached stage under `verify/<key>/` and compares what it wrote with the
/// entry, file by file; the entry is not touched and the recomputation is removed.
pub(super) fn verify(
    plan: &Plan,
    store: &Store,
    stage: &PlannedStage,
    key: &Key,
    meta: &EntryMeta,
    metas: &[Option<EntryMeta>],
    reporter: &dyn Reporter,
) -> StageRecord {
    let started = Instant::now();
    let mut record = cached_record(stage, key, meta);
    let dir = store.verify_dir(key);
    let _ = std::fs::remove_dir_all(&dir);
    let produced = produce(plan, store, stage, metas, &dir.join("out"), &dir.join("scratch"), reporter);
    record.duration_s = started.elapsed().as_secs_f64();
    match produced {
        Ok(produced) => {
            let mut differing = Vec::new();
            for (name, cached) in &meta.outputs {
                // The bytes on disk, not the digest recorded at write time: what
                // downstream stages read is what is compared.
                match produced.outputs.get(name) {
                    Some(again) => differing.extend(differing_files(
                        &store.entry_dir(key).join(name),
                        &cached.files,
                        &dir.join("out").join(name),
                        &again.files,
                        name,
                    )),
                    None => differing.push(format!("{name}/")),
                }
            }
            record.verified = Some(Verified { reproducible: differing.is_empty(), differing });
        }
        Err(message) => {
            record.status = StageStatus::Failed;
            record.error = Some(format!("recomputing it to verify: {message}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir(store.root().join("verify")); // only if no other stage is there
    record
}

/// `output/file` for each file whose bytes differ between two folders, or that only one
/// of them has.
fn differing_files(a: &Path, a_files: &[String], b: &Path, b_files: &[String], output: &str) -> Vec<String> {
    let mut names: Vec<&String> = a_files.iter().chain(b_files).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|f| !same_bytes(&a.join(f), &b.join(f)).unwrap_or(false))
        .map(|f| format!("{output}/{f}"))
        .collect()
}

/// Whether two files hold the same bytes, read a megabyte at a time (a checkpoint can be
/// larger than memory).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}
