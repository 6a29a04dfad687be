//! The command line: `kiln run | plan | dag | inspect | query | runs | show | diff | rerun | gc | stages |
//! schema`.
//!
//! `main` parses, calls [`main_with`], and exits with its status: 0 success, 1 a stage
//! failed (or a requested artifact is missing), 2 a usage or spec error.

mod dag;
mod diff;
mod explain;
mod inspect;
mod query;
mod reporter;
mod schema;
mod text_table;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::exec::{self, ExecError, Selection, Status};
use crate::plan::Plan;
use crate::plan::key::differences;
use crate::runs::{self, Manifest, RunStatus, StageStatus};
use crate::store::Store;
use crate::{Registry, load_plan};
use reporter::Terminal;
use text_table::TextTable;

#[derive(Parser, Debug)]
#[command(name = "kiln", version, about = "Declarative, cached, reproducible SFT pipelines")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline: every stage whose key is not cached is computed.
    Run(RunArgs),
    /// Show which stages are cached and which will run, and why.
    Plan(PlanArgs),
    /// Show a cached stage output: schema, rows and the first rows.
    Inspect(InspectArgs),
    /// Draw the stage graph with each stage's cache status.
    Dag(DagArgs),
    /// Run a SQL query over the cached outputs of a pipeline's stages.
    Query(QueryArgs),
    /// List recorded runs, newest first.
    Runs(StoreArgs),
    /// Show one recorded run.
    Show(ShowArgs),
    /// Compare two runs: which stages' keys differ and why, and their metrics.
    Diff(DiffArgs),
    /// Run exactly the resolved pipeline of a recorded run again; `--verify` recomputes
    /// the cached stages too and compares their bytes with the cache.
    Rerun(RerunArgs),
    /// Remove the cache entries no kept run refers to.
    Gc(GcArgs),
    /// List the stage kinds with their inputs and parameters.
    Stages,
    /// Print the JSON Schema of the pipeline format (for editors).
    Schema,
}

#[derive(Args, Debug)]
struct StoreArgs {
    /// Directory whose `.kiln/` holds the cache and runs [default: $KILN_HOME, else .]
    #[arg(long, global = true)]
    workdir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PipelineArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Override a value: `stage.with.key=value`, `seed=7` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Show each stage's whole key, and every field that differs from its newest cached
    /// entry in earlier runs.
    #[arg(long)]
    explain: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Run only this stage (repeatable); its inputs must be cached.
    #[arg(long, value_name = "STAGE")]
    only: Vec<String>,
    /// Run this stage and everything downstream of it.
    #[arg(long, value_name = "STAGE")]
    from: Option<String>,
    /// Run this stage and everything upstream of it.
    #[arg(long, value_name = "STAGE")]
    until: Option<String>,
    /// Recompute this stage even if cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
}

#[derive(Args, Debug)]
struct InspectArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The stage, or `stage.output`.
    stage: String,
    /// How many rows to show.
    #[arg(long, default_value_t = 5)]
    rows: usize,
    /// Show row N of a token table decoded token by token, trained tokens marked.
    #[arg(long, value_name = "N")]
    row: Option<usize>,
    /// Mark trained tokens with characters, not colours (the default off a terminal).
    #[arg(long)]
    plain: bool,
}

#[derive(Args, Debug)]
struct DagArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[arg(long, value_enum, default_value_t = dag::Format::Text)]
    format: dag::Format,
}

#[derive(Args, Debug)]
struct QueryArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The query (DataFusion SQL); each stage is a table named after it, and each output
    /// of a stage with several is also `stage_output`.
    sql: String,
    #[arg(long, value_enum, default_value_t = query::Format::Table)]
    format: query::Format,
    /// Write the result to this file instead of the terminal.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// A run id (or a unique prefix of one), or `last`.
    run: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// A run id (or a unique prefix of one), or `last`.
    run_a: String,
    /// Another run.
    run_b: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct RerunArgs {
    /// A run id (or a unique prefix of one), or `last`.
    run: String,
    /// Recompute every cached stage into a scratch area and compare its bytes with the
    /// cache, reporting each stage that does not reproduce them (the cache is kept).
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct GcArgs {
    /// Keep the entries of this many newest runs (and of every running one).
    #[arg(long, default_value_t = 10, value_name = "N")]
    keep_runs: usize,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// The failure of a command, with its exit status.
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure { status: 2, message: message.into() }
    }
    fn failed(message: impl Into<String>) -> Self {
        Failure { status: 1, message: message.into() }
    }
}

