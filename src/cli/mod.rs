//! The command line: `kiln run | rerun | plan | dag | inspect | query | runs | show | diff | gc |
//! stages | schema`; one module per command or pair of commands.
//!
//! `main` parses, calls [`main_with`], and exits with its status: 0 success, 1 a stage
//! failed (or a requested artifact is missing), 2 a usage or spec error.

mod dag;
mod diff;
mod explain;
mod gc;
mod history;
mod inspect;
mod query;
mod reporter;
mod run;
mod schema;
mod text_table;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::exec::{self, Reason, Status};
use crate::plan::Plan;
use crate::store::Store;
use crate::{Registry, load_plan};
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
    /// Hash each stage's inputs against their recorded digests before it computes
    /// (their files and sizes are always checked).
    #[arg(long)]
    verify_inputs: bool,
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
    /// Read a recorded run's outputs as `NAME.stage` (repeatable): `--run old=last`.
    #[arg(long = "run", value_name = "NAME=RUN")]
    runs: Vec<String>,
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
        Command::Run(args) => run::run(args, registry),
        Command::Plan(args) => plan(args, registry),
        Command::Inspect(args) => {
            let plan = plan_as_last_run(&args.pipeline, registry)?;
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
            let plan = plan_as_last_run(&args.pipeline, registry)?;
            let statuses = exec::status(&plan, &store_of(&args.pipeline.store), &[]);
            print(&dag::render(&plan, &statuses, args.format));
            Ok(())
        }
        Command::Query(args) => {
            let plan = plan_as_last_run(&args.pipeline, registry)?;
            let store = store_of(&args.pipeline.store);
            let mut runs = Vec::new();
            for given in &args.runs {
                let Some((name, run)) = given.split_once('=') else {
                    return Err(Failure::usage(format!("error: --run {given}: write NAME=RUN, e.g. `--run old=last`")));
                };
                runs.push((name.to_string(), history::find_run(&store, run)?));
            }
            print(&query::query(&plan, &store, &args.sql, &runs, args.format, args.output.as_deref())?);
            Ok(())
        }
        Command::Runs(args) => {
            print(&history::list_runs(&store_of(&args)));
            Ok(())
        }
        Command::Show(args) => {
            let store = store_of(&args.store);
            print(&history::show_run(&store, &args.run)?);
            Ok(())
        }
        Command::Diff(args) => {
            let store = store_of(&args.store);
            let (a, b) = (history::find_run(&store, &args.run_a)?, history::find_run(&store, &args.run_b)?);
            print(&diff::diff(&a, &b));
            Ok(())
        }
        Command::Rerun(args) => run::rerun(args, registry),
        Command::Gc(args) => gc::gc(args),
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

/// The error for reading a stage that has no usable cache entry: not computed yet, or
/// an entry that no longer matches its record (which the next run moves aside).
fn not_cached(plan: &Plan, stage: &str, status: &Status) -> Failure {
    let path = plan.spec.path.display();
    match status {
        Status::WillRun { reason: reason @ Reason::Damaged(_), .. } => Failure::failed(format!(
            "error: stage `{stage}`: {reason}; `kiln run {path} --until {stage}` moves it aside and computes it again"
        )),
        _ => Failure::failed(format!(
            "error: stage `{stage}` is not cached yet; build it with `kiln run {path} --until {stage}`"
        )),
    }
}

fn plan_of(args: &PipelineArgs, registry: &Registry) -> Result<Plan, Failure> {
    load_plan(&args.pipeline, &args.set, registry).map_err(|d| Failure::usage(d.render()))
}

/// The plan a command that reads the cache looks at: with the given `--set` overrides, or,
/// when none is given, with those of the newest run of the same pipeline file, so a
/// pipeline run with `--set ...path=` can be queried and inspected without typing them
/// again. Which run's overrides were taken is said on stderr.
fn plan_as_last_run(args: &PipelineArgs, registry: &Registry) -> Result<Plan, Failure> {
    if !args.set.is_empty() {
        return plan_of(args, registry);
    }
    let store = store_of(&args.store);
    match crate::runs::latest_overrides(&store.runs_dir(), &args.pipeline) {
        Some((run, overrides)) if !overrides.is_empty() => {
            let shown: Vec<String> = overrides.iter().map(|o| format!("--set {o}")).collect();
            eprintln!("note: with the overrides of run {run}, the newest of this pipeline: {}", shown.join(" "));
            load_plan(&args.pipeline, &overrides, registry).map_err(|d| Failure::usage(d.render()))
        }
        _ => plan_of(args, registry),
    }
}

fn plan(args: PlanArgs, registry: &Registry) -> Result<(), Failure> {
    let plan = plan_of(&args.pipeline, registry)?;
    plan.check_files(&vec![true; plan.stages.len()]).map_err(|d| Failure::usage(d.render()))?;
    let store = store_of(&args.pipeline.store);
    if args.explain {
        print(&explain::explain(&plan, &exec::status(&plan, &store, &[])));
        return Ok(());
    }
    let mut table = TextTable::new(&["stage", "kind", "status", "why"]);
    for (stage, status) in plan.stages.iter().zip(exec::status(&plan, &store, &[])) {
        let (word, why) = match status {
            Status::Cached { key, .. } => ("cached", format!("key {}", key.short())),
            Status::WillRun { reason, .. } => ("will run", reason.to_string()),
        };
        table.row(vec![stage.name.clone(), stage.kind.kind().into(), word.into(), why]);
    }
    print(&table.render());
    Ok(())
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
