//! The executor: runs a plan's stages in order, each either found in the cache by its
//! key or computed into a fresh entry, and records the run.
//!
//! A stage's key needs the content digests of its inputs, which are known once its
//! upstream stages are cached; `status` computes what it can from `meta.json` files
//! alone (no artifact data is read), which is all a no-op run or `kiln plan` costs.

mod compute;
mod verify;

use std::collections::BTreeMap;

use kiln_stages::context::Progress;

use compute::{Job, compute};
use verify::verify;

use crate::plan::key::{Change, Key, differences, key_inputs, key_of};
use crate::plan::{Plan, PlannedStage};
use crate::runs::{self, Manifest, PipelineRecord, Previous, RunStatus, Selection, StageRecord, StageStatus};
use crate::store::{EntryMeta, Store};

/// What `status` knows about a stage before running anything.
#[derive(Debug, Clone)]
pub enum Status {
    Cached {
        key: Key,
        meta: Box<EntryMeta>,
    },
    WillRun {
        /// Unknown while an upstream stage will run.
        key: Option<Key>,
        /// The key inputs as far as they are known (without the digests of inputs that
        /// will be computed).
        key_inputs: serde_json::Value,
        /// Why.
        reason: Reason,
        /// The stage's newest cached entry in earlier runs, and every key field that
        /// differs from it.
        previous: Option<Box<Previous>>,
        changes: Vec<String>,
    },
}
/// Why a stage will run.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// No entry has its key, and no earlier run of the pipeline had this stage.
    NotCached,
    /// `--force`.
    Forced,
    /// Its entry no longer matches its record (what is wrong).
    Damaged(String),
    /// The first key field that differs from the stage's entry in an earlier run.
    Changed(String),
    /// Its key is unknown until this upstream stage has run.
    Upstream(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::NotCached => f.write_str("not cached"),
            Reason::Forced => f.write_str("forced"),
            Reason::Damaged(why) => write!(f, "its cache entry is damaged: {why}"),
            Reason::Changed(change) => f.write_str(change),
            Reason::Upstream(stage) => write!(f, "upstream `{stage}` will run"),
        }
    }
}

/// Errors that stop a run before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The command asked for something impossible (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// A stage failed (exit status 1).
    #[error("stage `{stage}` ({kind}) failed: {message}")]
    Stage { stage: String, kind: String, message: String },
    #[error("{0}")]
    Io(String),
}

/// Where the executor reports progress. The CLI draws bars; tests stay quiet.
pub trait Reporter: Sync {
    /// A stage starts computing; the returned sink receives its progress.
    fn started(&self, stage: &str, kind: &str) -> Box<dyn Progress + '_>;
    /// A stage finished, was found cached, failed or was skipped.
    fn finished(&self, record: &StageRecord);
    /// Another run holds the stage's key; this one waits.
    fn waiting(&self, stage: &str);
    /// A cached entry did not match its record; it was moved aside to be recomputed.
    fn damaged(&self, stage: &str, key: &Key, why: &str, moved_to: &std::path::Path);
}

pub struct Quiet;

impl Reporter for Quiet {
    fn started(&self, _: &str, _: &str) -> Box<dyn Progress + '_> {
        Box::new(kiln_stages::NoProgress)
    }
    fn finished(&self, _: &StageRecord) {}
    fn waiting(&self, _: &str) {}
    fn damaged(&self, _: &str, _: &Key, _: &str, _: &std::path::Path) {}
}

/// The digests of a stage's inputs, from its upstream entries' metadata.
fn input_digests(stage: &PlannedStage, metas: &[Option<EntryMeta>]) -> Option<BTreeMap<String, String>> {
    stage
        .inputs
        .iter()
        .map(|i| {
            let meta = metas[i.stage].as_ref()?;
            Some((i.name.to_string(), meta.outputs.get(i.output)?.digest.clone()))
        })
        .collect()
}

/// Content digests of the external files a stage reads, by parameter (cached by size and
/// modification time, so an unchanged file is not read again). A file that cannot be
/// read gets a digest naming the error, so the stage will run and report it.
fn file_digests(stage: &PlannedStage, store: &Store) -> BTreeMap<String, String> {
    stage
        .configured
        .external_files()
        .into_iter()
        .map(|f| {
            let digest = store.file_digest(&f.path).unwrap_or_else(|e| format!("unreadable: {e}"));
            (f.param, digest)
        })
        .collect()
}