/// Parses arguments, runs the command and returns the exit code.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>, registry: &Registry) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match dispatch(cli, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprint!("{}", f.message);
            if !f.message.ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(f.status)
        }
    }
}

fn dispatch(cli: Cli, registry: &Registry) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run(args, registry),
        Command::Plan(args) => plan(args, registry),
        Command::Inspect(args) => {
            let plan = plan_of(&args.pipeline, registry)?;
            let store = store_of(&args.pipeline.store);
            let text = match args.row {
                Some(row) => {
                    use std::io::IsTerminal;
                    let plain = args.plain || !std::io::stdout().is_terminal();
                    let marking = if plain { inspect::Marking::Plain } else { inspect::Marking::Colour };
                    inspect::show_row(&plan, &store, &args.stage, row, marking)?
                }
                None => inspect::inspect(&plan, &store, &args.stage, args.rows)?,
            };
            print(&text);
            Ok(())
        }
        Command::Dag(args) => {
            let plan = plan_of(&args.pipeline, registry)?;
            let statuses = exec::status(&plan, &store_of(&args.pipeline.store), &[]);
            print(&dag::render(&plan, &statuses, args.format));
            Ok(())
        }
        Command::Query(args) => {
            let plan = plan_of(&args.pipeline, registry)?;
            let store = store_of(&args.pipeline.store);
            print(&query::query(&plan, &store, &args.sql, args.format, args.output.as_deref())?);
            Ok(())
        }
        Command::Runs(args) => {
            print(&list_runs(&store_of(&args)));
            Ok(())
        }
        Command::Show(args) => {
            let store = store_of(&args.store);
            print(&show_run(&store, &args.run)?);
            Ok(())
        }
        Command::Diff(args) => {
            let store = store_of(&args.store);
            let (a, b) = (find_run(&store, &args.run_a)?, find_run(&store, &args.run_b)?);
            print(&diff::diff(&a, &b));
            Ok(())
        }
        Command::Rerun(args) => rerun(args, registry),
        Command::Gc(args) => gc(args),
        Command::Schema => {
            let text = serde_json::to_string_pretty(&schema::schema(registry)).expect("a schema serializes");
            print(&format!("{text}\n"));
            Ok(())
        }
        Command::Stages => {
            print(&describe_stages(registry));
            Ok(())
        }
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn store_of(args: &StoreArgs) -> Store {
    let root = match (&args.workdir, std::env::var_os("KILN_HOME")) {
        (Some(dir), _) => dir.join(".kiln"),
        (None, Some(home)) => PathBuf::from(home),
        (None, None) => PathBuf::from(".kiln"),
    };
    Store::new(root)
}

fn plan_of(args: &PipelineArgs, registry: &Registry) -> Result<Plan, Failure> {
    load_plan(&args.pipeline, &args.set, registry).map_err(|d| Failure::usage(d.render()))
}

fn run(args: RunArgs, registry: &Registry) -> Result<(), Failure> {
    let started = Instant::now();
    let plan = plan_of(&args.pipeline, registry)?;
    let store = store_of(&args.pipeline.store);
    let selection = Selection { only: args.only, from: args.from, until: args.until, force: args.force, verify: false };
    execute(&plan, &store, &selection, started)
}

