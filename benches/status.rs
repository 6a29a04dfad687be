//! Status benchmark: a no-op `kiln plan` and a no-op `kiln run` (every stage cached)
//! against `dvc status` on an equivalent three-stage DVC pipeline over the same files
//! (copies of kiln's `problems`, `tokens` and `packed` artifacts as each stage's output);
//! and `kiln query` aggregating all rows of the packed output against the same
//! aggregates in Python with pyarrow over the same Parquet parts. Each is the median of
//! 15 after 2 warm-ups, measured in the same run.
//!
//! kiln's status reads `meta.json` files and no artifact data, so its cost does not grow
//! with the data; DVC checks each dependency and output against its state database
//! (size and modification time, as kiln does for external files) and starts Python.
//!
//! By default the bench builds `pipelines/math-sft-smoke.yaml` in a temporary working
//! directory (the default pipeline's stages at toy sizes, seconds to build). To measure
//! the default pipeline itself, point it at a working directory whose cache is built:
//! `KILN_BENCH_WORKDIR=dir KILN_BENCH_PIPELINE=pipelines/math-sft.yaml`. DVC runs as
//! `$KILN_BENCH_PYTHON -m dvc` (`just bench` installs it in its environment).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ROUNDS: usize = 15;

fn kiln(workdir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .arg("--workdir")
        .arg(workdir)
        .env_remove("KILN_HOME")
        .output()
        .expect("kiln runs");
    assert!(out.status.success(), "kiln {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Median wall time of a command in milliseconds.
fn median_ms(mut once: impl FnMut()) -> f64 {
    for _ in 0..2 {
        once();
    }
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            once();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[ROUNDS / 2]
}

/// The folder of a cached stage output, from the newest run's manifest.
fn artifact(workdir: &Path, stage: &str, output: &str) -> PathBuf {
    let runs = workdir.join(".kiln/runs");
    let newest = std::fs::read_dir(&runs).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).max().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest.join("manifest.json")).unwrap()).unwrap();
    let record = manifest["stages"].as_array().unwrap().iter().find(|s| s["name"] == stage).expect("the stage");
    workdir.join(".kiln/cache").join(record["key"].as_str().unwrap()).join(output)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

const DVC_YAML: &str = "stages:
  problems:
    cmd: cp -r src/problems problems
    deps: [src/problems]
    outs: [problems]
  tokens:
    cmd: cp -r src/tokens tokens
    deps: [problems, src/tokens]
    outs: [tokens]
  packed:
    cmd: cp -r src/packed packed
    deps: [tokens, src/packed]
    outs: [packed]
";

/// `dvc status`'s median time over a DVC project built from kiln's artifacts, or why not.
fn dvc_status(workdir: &Path) -> Result<f64, String> {
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let project = tempfile::tempdir().unwrap();
    let dvc = |args: &[&str]| {
        Command::new(&python)
            .arg("-m")
            .arg("dvc")
            .args(args)
            .current_dir(project.path())
            .output()
            .map_err(|e| e.to_string())
    };
    let init = dvc(&["init", "--no-scm", "--quiet"])?;
    if !init.status.success() {
        return Err(format!("`{python} -m dvc` failed: {}", String::from_utf8_lossy(&init.stderr).trim()));
    }
    for (stage, output) in [("problems", "problems"), ("tokens", "tokens"), ("packed", "packed")] {
        copy_dir(&artifact(workdir, stage, output), &project.path().join("src").join(stage));
    }
    std::fs::write(project.path().join("dvc.yaml"), DVC_YAML).unwrap();
    let repro = dvc(&["repro", "--quiet"])?;
    if !repro.status.success() {
        return Err(format!("dvc repro failed: {}", String::from_utf8_lossy(&repro.stderr)));
    }
    let status = dvc(&["status"])?;
    let said = String::from_utf8_lossy(&status.stdout);
    if !said.contains("up to date") {
        return Err(format!("dvc status is not a no-op: {said}"));
    }
    Ok(median_ms(|| {
        dvc(&["status"]).unwrap();
    }))
}

