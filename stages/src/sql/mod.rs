//! `sql`: a DataFusion SQL query over the stage's inputs, each a table named after its
//! key in `from:` (`from: { problems: problems, extra: more }`).

pub mod engine;

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use serde::{Deserialize, Serialize};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::stage::{ANY_INPUTS, Accepts, Artifact, InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct Sql;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    pub query: String,
}

impl Stage for Sql {
    type Params = Params;
    const KIND: &'static str = "sql";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a DataFusion SQL query over the inputs, each a table named after its `from` key";

    fn inputs() -> &'static [InputDecl] {
        &[InputDecl {
            name: ANY_INPUTS,
            accepts: Accepts::Table(&[]),
            about: "tables, named by their keys",
            optional: false,
        }]
    }

    fn check(params: &Params) -> Result<()> {
        if params.query.trim().is_empty() {
            return Err(StageError::param("query", "give a query, e.g. `SELECT * FROM problems WHERE family = 'add'`"));
        }
        Ok(())
    }

    fn outputs(params: &Params, inputs: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        let tables: Vec<_> = inputs
            .iter()
            .map(|(name, artifact)| match artifact {
                Artifact::Table(schema) => Ok((name.clone(), schema.arrow())),
                Artifact::Files(kind) => {
                    Err(StageError::param("query", format!("input `{name}` is a {kind}, not a table")))
                }
            })
            .collect::<Result<_>>()?;
        let schema = engine::plan_schema(&params.query, &tables).map_err(|e| StageError::param("query", e))?;
        let table = engine::table_schema("sql", &schema).map_err(|e| StageError::param("query", e))?;
        Ok(vec![OutputDecl::table("result", &table)])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let names = ctx.input_names();
        let dirs: Vec<(String, &Path)> =
            names.iter().map(|n| Ok((n.clone(), ctx.input(n)?.dir.as_path()))).collect::<Result<_>>()?;
        ctx.progress().start(1, "query");
        let (_, batches) = engine::execute(&params.query, &dirs).map_err(|e| StageError::param("query", e))?;
        let mut writer = ctx.write_table("result")?;
        let declared = writer.schema().clone();
        let mut rows = 0;
        for batch in batches {
            // Cast to the declared types (DataFusion may widen or view-type strings).
            let columns = batch
                .columns()
                .iter()
                .zip(declared.fields())
                .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = RecordBatch::try_new(declared.clone(), columns)?;
            rows += batch.num_rows();
            writer.write(&batch)?;
        }
        writer.finish()?;
        ctx.progress().advance(1);
        Ok(StageReport::default().metric("rows", rows).summary(format!("{rows} rows")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::standard;
    use crate::table::Columns;
    use crate::testing;

    fn problems(dir: &std::path::Path) -> crate::context::Slot {
        testing::problems(
            dir,
            &[
                (1, "add", "q1", "s1", "1"),
                (2, "mul", "q2", "s2", "2"),
                (3, "add", "q3", "s3", "3"),
                (4, "sub", "q4", "s4", "4"),
            ],
        )
    }

    #[test]
    fn a_query_runs_over_inputs_named_by_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let input = problems(&dir.path().join("in"));
        let query =
            "{ query: \"SELECT family, count(*) AS n, max(id) AS last FROM p GROUP BY family ORDER BY family\" }";
        testing::run::<Sql>(query, vec![("p", input)], &dir.path().join("out"), 0).unwrap();
        let batches = testing::read(&dir.path().join("out/result"));
        let c = Columns::new(&batches[0]);
        assert_eq!(c.strings("family").unwrap().iter().flatten().collect::<Vec<_>>(), ["add", "mul", "sub"]);
        assert_eq!(c.i64s("n").unwrap().values().to_vec(), [2, 1, 1]);
    }

    #[test]
    fn bad_queries_are_plan_errors_with_datafusions_message() {
        let inputs = [("p".to_string(), Artifact::Table(standard::problems().clone()))].into_iter().collect();
        let bad = Params { query: "SELECT nope FROM p".into() };
        match Sql::outputs(&bad, &inputs) {
            Err(StageError::Param { path, message }) => {
                assert_eq!(path, "query");
                assert!(message.contains("nope") && message.contains("in the query: SELECT nope FROM p"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let schema = Sql::outputs(&Params { query: "SELECT id, question AS q FROM p".into() }, &inputs).unwrap();
        let crate::stage::Artifact::Table(t) = &schema[0].artifact else { panic!() };
        assert_eq!(t.describe(), "id: int64\nq: string\n");
    }
}
