//! `pipelines/math-benchmarks.yaml` on fixtures in each benchmark's own form: every
//! source reads (MATH as the folder of its archive), every benchmark's reference
//! solutions score 100% as their harness reads them, a (tiny) model is evaluated on all
//! four, and one report shows them side by side.

use super::{Workdir, repo};

const BENCHMARKS: &str = "pipelines/math-benchmarks.yaml";

/// The MATH fixture laid out as the dataset's archive: `test/<subject>/<n>.json`.
fn math_folder(work: &Workdir) -> String {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/math-test.jsonl")).unwrap();
    let root = work.path().join("MATH/test");
    for (i, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let subject = record["type"].as_str().unwrap().to_lowercase().replace([' ', '&'], "_");
        std::fs::create_dir_all(root.join(&subject)).unwrap();
        std::fs::write(root.join(subject).join(format!("{i}.json")), serde_json::to_string_pretty(&record).unwrap())
            .unwrap();
    }
    root.display().to_string()
}

fn args(math: &str) -> Vec<String> {
    let mut out = Vec::new();
    for set in [
        "gsm8k_source.with.path=tests/fixtures/gsm8k-test.jsonl".to_string(),
        format!("math_source.with.path={math}"),
        "math401_source.with.path=tests/fixtures/math401.json".into(),
        "math23k_source.with.path=tests/fixtures/math23k.json".into(),
        // math-sft.yaml at the sizes of math-sft-smoke.yaml
        "problems.with.count=600".into(),
        "tokenizer.with.vocab_size=300".into(),
        "packed.with.seq_len=512".into(),
        "sft.with.model={hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64}".into(),
        "sft.with.steps=12".into(),
        "eval_math.with.max_new_tokens=48".into(),
    ] {
        out.push("--set".into());
        out.push(set);
    }
    out
}

#[test]
fn four_benchmarks_are_read_scored_and_shown_side_by_side() {
    let work = Workdir::new();
    let math = math_folder(&work);
    let mut cmd = vec!["run".to_string(), BENCHMARKS.into()];
    cmd.extend(args(&math));
    let out = work.ok(&cmd.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("benchmarks.html"), "{out}");
    let manifest = work.last_manifest();
    let stages = manifest["stages"].as_array().unwrap();
    let stage = |name: &str| stages.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}")).clone();
    for (parse, records) in [("gsm8k", 4), ("math", 17), ("math401", 30), ("math23k", 13)] {
        assert_eq!(stage(parse)["metrics"]["problems"], records, "{parse}");
        let gold = stage(&format!("gold_{parse}"));
        assert_eq!(gold["metrics"]["accuracy"], 1.0, "{parse}: the reference solutions as outputs: {gold}");
        let model = stage(&format!("eval_{parse}"));
        assert_eq!(model["status"], "ran");
        assert_eq!(model["metrics"]["problems"], records);
    }
    assert_eq!(stage("math23k")["metrics"]["equations_verified"], 13);
    let levels = stage("gold_math")["metrics"]["accuracy_per_level"].as_object().unwrap().len();
    assert_eq!(levels, 5, "Level 1-4 and `Level ?`");
    let report = std::fs::read_to_string(
        work.path().join(".kiln/runs").join(manifest["id"].as_str().unwrap()).join("benchmarks.html"),
    )
    .unwrap();
    let summary = report.split_once("<h2>Evaluation</h2>").unwrap().1.split("</table>").next().unwrap();
    assert_eq!(summary.matches("<tr>").count(), 9, "a header and a row for each of 8 evaluations");
    assert_eq!(summary.matches("<td>100.0% (").count(), 4, "the four references: {summary}");
    // The predictions are queryable like any output, with MATH's levels.
    let mut query = vec!["query".to_string(), BENCHMARKS.into()];
    query.push("SELECT level, count(*) AS n FROM gold_math GROUP BY level ORDER BY level".into());
    let shown = work.ok(&query.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(shown.contains("Level ?") && shown.contains("(5 rows)"), "{shown}");
}
