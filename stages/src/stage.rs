//! The `Stage` trait every stage kind implements, and its object-safe form `StageKind`
//! that the orchestrator holds in the registry.
//!
//! A stage declares its typed parameters, inputs and outputs and runs deterministically
//! given (parameters, inputs, seed). It knows nothing about caching, ordering or the CLI.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::{ColumnType, TableSchema};

/// What an artifact is: a table of a schema, or a folder of files of a named kind
/// (`tokenizer`, `model`).
#[derive(Debug, Clone, PartialEq)]
pub enum Artifact {
    Table(TableSchema),
    Files(&'static str),
}

impl Artifact {
    /// Text that identifies the artifact's shape; it is part of the cache key.
    pub fn describe(&self) -> String {
        match self {
            Artifact::Table(schema) => format!("table {}\n{}", schema.name, schema.describe()),
            Artifact::Files(kind) => format!("files {kind}"),
        }
    }
}

/// The name of the single input declaration of a kind that takes any number of named
/// inputs (`mix`, `sql`): `from: { a: stage_a, b: stage_b }` binds `a` and `b`.
pub const ANY_INPUTS: &str = "*";

/// An input a stage kind takes. A name ending in `*` is a pattern binding one or more
/// inputs whose keys start with what precedes it: `eval*` binds `eval`, `eval_gsm8k`, …;
/// `*` alone binds any key.
#[derive(Debug)]
pub struct InputDecl {
    pub name: &'static str,
    pub accepts: Accepts,
    pub about: &'static str,
    /// The stage runs without it (`from:` may leave it out).
    pub optional: bool,
}

impl InputDecl {
    /// The fixed part of a pattern's name (`eval` of `eval*`), or None for a plain name.
    pub fn prefix(&self) -> Option<&'static str> {
        self.name.strip_suffix('*')
    }

    /// Whether the key of a `from:` entry binds to this declaration.
    pub fn binds(&self, key: &str) -> bool {
        match self.prefix() {
            Some(prefix) => key.starts_with(prefix),
            None => key == self.name,
        }
    }
}

/// The declaration an input key binds to: a plain name before a pattern that would
/// also match it.
pub fn declaration<'a>(decls: &'a [InputDecl], key: &str) -> Option<&'a InputDecl> {
    decls.iter().find(|d| d.name == key).or_else(|| decls.iter().find(|d| d.binds(key)))
}

/// What an input accepts.
#[derive(Debug)]
pub enum Accepts {
    /// A table with at least these columns (name, compact type).
    Table(&'static [(&'static str, &'static str)]),
    /// A folder of files of this kind.
    Files(&'static str),
}

impl Accepts {
    /// Checks an upstream artifact against this input; the error says what is missing.
    pub fn check(&self, artifact: &Artifact) -> std::result::Result<(), String> {
        match (self, artifact) {
            (Accepts::Table(columns), Artifact::Table(schema)) => {
                let mut problems = Vec::new();
                for (name, ty) in *columns {
                    let want = ColumnType::parse(ty).expect("declared column types parse");
                    match schema.column(name) {
                        None => problems.push(format!("no column `{name}` ({ty})")),
                        Some(col) if col.ty.data != want.data => {
                            problems.push(format!("column `{name}` is {}, not {ty}", col.ty))
                        }
                        Some(_) => {}
                    }
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!("its table `{}` has {}", schema.name, problems.join(", ")))
                }
            }
            (Accepts::Files(want), Artifact::Files(have)) if want == have => Ok(()),
            (Accepts::Files(want), Artifact::Files(have)) => Err(format!("it is a {have}, not a {want}")),
            (Accepts::Table(_), Artifact::Files(have)) => Err(format!("it is a {have}, not a table")),
            (Accepts::Files(want), Artifact::Table(schema)) => {
                Err(format!("it is the table `{}`, not a {want}", schema.name))
            }
        }
    }
}

/// One output of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    pub name: &'static str,
    pub artifact: Artifact,
    /// A report beside the stage's result (what was removed, per-step metrics): a bare
    /// `from: stage` never binds to it; `from: stage.output` does.
    pub report: bool,
}

impl OutputDecl {
    pub fn table(name: &'static str, schema: &TableSchema) -> Self {
        OutputDecl { name, artifact: Artifact::Table(schema.clone()), report: false }
    }
    pub fn files(name: &'static str, kind: &'static str) -> Self {
        OutputDecl { name, artifact: Artifact::Files(kind), report: false }
    }
    /// A report table.
    pub fn report(name: &'static str, schema: &TableSchema) -> Self {
        OutputDecl { report: true, ..Self::table(name, schema) }
    }
}

/// The artifacts bound to a stage's inputs, by input name.
pub type InputArtifacts = BTreeMap<String, Artifact>;

/// What a stage reports when it finishes: metrics recorded in the cache entry and run
/// manifest, and one human line for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct StageReport {
    pub metrics: serde_json::Map<String, serde_json::Value>,
    pub summary: Option<String>,
}