/// Each stage's cache status, from metadata only.
pub fn status(plan: &Plan, store: &Store, force: &[String]) -> Vec<Status> {
    let mut metas: Vec<Option<EntryMeta>> = Vec::with_capacity(plan.stages.len());
    let mut out = Vec::with_capacity(plan.stages.len());
    // Earlier runs are read only if some stage will run, and then once.
    let history = std::cell::OnceCell::new();
    let runs_dir = store.runs_dir();
    for stage in &plan.stages {
        let previous = || {
            history
                .get_or_init(|| runs::previous_entries(&runs_dir, &plan.spec.name, |key| store.meta(key).is_some()))
                .get(&stage.name)
                .cloned()
        };
        let files = file_digests(stage, store);
        let status = match input_digests(stage, &metas) {
            Some(digests) => {
                let inputs = key_inputs(stage, &digests, &files);
                let key = key_of(&inputs);
                let meta = store.meta(&key);
                let damage = meta.as_ref().and_then(|m| store.damage(m, false));
                match meta {
                    Some(meta) if !force.contains(&stage.name) && damage.is_none() => {
                        Status::Cached { key, meta: Box::new(meta) }
                    }
                    cached => {
                        let previous = previous();
                        let changes: Vec<String> = previous
                            .as_ref()
                            .map(|p| differences(&p.key_inputs, &inputs))
                            .unwrap_or_default()
                            .iter()
                            .map(|d| describe_change(plan, stage, d))
                            .collect();
                        let reason = match (cached, damage, changes.first()) {
                            (Some(_), Some(why), _) => Reason::Damaged(why),
                            (Some(_), None, _) => Reason::Forced,
                            (None, _, Some(change)) => Reason::Changed(change.clone()),
                            (None, _, None) => Reason::NotCached,
                        };
                        Status::WillRun {
                            key: Some(key),
                            key_inputs: inputs,
                            reason,
                            previous: previous.map(Box::new),
                            changes,
                        }
                    }
                }
            }
            None => {
                let upstream = stage
                    .inputs
                    .iter()
                    .find(|i| metas[i.stage].is_none())
                    .map(|i| plan.stages[i.stage].name.clone())
                    .unwrap_or_default();
                // The known inputs are compared; parameters may have changed too.
                let known: BTreeMap<String, String> = stage
                    .inputs
                    .iter()
                    .filter_map(|i| {
                        let meta = metas[i.stage].as_ref()?;
                        Some((i.name.clone(), meta.outputs.get(i.output)?.digest.clone()))
                    })
                    .collect();
                let own = key_inputs(stage, &known, &files);
                let previous = previous();
                let changes: Vec<String> = previous
                    .as_ref()
                    .map(|p| {
                        let mut old = p.key_inputs.clone();
                        if let Some(inputs) = old.get_mut("inputs").and_then(|v| v.as_object_mut()) {
                            inputs.retain(|name, _| known.contains_key(name));
                        }
                        differences(&old, &own)
                    })
                    .unwrap_or_default()
                    .iter()
                    .map(|d| describe_change(plan, stage, d))
                    .collect();
                let reason = changes.first().map_or(Reason::Upstream(upstream), |c| Reason::Changed(c.clone()));
                Status::WillRun { key: None, key_inputs: own, reason, previous: previous.map(Box::new), changes }
            }
        };
        metas.push(match &status {
            Status::Cached { meta, .. } => Some((**meta).clone()),
            Status::WillRun { .. } => None,
        });
        out.push(status);
    }
    out
}

/// `inputs.data 1a2b3c4d -> 5e6f7a8b` reads better as `input data (from tokens) changed`.
pub fn describe_change(plan: &Plan, stage: &PlannedStage, change: &Change) -> String {
    if let Some(name) = change.input()
        && let Some(input) = stage.inputs.iter().find(|i| i.name == name)
    {
        return format!("input `{name}` changed (from `{}`)", plan.stages[input.stage].name);
    }
    change.to_string()
}