/// `kiln rerun RUN [--verify]`: the pipeline exactly as that run resolved it.
fn rerun(args: RerunArgs, registry: &Registry) -> Result<(), Failure> {
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
        let time = if s.status == StageStatus::Ran || s.status == StageStatus::Failed || s.verified.is_some() {
            format!("{:.1}s", s.duration_s)
        } else {
            String::new()
        };
        let result = match (&s.verified, s.status) {
            (_, StageStatus::Failed) => s.error.clone().unwrap_or_default().lines().next().unwrap_or("").to_string(),
            (Some(v), _) if !v.reproducible => format!("other bytes in {}", v.differing.join(", ")),
            _ => s.summary.clone().unwrap_or_default(),
        };
        table.row(vec![s.name.clone(), s.kind.clone(), status_word(s).into(), time, result]);
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

/// A stage's status in a run, with the outcome of `--verify` where there is one.
pub(super) fn status_word(record: &runs::StageRecord) -> &'static str {
    match (&record.verified, record.status) {
        (_, StageStatus::Failed) => "failed",
        (Some(v), _) if v.reproducible => "reproduced",
        (Some(_), _) => "DIFFERS",
        (None, status) => status.word(),
    }
}

fn gc(args: GcArgs) -> Result<(), Failure> {
    let store = store_of(&args.store);
    let report = crate::gc::gc(&store, args.keep_runs, args.dry_run)
        .map_err(|e| Failure::failed(format!("error: collecting garbage in {}: {e}", store.root().display())))?;
    let freed: u64 = report.removed.iter().map(|r| r.bytes).sum();
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let human = crate::gc::human_bytes;
    let mut out = format!("{verb} {} entries, {}\n", report.removed.len(), human(freed));
    let mut table = TextTable::new(&["key", "kind", "stage", "size"]);
    for r in &report.removed {
        table.row(vec![r.key[..12].to_string(), r.kind.clone(), r.stage.clone(), human(r.bytes)]);
    }
    if !report.removed.is_empty() {
        out.push_str(&table.render().lines().map(|l| format!("  {l}\n")).collect::<String>());
    }
    let live = match report.live_runs.len() {
        0 => String::new(),
        n => format!(" and {n} running"),
    };
    out.push_str(&format!(
        "kept {} entries, {}, used by {} kept runs (the {} newest{live})\n",
        report.kept_entries,
        human(report.kept_bytes),
        report.kept_runs,
        args.keep_runs
    ));
    if !report.being_written.is_empty() {
        out.push_str(&format!("left {} entries a running stage is writing\n", report.being_written.len()));
    }
    if report.leftovers > 0 {
        out.push_str(&format!(
            "{verb} {} leftovers of killed runs, {}\n",
            report.leftovers,
            human(report.leftover_bytes)
        ));
    }
    if report.scratch_bytes > 0 {
        out.push_str(&format!(
            "left {} of resumable work in {} (a rerun of the stage resumes from it)\n",
            human(report.scratch_bytes),
            store.root().join("scratch").display()
        ));
    }
    print(&out);
    Ok(())
}

fn plan(args: PlanArgs, registry: &Registry) -> Result<(), Failure> {
    let plan = plan_of(&args.pipeline, registry)?;
    let store = store_of(&args.pipeline.store);
    if args.explain {
        print(&explain::explain(&plan, &exec::status(&plan, &store, &[])));
        return Ok(());
    }
    let mut table = TextTable::new(&["stage", "kind", "status", "why"]);
    for (stage, status) in plan.stages.iter().zip(exec::status(&plan, &store, &[])) {
        let (word, why) = match status {
            Status::Cached { key, .. } => ("cached", format!("key {}", &key[..12])),
            Status::WillRun { reason, .. } => ("will run", reason),
        };
        table.row(vec![stage.name.clone(), stage.kind.kind().into(), word.into(), why]);
    }
    print(&table.render());
    Ok(())
}

fn list_runs(store: &Store) -> String {
    let runs_dir = store.runs_dir();
    let ids = runs::list(&runs_dir);
    if ids.is_empty() {
        return format!("no runs recorded in {}\n", store.root().display());
    }
    let mut table = TextTable::new(&["run", "pipeline", "status", "ran", "cached", "time"]);
    for id in ids {
        let Ok(m) = Manifest::load(&runs_dir, &id) else {
            continue;
        };
        let count = |st| m.stages.iter().filter(|s| s.status == st).count().to_string();
        let time: f64 = m.stages.iter().map(|s| s.duration_s).sum();
        table.row(vec![
            m.id.clone(),
            m.pipeline.name.clone(),
            match m.status {
                // A run whose process is gone without finishing was killed.
                RunStatus::Running if !store.run_is_live(&m.id) => "killed".to_string(),
                status => format!("{status:?}").to_lowercase(),
            },
            count(StageStatus::Ran),
            count(StageStatus::Cached),
            format!("{time:.1}s"),
        ]);
    }
    table.render()
}