impl StageReport {
    pub fn metric(mut self, name: &str, value: impl Serialize) -> Self {
        self.metrics.insert(name.into(), serde_json::to_value(value).expect("metrics serialize"));
        self
    }
    pub fn summary(mut self, line: impl Into<String>) -> Self {
        self.summary = Some(line.into());
        self
    }
}

/// A stage kind, written with typed parameters.
pub trait Stage: Send + Sync + 'static {
    /// The parameters under `with:`; `#[serde(default, deny_unknown_fields)]`.
    type Params: Serialize + DeserializeOwned + Default + Send + Sync;
    /// The name used in `uses:`.
    const KIND: &'static str;
    /// Bumped whenever the output for the same inputs changes.
    const VERSION: u32;
    /// One line for `kiln stages`.
    const ABOUT: &'static str;
    /// Whether the output depends on the seed (only then is the seed part of the key).
    const RANDOM: bool = false;
    /// Whether the output depends on the device and kernels (train, eval).
    const USES_DEVICE: bool = false;
    /// Top-level parameters that cannot change the output (how often training writes a
    /// resumable checkpoint): left out of the key, so changing one reruns nothing.
    const NOT_IN_KEY: &'static [&'static str] = &[];

    fn inputs() -> &'static [InputDecl];

    /// Semantic checks beyond the types; errors name the parameter path.
    fn check(_params: &Self::Params) -> Result<()> {
        Ok(())
    }

    /// The outputs, in order; the first is what `from: stage` refers to.
    fn outputs(params: &Self::Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>>;

    /// Files outside the cache the stage reads (a source's data file), with the parameter
    /// that names each. Their content digests enter the key, so a changed file reruns
    /// the stage; a missing one is a plan error pointing at the parameter.
    fn external_files(_params: &Self::Params) -> Vec<ExternalFile> {
        Vec::new()
    }

    fn run(params: &Self::Params, ctx: &mut StageContext) -> Result<StageReport>;
}

/// A file a stage reads from outside the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalFile {
    /// The parameter naming it, as a dotted path under `with`.
    pub param: String,
    pub path: std::path::PathBuf,
    /// Whether a folder is accepted too (all its files are read: `source.json`).
    pub folder: bool,
}

/// The object-safe face of a stage kind, held by the registry.
pub trait StageKind: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn random(&self) -> bool;
    fn uses_device(&self) -> bool;
    fn inputs(&self) -> &'static [InputDecl];
    /// Every parameter at its default, in declaration order.
    fn default_params(&self) -> serde_json::Value;
    /// Types and checks the parameters given under `with:`.
    fn configure(&self, with: &serde_json::Value) -> Result<Box<dyn ConfiguredStage>>;
}

/// A stage kind with its parameters typed and checked.
pub trait ConfiguredStage: Send + Sync {
    /// The parameters after defaults, as they enter the cache key (without `NOT_IN_KEY`).
    fn params(&self) -> &serde_json::Value;
    fn outputs(&self, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>>;
    fn external_files(&self) -> Vec<ExternalFile>;
    fn run(&self, ctx: &mut StageContext) -> Result<StageReport>;
}

/// Adapts a `Stage` to `StageKind`; `registry` holds one per kind.
pub struct KindOf<S>(PhantomData<fn() -> S>);

impl<S> KindOf<S> {
    pub const fn new() -> Self {
        KindOf(PhantomData)
    }
}

impl<S> Default for KindOf<S> {
    fn default() -> Self {
        Self::new()
    }
}

struct Configured<S: Stage> {
    params: S::Params,
    canonical: serde_json::Value,
}

impl<S: Stage> StageKind for KindOf<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn about(&self) -> &'static str {
        S::ABOUT
    }
    fn random(&self) -> bool {
        S::RANDOM
    }
    fn uses_device(&self) -> bool {
        S::USES_DEVICE
    }
    fn inputs(&self) -> &'static [InputDecl] {
        S::inputs()
    }
    fn default_params(&self) -> serde_json::Value {
        serde_json::to_value(S::Params::default()).expect("parameters serialize")
    }
    fn configure(&self, with: &serde_json::Value) -> Result<Box<dyn ConfiguredStage>> {
        let params: S::Params = serde_path_to_error::deserialize(with).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            StageError::param(path, e.into_inner().to_string())
        })?;
        S::check(&params)?;
        let mut canonical = serde_json::to_value(&params).expect("parameters serialize");
        if let serde_json::Value::Object(map) = &mut canonical {
            for name in S::NOT_IN_KEY {
                map.shift_remove(*name);
            }
        }
        Ok(Box::new(Configured::<S> { params, canonical }))
    }
}

impl<S: Stage> ConfiguredStage for Configured<S> {
    fn params(&self) -> &serde_json::Value {
        &self.canonical
    }
    fn outputs(&self, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        S::outputs(&self.params, inputs)
    }
    fn external_files(&self) -> Vec<ExternalFile> {
        S::external_files(&self.params)
    }
    fn run(&self, ctx: &mut StageContext) -> Result<StageReport> {
        S::run(&self.params, ctx)
    }
}

/// A share as a percentage with one decimal, the same way everywhere it is printed.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}