/// The indices of the stages a selection computes.
pub fn selected(plan: &Plan, selection: &Selection) -> Result<Vec<bool>, ExecError> {
    let index = |name: &str, flag: &str| -> Result<usize, ExecError> {
        plan.index(name).ok_or_else(|| {
            let names = plan.stages.iter().map(|s| s.name.as_str());
            ExecError::Usage(format!(
                "{flag} {name}: no stage `{name}` in pipeline `{}`{}",
                plan.spec.name,
                crate::diagnostic::suggestion(name, names)
            ))
        })
    };
    let n = plan.stages.len();
    for name in &selection.force {
        index(name, "--force")?;
    }
    if !selection.only.is_empty() {
        if selection.from.is_some() || selection.until.is_some() {
            return Err(ExecError::Usage(
                "--only names the stages to run; it cannot be combined with --from or --until".into(),
            ));
        }
        let mut chosen = vec![false; n];
        for name in &selection.only {
            chosen[index(name, "--only")?] = true;
        }
        return Ok(chosen);
    }
    let mut chosen = vec![true; n];
    if let Some(name) = &selection.from {
        let i = index(name, "--from")?;
        let mut keep = vec![false; n];
        std::iter::once(i).chain(plan.descendants(i)).for_each(|j| keep[j] = true);
        (0..n).for_each(|j| chosen[j] &= keep[j]);
    }
    if let Some(name) = &selection.until {
        let i = index(name, "--until")?;
        let mut keep = vec![false; n];
        std::iter::once(i).chain(plan.ancestors(i)).for_each(|j| keep[j] = true);
        (0..n).for_each(|j| chosen[j] &= keep[j]);
    }
    if let (Some(from), Some(until)) = (&selection.from, &selection.until)
        && !chosen.contains(&true)
    {
        return Err(ExecError::Usage(format!(
            "--from {from} --until {until} selects no stage: `{until}` is not `{from}` or downstream of it"
        )));
    }
    Ok(chosen)
}

/// A run that started: its record, and what stopped it if something did.
#[derive(Debug)]
pub struct Outcome {
    pub manifest: Manifest,
    /// The run's copies of its report pages (`runs/<run>/<stage>.html`).
    pub pages: Vec<std::path::PathBuf>,
    pub failure: Option<ExecError>,
}

impl Outcome {
    /// The manifest of a run that succeeded, or what stopped it.
    pub fn into_result(self) -> Result<Manifest, ExecError> {
        match self.failure {
            None => Ok(self.manifest),
            Some(e) => Err(e),
        }
    }
}

