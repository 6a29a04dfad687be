//! kiln: declarative, cached, reproducible SFT pipelines.
//!
//! The orchestrator: `spec` reads a pipeline file, `plan` resolves it against the
//! registry of stage kinds, `exec` runs the plan against the cache `store` and records
//! the run in `runs`. The stage kinds live in `kiln-stages`; this crate knows nothing
//! about tokens or models.
//!
//! Running a pipeline from library code:
//!
//! ```no_run
//! let registry = kiln::Registry::default();
//! let plan = kiln::load_plan("pipelines/math-sft-smoke.yaml".as_ref(), &[], &registry)?;
//! let store = kiln::store::Store::new(".kiln");
//! let manifest = kiln::exec::run(&plan, &store, &Default::default(), &kiln::exec::Quiet)?.into_result()?;
//! println!("run {}", manifest.id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cli;
pub mod diagnostic;
pub mod exec;
pub mod gc;
pub mod plan;
pub mod run_page;
pub mod runs;
pub mod source;
pub mod spec;
pub mod store;

use std::path::Path;

pub use kiln_stages::Registry;

use diagnostic::Diagnostics;
use plan::Plan;

/// Reads, resolves and validates a pipeline: all of its errors, or a plan.
pub fn load_plan(path: &Path, overrides: &[String], registry: &Registry) -> Result<Plan, Diagnostics> {
    let loaded = spec::load(path, overrides)?;
    Plan::new(loaded.spec, loaded.sources, loaded.errors, registry)
}