fn find_run(store: &Store, wanted: &str) -> Result<Manifest, Failure> {
    let runs_dir = store.runs_dir();
    let ids = runs::list(&runs_dir);
    let matches: Vec<&String> = if wanted == "last" {
        ids.iter().take(1).collect()
    } else {
        ids.iter().filter(|id| id.starts_with(wanted)).collect()
    };
    match matches.as_slice() {
        [one] => Manifest::load(&runs_dir, one).map_err(|e| Failure::failed(format!("error: run `{one}`: {e}"))),
        [] => Err(Failure::usage(format!("error: no run `{wanted}` in {} (see `kiln runs`)", runs_dir.display()))),
        many => Err(Failure::usage(format!(
            "error: `{wanted}` matches {} runs: {}",
            many.len(),
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn show_run(store: &Store, wanted: &str) -> Result<String, Failure> {
    let m = find_run(store, wanted)?;
    let mut out = format!(
        "run {}\npipeline {} ({})\nstatus {}\nstarted {}  finished {}\nkiln {}  device {}\n",
        m.id,
        m.pipeline.name,
        m.pipeline.path,
        format!("{:?}", m.status).to_lowercase(),
        m.started,
        m.finished.clone().unwrap_or_else(|| "-".into()),
        m.kiln_version,
        m.device
    );
    if !m.overrides.is_empty() {
        out.push_str(&format!("overrides {}\n", m.overrides.join(" ")));
    }
    let mut table = TextTable::new(&["stage", "kind", "status", "time", "key", "result"]);
    for s in &m.stages {
        table.row(vec![
            s.name.clone(),
            s.kind.clone(),
            status_word(s).into(),
            format!("{:.1}s", s.duration_s),
            s.key.clone().map(|k| k[..12].to_string()).unwrap_or_default(),
            s.error.clone().or_else(|| s.summary.clone()).unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    for s in &m.stages {
        if s.metrics.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} metrics:\n", s.name));
        for (k, v) in &s.metrics {
            out.push_str(&format!("  {k}: {}\n", compact(v)));
        }
    }
    Ok(out)
}

fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.abs() >= 1000.0 || f == 0.0 { format!("{f:.1}") } else { format!("{f:.4}") }
        }
        serde_json::Value::Object(map) => {
            let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {}", compact(v))).collect();
            parts.join(", ")
        }
        other => other.to_string(),
    }
}

fn describe_stages(registry: &Registry) -> String {
    let mut out = String::new();
    for kind in registry.kinds() {
        out.push_str(&format!("{} (v{})\n  {}\n", kind.kind(), kind.version(), kind.about()));
        for input in kind.inputs() {
            let accepts = match &input.accepts {
                kiln_stages::Accepts::Table([]) => "any table".to_string(),
                kiln_stages::Accepts::Table(cols) => {
                    format!(
                        "table with {}",
                        cols.iter().map(|(n, t)| format!("{n}: {t}")).collect::<Vec<_>>().join(", ")
                    )
                }
                kiln_stages::Accepts::Files(kind) => format!("a {kind}"),
            };
            let name = match input.prefix() {
                Some("") => "(any names)".to_string(),
                Some(prefix) if input.optional => format!("{prefix}, {prefix}_… (optional, any number)"),
                Some(prefix) => format!("{prefix}, {prefix}_… (one or more)"),
                None if input.optional => format!("{} (optional)", input.name),
                None => input.name.to_string(),
            };
            out.push_str(&format!("  input {name}: {accepts} — {}\n", input.about));
        }
        let defaults = serde_yaml::to_string(&kind.default_params()).unwrap_or_default();
        if defaults.trim() != "{}" {
            out.push_str("  with:\n");
            for line in defaults.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push('\n');
    }
    out
}
