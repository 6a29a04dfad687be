//! A stage kind defined outside kiln, and a pipeline run from library code.
//!
//!     cargo run --example custom_stage
//!
//! `filter.family` keeps the problems of some families; the pipeline generates problems
//! and filters them; the run is recorded and cached like any other.

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use kiln_stages::stage::InputArtifacts;
use kiln_stages::{Accepts, Artifact, InputDecl, KindOf, OutputDecl, Stage, StageContext, StageError, StageReport};
use serde::{Deserialize, Serialize};

struct KeepFamilies;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    families: Vec<String>,
}

impl Stage for KeepFamilies {
    type Params = Params;
    const KIND: &'static str = "filter.family";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "keep the rows of the named families";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: "data",
            accepts: Accepts::Table(&[("family", "string")]),
            about: "problems",
            optional: false,
        }]
    }

    fn check(params: &Params) -> kiln_stages::Result<()> {
        if params.families.is_empty() {
            return Err(StageError::param("families", "name at least one family"));
        }
        Ok(())
    }

    fn outputs(_: &Params, inputs: &InputArtifacts) -> kiln_stages::Result<Vec<OutputDecl>> {
        match inputs.get("data") {
            Some(Artifact::Table(schema)) => Ok(vec![OutputDecl::table("kept", schema)]),
            _ => Err(StageError::Internal("filter.family reads a table".into())),
        }
    }

    fn run(params: &Params, ctx: &mut StageContext) -> kiln_stages::Result<StageReport> {
        let mut writer = ctx.write_table("kept")?;
        for batch in ctx.table("data")?.batches() {
            let batch = batch?;
            let family = batch.column_by_name("family").expect("declared input column");
            let family = family.as_any().downcast_ref::<StringArray>().expect("a string column");
            let keep: BooleanArray =
                (0..family.len()).map(|i| Some(params.families.iter().any(|f| f == family.value(i)))).collect();
            writer.write(&filter_record_batch(&batch, &keep)?)?;
        }
        let rows = writer.finish()?;
        Ok(StageReport::default().metric("rows", rows).summary(format!("kept {rows} rows")))
    }
}

static KEEP_FAMILIES: KindOf<KeepFamilies> = KindOf::new();

const PIPELINE: &str = r#"
name: custom-stage-example
seed: 7
stages:
  problems:
    uses: math.generate
    with: { count: 100 }
  words:
    uses: filter.family
    from: problems
    with: { families: [word] }
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = kiln::Registry::default().with(&KEEP_FAMILIES);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, PIPELINE)?;
    let plan = kiln::load_plan(&path, &[], &registry).map_err(|d| d.render())?;
    let store = kiln::store::Store::new(dir.path().join(".kiln"));
    let manifest = kiln::exec::run(&plan, &store, &Default::default(), &kiln::exec::Quiet)?.into_result()?;
    for stage in &manifest.stages {
        println!("{:<10} {:<14} {}", stage.name, stage.kind, stage.summary.clone().unwrap_or_default());
    }
    Ok(())
}