/// Runs a plan. An error before anything runs (a selection that cannot work) is `Err`;
/// once started, the manifest is written at the start, after each stage and at the end,
/// also on failure.
pub fn run(plan: &Plan, store: &Store, selection: &Selection, reporter: &dyn Reporter) -> Result<Outcome, ExecError> {
    let io = |what: &str, e: std::io::Error| ExecError::Io(format!("{what}: {e}"));
    let chosen = selected(plan, selection)?;
    let mut manifest = empty_manifest(plan, selection);
    let runs_dir = store.runs_dir();
    let save = |m: &Manifest| m.save(&runs_dir).map_err(|e| io("writing the run manifest", e));
    let run_lock;
    {
        // What is cached now is recorded as held before the guard is released: `gc`
        // decides under the same guard, so it sees either the record or no entry.
        let _guard = store.guard(false).map_err(|e| io("locking the store", e))?;
        let statuses = status(plan, store, &selection.force);
        // A stage left out needs no computing, but a chosen stage reading it needs it cached.
        for (i, stage) in plan.stages.iter().enumerate() {
            if !chosen[i] {
                continue;
            }
            for input in &stage.inputs {
                let j = input.stage;
                if !chosen[j] && !matches!(statuses[j], Status::Cached { .. }) {
                    return Err(ExecError::Usage(format!(
                        "stage `{}` reads `{}`, which is not cached and not selected; run `kiln run {} --until {}` first",
                        stage.name,
                        plan.stages[j].name,
                        plan.spec.path.display(),
                        plan.stages[j].name
                    )));
                }
            }
        }
        manifest.holds = statuses
            .iter()
            .filter_map(|s| match s {
                Status::Cached { key, .. } => Some(key.clone()),
                Status::WillRun { .. } => None,
            })
            .collect();
        run_lock = store.run_lock(&manifest.id).map_err(|e| io("locking the run", e))?;
        save(&manifest)?;
    }
    // `status` found these entries whole a moment ago; only the others are checked again.
    let checked: std::collections::HashSet<Key> = manifest.holds.iter().cloned().collect();

    let mut metas: Vec<Option<EntryMeta>> = vec![None; plan.stages.len()];
    let mut failure = None;
    for (i, stage) in plan.stages.iter().enumerate() {
        let record = if failure.is_some() {
            skipped(stage)
        } else {
            match input_digests(stage, &metas) {
                None => skipped(stage),
                Some(digests) => {
                    let inputs = key_inputs(stage, &digests, &file_digests(stage, store));
                    let key = key_of(&inputs);
                    let forced = selection.force.contains(&stage.name);
                    let cached = {
                        let _guard = store.guard(false).map_err(|e| io("locking the store", e))?;
                        if !manifest.holds.contains(&key) {
                            manifest.holds.push(key.clone());
                            save(&manifest)?;
                        }
                        store.meta(&key)
                    };
                    // An entry that no longer matches its record is moved aside (outside
                    // the shared guard: moving takes it exclusively) and computed again.
                    let damage =
                        cached.as_ref().filter(|_| !checked.contains(&key)).and_then(|m| store.damage(m, false));
                    let cached = match damage {
                        None => cached,
                        Some(why) => {
                            let moved = store.quarantine(&key).map_err(|e| io("moving a damaged entry aside", e))?;
                            reporter.damaged(&stage.name, &key, &why, &moved);
                            None
                        }
                    };
                    match cached {
                        Some(meta) if chosen[i] && selection.verify && !forced => {
                            let record = verify(plan, store, stage, &key, &meta, &metas, reporter);
                            metas[i] = Some(meta);
                            record
                        }
                        Some(meta) if !(chosen[i] && forced) => {
                            let record = cached_record(stage, &key, &meta);
                            metas[i] = Some(meta);
                            record
                        }
                        _ if !chosen[i] => skipped(stage),
                        _ => match compute(
                            plan,
                            store,
                            stage,
                            Job { key: &key, inputs, forced, verify_inputs: selection.verify_inputs },
                            &metas,
                            reporter,
                        ) {
                            Ok((record, meta)) => {
                                metas[i] = Some(meta);
                                record
                            }
                            Err(record) => {
                                failure = Some(ExecError::Stage {
                                    stage: stage.name.clone(),
                                    kind: stage.kind.kind().into(),
                                    message: record.error.clone().unwrap_or_default(),
                                });
                                *record
                            }
                        },
                    }
                }
            }
        };
        // After a stage that took time, the record is saved, so `kiln show` of a live
        // run says how far it got; cached stages take none, so a no-op run saves once.
        let took_time = record.took_time();
        reporter.finished(&record);
        manifest.stages.push(record);
        if took_time && i + 1 < plan.stages.len() {
            save(&manifest)?;
        }
    }
    manifest.finished = Some(runs::now());
    manifest.status = if failure.is_some() { RunStatus::Failed } else { RunStatus::Ok };
    let saved = save(&manifest);
    let pages = crate::run_page::write(store, &manifest);
    drop(run_lock);
    Ok(Outcome { manifest, pages, failure: failure.or(saved.err()) })
}

fn empty_manifest(plan: &Plan, selection: &Selection) -> Manifest {
    let resolved = plan.spec.resolved_text();
    Manifest {
        id: runs::new_run_id(),
        started: runs::now(),
        finished: None,
        status: RunStatus::Running,
        pipeline: PipelineRecord {
            name: plan.spec.name.clone(),
            path: plan.spec.path.display().to_string(),
            file: std::fs::canonicalize(&plan.spec.path).ok().map(|p| p.display().to_string()),
            digest: blake3::hash(resolved.as_bytes()).to_hex()[..32].to_string(),
            resolved,
        },
        overrides: plan.spec.overrides.clone(),
        selection: selection.clone(),
        kiln_version: env!("CARGO_PKG_VERSION").into(),
        device: kiln_stages::device::name().into(),
        holds: Vec::new(),
        stages: Vec::new(),
    }
}

fn skipped(stage: &PlannedStage) -> StageRecord {
    StageRecord {
        name: stage.name.clone(),
        kind: stage.kind.kind().into(),
        status: StageStatus::Skipped,
        key: None,
        key_inputs: None,
        duration_s: 0.0,
        outputs: BTreeMap::new(),
        metrics: Default::default(),
        summary: None,
        error: None,
        verified: None,
    }
}

fn cached_record(stage: &PlannedStage, key: &Key, meta: &EntryMeta) -> StageRecord {
    StageRecord {
        name: stage.name.clone(),
        kind: stage.kind.kind().into(),
        status: StageStatus::Cached,
        key: Some(key.clone()),
        key_inputs: Some(meta.key_inputs.clone()),
        duration_s: 0.0,
        outputs: meta.outputs.clone(),
        metrics: meta.metrics.clone(),
        summary: meta.summary.clone(),
        error: None,
        verified: None,
    }
}
