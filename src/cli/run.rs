//! `kiln run` and `kiln rerun`: execute a plan with progress on the terminal, then the
//! summary table, the report pages and the exit status (1 when a stage failed or a
//! verified stage did not reproduce the cache).

use std::time::Instant;

use super::history::find_run;
use super::reporter::Terminal;
use super::text_table::TextTable;
use super::{Failure, RerunArgs, RunArgs, plan_of, print, store_of};
use crate::Registry;
use crate::exec::{self, ExecError, Status};
use crate::plan::Plan;
use crate::plan::key::differences;
use crate::runs::{self, Manifest, Selection, StageStatus};
use crate::store::Store;

pub(super) fn run(args: RunArgs, registry: &Registry) -> Result<(), Failure> {
    let started = Instant::now();
    let plan = plan_of(&args.pipeline, registry)?;
    let store = store_of(&args.pipeline.store);
    let selection = Selection {
        only: args.only,
        from: args.from,
        until: args.until,
        force: args.force,
        verify: false,
        verify_inputs: args.verify_inputs,
    };
    execute(&plan, &store, &selection, started)
}

/// `kiln rerun RUN [--verify]`: the pipeline exactly as that run resolved it.
pub(super) fn rerun(args: RerunArgs, registry: &Registry) -> Result<(), Failure> {
    let started = Instant::now();
    let store = store_of(&args.store);
    let recorded = find_run(&store, &args.run)?;
    let label = format!("{} as run {} resolved it", recorded.pipeline.path, recorded.id);
    let loaded = crate::spec::load_resolved(
        recorded.pipeline.path.as_ref(),
        &label,
        &recorded.pipeline.resolved,
        &recorded.overrides,
    )
    .map_err(|d| Failure::usage(d.render()))?;
    let plan =
        Plan::new(loaded.spec, loaded.sources, loaded.errors, registry).map_err(|d| Failure::usage(d.render()))?;
    for note in key_changes(&plan, &store, &recorded) {
        eprintln!("note: {note}");
    }
    // The same stages as that run: its --only/--from/--until, never its --force.
    let selection = Selection { force: Vec::new(), verify: args.verify, ..recorded.selection.clone() };
    execute(&plan, &store, &selection, started)
}

/// The stages whose key is no longer the one the recorded run had, and why (a changed
/// external file, another device, other kernel sources, a new version of a kind): they
/// are computed anew, so `--verify` cannot compare them with that run's artifacts.
fn key_changes(plan: &Plan, store: &Store, recorded: &Manifest) -> Vec<String> {
    let statuses = exec::status(plan, store, &[]);
    let mut notes = Vec::new();
    for (stage, status) in plan.stages.iter().zip(&statuses) {
        let Some(then) = recorded.stages.iter().find(|s| s.name == stage.name) else { continue };
        let (Some(then_key), Some(then_inputs)) = (&then.key, &then.key_inputs) else { continue };
        let (key, now_inputs) = match status {
            Status::Cached { key, meta } => (Some(key), &meta.key_inputs),
            Status::WillRun { key, key_inputs, .. } => (key.as_ref(), key_inputs),
        };
        if key == Some(then_key) {
            continue;
        }
        // Inputs not known yet are left out: their upstream's note says why.
        let mut then_inputs = then_inputs.clone();
        if let (Some(old), Some(new)) =
            (then_inputs.get_mut("inputs").and_then(|v| v.as_object_mut()), now_inputs.get("inputs"))
        {
            old.retain(|name, _| new.get(name).is_some());
        }
        let changes = differences(&then_inputs, now_inputs);
        if !changes.is_empty() {
            let why: Vec<String> = changes.iter().map(|c| exec::describe_change(plan, stage, c)).collect();
            notes.push(format!("`{}` no longer has the key of run {}: {}", stage.name, recorded.id, why.join("; ")));
        }
    }
    notes
}

fn execute(plan: &Plan, store: &Store, selection: &Selection, started: Instant) -> Result<(), Failure> {
    let chosen = exec::selected(plan, selection).map_err(|e| Failure::usage(format!("error: {e}")))?;
    plan.check_files(&chosen).map_err(|d| Failure::usage(d.render()))?;
    let outcome = match exec::run(plan, store, selection, &Terminal::new()) {
        Ok(outcome) => outcome,
        Err(ExecError::Usage(message)) => return Err(Failure::usage(format!("error: {message}"))),
        Err(e) => return Err(Failure::failed(format!("error: {e}"))),
    };
    print(&run_summary(&outcome.manifest, started.elapsed().as_secs_f64()));
    for page in &outcome.pages {
        print(&format!("report: {}\n", page.display()));
    }
    if let Some(e) = outcome.failure {
        return Err(Failure::failed(format!("error: {e}")));
    }
    let differing: Vec<&str> = outcome
        .manifest
        .stages
        .iter()
        .filter(|s| s.verified.as_ref().is_some_and(|v| !v.reproducible))
        .map(|s| s.name.as_str())
        .collect();
    if !differing.is_empty() {
        return Err(Failure::failed(format!(
            "error: not reproducible: {} (recomputing gave other bytes than the cache holds)",
            differing.join(", ")
        )));
    }
    Ok(())
}

/// The end-of-run table: per stage cached or ran and its time, then the headline lines.
fn run_summary(manifest: &Manifest, seconds: f64) -> String {
    let mut table = TextTable::new(&["stage", "kind", "status", "time", "result"]);
    for s in &manifest.stages {
        let time = if s.took_time() { format!("{:.1}s", s.duration_s) } else { String::new() };
        let result = match (&s.verified, s.status) {
            (_, StageStatus::Failed) => s.error.clone().unwrap_or_default().lines().next().unwrap_or("").to_string(),
            (Some(v), _) if !v.reproducible => format!("other bytes in {}", v.differing.join(", ")),
            _ => s.summary.clone().unwrap_or_default(),
        };
        table.row(vec![s.name.clone(), s.kind.clone(), s.outcome().word().into(), time, result]);
    }
    let count = |f: &dyn Fn(&runs::StageRecord) -> bool| manifest.stages.iter().filter(|s| f(s)).count();
    let ran = count(&|s| s.status == StageStatus::Ran);
    let cached = count(&|s| s.status == StageStatus::Cached && s.verified.is_none());
    let verified = count(&|s| s.verified.is_some());
    let reproduced = count(&|s| s.verified.as_ref().is_some_and(|v| v.reproducible));
    let verify = if verified > 0 {
        format!(", {reproduced} of {verified} recomputed reproduced the cache")
    } else {
        String::new()
    };
    format!(
        "\n{}\nrun {}: {} stages, {ran} ran, {cached} cached{verify}, {seconds:.2}s\n",
        table.render(),
        manifest.id,
        manifest.stages.len()
    )
}
