//! Computing one stage: into a new cache entry (`compute`), or into any folder
//! (`produce`, which `verify` also uses). The cache changes only by `Store::commit` of a
//! complete entry.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use kiln_stages::context::{Slot, StageContext};
use kiln_stages::stage::Artifact;
use kiln_stages::table::TableReader;

use super::{Reporter, cached_record, skipped};
use crate::plan::key::Key;
use crate::plan::{Plan, PlannedStage};
use crate::runs::{self, StageRecord, StageStatus};
use crate::store::{EntryMeta, OutputMeta, Store, describe_output};

/// What to compute: the stage's key, the inputs of the key, and whether it was forced.
pub(super) struct Job<'a> {
    pub key: &'a Key,
    pub inputs: serde_json::Value,
    pub forced: bool,
    /// Hash the inputs' files against their recorded digests first.
    pub verify_inputs: bool,
}

/// Computes one stage into a new cache entry. On failure the cache is unchanged and the
/// record says why.
pub(super) fn compute(
    plan: &Plan,
    store: &Store,
    stage: &PlannedStage,
    job: Job,
    metas: &[Option<EntryMeta>],
    reporter: &dyn Reporter,
) -> Result<(StageRecord, EntryMeta), Box<StageRecord>> {
    let Job { key, inputs, forced, verify_inputs } = job;
    let started = Instant::now();
    let mut record = skipped(stage);
    record.key = Some(key.clone());
    record.key_inputs = Some(inputs.clone());
    let fail = |mut record: StageRecord, message: String| {
        record.status = StageStatus::Failed;
        record.error = Some(message);
        record.duration_s = started.elapsed().as_secs_f64();
        Box::new(record)
    };

    let lock = match store.try_lock(key) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            reporter.waiting(&stage.name);
            match store.lock(key) {
                Ok(lock) => lock,
                Err(e) => return Err(fail(record, format!("locking the cache entry: {e}"))),
            }
        }
        Err(e) => return Err(fail(record, format!("locking the cache entry: {e}"))),
    };
    // Another run may have written the entry while this one waited.
    if let Some(meta) = store.meta(key).filter(|_| !forced) {
        drop(lock);
        return Ok((cached_record(stage, key, &meta), meta));
    }

    if verify_inputs {
        for input in &stage.inputs {
            let meta = metas[input.stage].as_ref().expect("inputs are cached before a stage runs");
            if let Some(why) = store.damage(meta, true) {
                drop(lock);
                let upstream = &plan.stages[input.stage].name;
                let moved = match store.quarantine(&meta.key) {
                    Ok(to) => format!("moved to {}", to.display()),
                    Err(e) => format!("could not be moved aside: {e}"),
                };
                let message = format!(
                    "input `{}` (the entry of `{upstream}`, {}) is damaged: {why}; it was {moved}, and the next run computes it again",
                    input.name,
                    meta.key.short()
                );
                return Err(fail(record, message));
            }
        }
    }
    let tmp = match store.fresh_tmp(key) {
        Ok(tmp) => tmp,
        Err(e) => return Err(fail(record, format!("preparing {}: {e}", store.tmp_dir(key).display()))),
    };
    let scratch = store.scratch_dir(key);
    let produced = match produce(plan, store, stage, metas, &tmp, &scratch, reporter) {
        Ok(produced) => produced,
        Err(message) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(fail(record, message));
        }
    };
    let duration = started.elapsed().as_secs_f64();
    let meta = EntryMeta {
        key: key.clone(),
        kind: stage.kind.kind().into(),
        stage: stage.name.clone(),
        key_inputs: inputs,
        outputs: produced.outputs,
        metrics: produced.report.metrics,
        summary: produced.report.summary,
        created: runs::now(),
        duration_s: duration,
        kiln_version: env!("CARGO_PKG_VERSION").into(),
    };
    if let Err(e) = store.commit(&tmp, &meta) {
        return Err(fail(record, format!("committing the cache entry: {e}")));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    drop(lock);
    record.status = StageStatus::Ran;
    record.duration_s = duration;
    record.outputs = meta.outputs.clone();
    record.metrics = meta.metrics.clone();
    record.summary = meta.summary.clone();
    Ok((record, meta))
}

/// What a stage wrote into a folder: its outputs described, and its report.
pub(super) struct Produced {
    pub outputs: BTreeMap<String, OutputMeta>,
    pub report: kiln_stages::stage::StageReport,
}

/// Runs a stage with its inputs read from their cache entries and its outputs written
/// under `dir`; describes each output (digest, bytes, files, rows).
pub(super) fn produce(
    plan: &Plan,
    store: &Store,
    stage: &PlannedStage,
    metas: &[Option<EntryMeta>],
    dir: &Path,
    scratch: &Path,
    reporter: &dyn Reporter,
) -> Result<Produced, String> {
    let input_slots: BTreeMap<String, Slot> = stage
        .inputs
        .iter()
        .map(|i| {
            let upstream = &plan.stages[i.stage];
            let meta = metas[i.stage].as_ref().expect("inputs are cached before a stage runs");
            let artifact = upstream.outputs.iter().find(|o| o.name == i.output).expect("bound").artifact.clone();
            let slot = Slot {
                dir: store.entry_dir(&meta.key).join(i.output),
                artifact,
                origin: format!("{}.{}", upstream.name, i.output),
            };
            (i.name.to_string(), slot)
        })
        .collect();
    let output_slots: BTreeMap<String, Slot> = stage
        .outputs
        .iter()
        .map(|o| {
            let slot = Slot {
                dir: dir.join(o.name),
                artifact: o.artifact.clone(),
                origin: format!("{}.{}", stage.name, o.name),
            };
            (o.name.to_string(), slot)
        })
        .collect();

    let progress = reporter.started(&stage.name, stage.kind.kind());
    let result = {
        let mut ctx = StageContext::new(
            &stage.name,
            stage.seed,
            input_slots,
            output_slots,
            scratch.to_path_buf(),
            progress.as_ref(),
        );
        catch_unwind(AssertUnwindSafe(|| stage.configured.run(&mut ctx)))
    };
    drop(progress);
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            return Err(format!("panicked (this is a bug in kiln, please report it): {what}"));
        }
    };

    let mut outputs = BTreeMap::new();
    for o in &stage.outputs {
        let out = dir.join(o.name);
        if !out.exists() {
            let _ = std::fs::create_dir_all(&out);
        }
        let (digest, bytes, files) = describe_output(&out).map_err(|e| format!("reading output `{}`: {e}", o.name))?;
        let rows = match &o.artifact {
            Artifact::Table(_) => Some(
                TableReader::open(&out)
                    .and_then(|t| t.num_rows())
                    .map_err(|e| format!("output `{}` is not a readable table: {e}", o.name))? as u64,
            ),
            Artifact::Files(_) => None,
        };
        let artifact = o.artifact.describe().lines().next().unwrap_or("").into();
        outputs.insert(o.name.to_string(), OutputMeta { artifact, digest, rows, bytes, files });
    }
    Ok(Produced { outputs, report })
}