/// The aggregate query of the issue ("over the packed output, all rows"), in kiln's SQL.
const QUERY: &str = "SELECT count(*) AS rows, sum(array_length(seq_lens)) AS documents, \
                     sum(cardinality(input_ids)) AS tokens FROM packed";

/// The same aggregates with pyarrow over the same Parquet parts, as a user would script
/// them (process start and imports included, as kiln's are).
const PYARROW: &str = r#"
import sys, pyarrow.parquet as pq, pyarrow.compute as pc
t = pq.read_table(sys.argv[1], columns=["seq_lens", "input_ids"])
print(t.num_rows, pc.sum(pc.list_value_length(t["seq_lens"])).as_py(), pc.sum(pc.list_value_length(t["input_ids"])).as_py())
"#;

/// kiln query's and pyarrow's medians (ms) over the packed output, with their answers.
fn query_times(workdir: &Path, pipeline: &str) -> (f64, Option<f64>) {
    let answer = String::from_utf8(kiln(workdir, &["query", pipeline, QUERY, "--format", "csv"]).stdout).unwrap();
    let kiln_ms = median_ms(|| {
        kiln(workdir, &["query", pipeline, QUERY, "--format", "csv"]);
    });
    let packed = artifact(workdir, "packed", "packed");
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let pyarrow = || Command::new(&python).args(["-c", PYARROW]).arg(&packed).output();
    let Ok(out) = pyarrow() else { return (kiln_ms, None) };
    if !out.status.success() {
        println!("  pyarrow: not measured ({})", String::from_utf8_lossy(&out.stderr).trim());
        return (kiln_ms, None);
    }
    let theirs = String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(",");
    let ours = answer.lines().nth(1).unwrap_or("").to_string();
    assert_eq!(theirs, ours, "kiln query and pyarrow disagree");
    let pyarrow_ms = median_ms(|| {
        pyarrow().unwrap();
    });
    (kiln_ms, Some(pyarrow_ms))
}

fn main() {
    // `cargo test --bench status` passes test-harness flags; there is nothing to filter.
    let (workdir, pipeline, _keep) = match (std::env::var("KILN_BENCH_WORKDIR"), std::env::var("KILN_BENCH_PIPELINE")) {
        (Ok(dir), Ok(pipeline)) => (PathBuf::from(dir), pipeline, None),
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let pipeline = "pipelines/math-sft-smoke.yaml".to_string();
            kiln(dir.path(), &["run", &pipeline]);
            (dir.path().to_path_buf(), pipeline, Some(dir))
        }
    };
    let plan = String::from_utf8(kiln(&workdir, &["plan", &pipeline]).stdout).unwrap();
    assert!(!plan.contains("will run"), "the cache of {pipeline} in {} is not built:\n{plan}", workdir.display());
    let stages = plan.lines().count() - 1;
    let plan_ms = median_ms(|| {
        kiln(&workdir, &["plan", &pipeline]);
    });
    let run_ms = median_ms(|| {
        kiln(&workdir, &["run", &pipeline]);
    });
    println!("status of {pipeline} ({stages} stages, all cached), medians of {ROUNDS}:");
    println!("  no-op kiln plan: {plan_ms:.1} ms");
    println!("  no-op kiln run:  {run_ms:.1} ms (writes its run record)");
    match dvc_status(&workdir) {
        Ok(dvc_ms) => {
            println!("  dvc status, 3 stages over copies of problems, tokens and packed: {dvc_ms:.1} ms");
            println!("  ratio: kiln plan {:.1}x faster, kiln run {:.1}x faster", dvc_ms / plan_ms, dvc_ms / run_ms);
        }
        Err(why) => println!("  dvc status: not measured ({why}); `just bench` installs DVC"),
    }
    let (query_ms, pyarrow_ms) = query_times(&workdir, &pipeline);
    println!("query over all rows of packed (count, documents, tokens), medians of {ROUNDS}:");
    println!("  kiln query: {query_ms:.1} ms");
    if let Some(pyarrow_ms) = pyarrow_ms {
        println!("  python3 + pyarrow, the same aggregates over the same files: {pyarrow_ms:.1} ms");
        println!("  ratio: kiln query {:.1}x faster", pyarrow_ms / query_ms);
    }
}
