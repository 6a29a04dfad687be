//! Every table artifact opens in pyarrow and polars with the schema declared in
//! `schemas/`. Needs `python3` with pyarrow and polars (`just test` installs them).

use std::process::Command;

use kiln_stages::schema::standard;

use super::{SMOKE, Workdir};

const READER: &str = r#"
import json, sys, pathlib
import pyarrow as pa, pyarrow.parquet as pq, polars as pl

def name(t):
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list<" + name(t.value_type) + ">"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f.name + ":" + name(f.type) for f in t) + ">"
    return {"int8": "int8", "int32": "int32", "int64": "int64", "float": "float32", "double": "float64",
            "bool": "bool", "string": "string", "large_string": "string"}.get(str(t), str(t))

out = {}
for meta in sorted(pathlib.Path(sys.argv[1]).glob("cache/*/meta.json")):
    for output, info in json.loads(meta.read_text())["outputs"].items():
        if not info["artifact"].startswith("table "):
            continue
        parts = sorted((meta.parent / output).glob("*.parquet"))
        table = pa.concat_tables(pq.read_table(p) for p in parts)
        frame = pl.concat([pl.read_parquet(p) for p in parts])
        assert frame.height == table.num_rows == info["rows"], (meta, output)
        schema = info["artifact"].split()[1]
        out.setdefault(schema, [f.name + ": " + name(f.type) + ("?" if f.nullable and not pa.types.is_list(f.type) and f.name in NULLABLE else "") for f in table.schema])
print(json.dumps(out))
"#;

#[test]
fn every_table_opens_in_pyarrow_and_polars_with_its_declared_schema() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    let nullable: Vec<String> = standard::all()
        .iter()
        .flat_map(|s| s.columns.iter().filter(|c| c.ty.nullable).map(|c| format!("{:?}", c.name)))
        .collect();
    let script = READER.replace("NULLABLE", &format!("[{}]", nullable.join(", ")));
    let out = Command::new("python3").arg("-c").arg(script).arg(work.store()).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "reading the artifacts with pyarrow and polars failed (install them: `python3 -m pip install pyarrow polars`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for schema in standard::all() {
        let Some(columns) = read.get(&schema.name) else { continue };
        let declared: Vec<String> = schema.columns.iter().map(|c| format!("{}: {}", c.name, c.ty)).collect();
        let columns: Vec<String> =
            columns.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        assert_eq!(columns, declared, "schema `{}` as pyarrow reads it", schema.name);
        checked += 1;
    }
    // problems, chats, tokens, packed, train_metrics, predictions
    assert_eq!(checked, 6, "every standard schema was produced: {:?}", read.keys());
}
