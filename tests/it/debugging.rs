//! Stage-level debugging and reproducible reruns: query, plan --explain, dag, diff,
//! rerun (--verify), gc, and the report page each run writes.

use std::process::Stdio;

use super::{SMOKE, Workdir, wait_for};

fn fails(work: &Workdir, args: &[&str], status: i32) -> String {
    let out = work.kiln(args);
    assert_eq!(out.status.code(), Some(status), "kiln {args:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_id(work: &Workdir) -> String {
    work.last_manifest()["id"].as_str().unwrap().to_string()
}

#[test]
fn query_reads_cached_outputs_in_every_format() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "packed"]);
    let rows = work.last_manifest()["stages"][5]["outputs"]["packed"]["rows"].as_u64().unwrap();
    let sql = "SELECT count(*) AS n, sum(array_length(seq_lens)) AS docs FROM packed";
    let table = work.ok(&["query", SMOKE, sql]);
    let mut lines = table.lines();
    assert_eq!(lines.next().unwrap().split_whitespace().collect::<Vec<_>>(), ["n", "docs"], "{table}");
    let cells: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(cells[0], rows.to_string(), "{table}");
    // every sequence is in one row: the documents add up to the tokenized sequences
    let sequences = work.ok(&["query", SMOKE, "SELECT count(*) FROM tokens", "--format", "csv"]);
    assert_eq!(sequences.lines().nth(1).unwrap(), cells[1], "{sequences}");
    assert!(table.ends_with("(1 row)\n"), "{table}");

    // a stage of several outputs: `split` is its first, `split_eval` names one
    let csv = work.ok(&["query", SMOKE, "SELECT id, family FROM split_eval ORDER BY id LIMIT 2", "--format", "csv"]);
    assert_eq!(csv.lines().next(), Some("id,family"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let json = work.ok(&["query", SMOKE, "SELECT id, family FROM split ORDER BY id LIMIT 2", "--format", "json"]);
    let objects: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 2, "{json}");
    assert!(objects.iter().all(|o| o["id"].is_i64() && o["family"].is_string()), "{json}");

    let file = work.path().join("families.parquet");
    let sql = "SELECT family, count(*) AS n FROM problems GROUP BY family ORDER BY family";
    let out = work.ok(&["query", SMOKE, sql, "--format", "parquet", "--output", file.to_str().unwrap()]);
    assert!(out.is_empty(), "{out}");
    let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 6, "six families");
}

#[test]
fn query_errors_name_the_stage_the_table_or_datafusions_message() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "split"]);
    let err = fails(&work, &["query", SMOKE, "SELECT count(*) FROM tokens"], 1);
    assert!(err.contains("stage `tokens` is not cached yet") && err.contains("--until tokens"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELECT * FROM problemz"], 2);
    assert!(err.contains("no table `problemz`") && err.contains("Did you mean `problems`?"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELEC 1"], 2);
    assert!(err.contains("SQL error") && err.contains("in the query: SELEC 1"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELECT nope FROM problems"], 2);
    assert!(err.contains("nope") && err.contains("in the query: SELECT nope FROM problems"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELECT 1 FROM problems", "--format", "parquet"], 2);
    assert!(err.contains("--output"), "{err}");
}

/// Queries only read: `COPY ... TO`, `CREATE EXTERNAL TABLE`, `INSERT` and `SET` are
/// refused by `kiln query` and by the `sql` stage, and no file appears.
#[test]
fn queries_cannot_write_files() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "problems"]);
    let target = work.path().join("written");
    let t = target.display();
    let writes = [
        format!("COPY (SELECT * FROM problems) TO '{t}.parquet'"),
        format!("COPY problems TO '{t}.csv' STORED AS CSV"),
        format!("CREATE EXTERNAL TABLE x (a INT) STORED AS CSV LOCATION '{t}.ext.csv'"),
        "CREATE VIEW v AS SELECT * FROM problems".to_string(),
        "INSERT INTO problems SELECT * FROM problems".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ];
    for sql in &writes {
        let out = work.kiln(&["query", SMOKE, sql]);
        assert!(!out.status.success(), "{sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        // (`CREATE EXTERNAL TABLE x` already names a table that is not there.)
        assert!(err.contains("queries only read") || err.contains("no table `x`"), "{sql}: {err}");
        let pipeline = work.path().join("q.yaml");
        let stage = serde_json::to_string(sql).unwrap();
        let text = format!(
            "extends: {}\nstages:\n  q:\n    uses: sql\n    from: {{ problems: problems }}\n    with: {{ query: {stage} }}\n",
            super::repo().join(SMOKE).display()
        );
        std::fs::write(&pipeline, text).unwrap();
        let out = work.kiln(&["run", pipeline.to_str().unwrap(), "--until", "q"]);
        assert_eq!(out.status.code(), Some(2), "{sql}: {}", String::from_utf8_lossy(&out.stdout));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("queries only read") || err.contains("no table `x`"), "{sql}: {err}");
    }
    let written: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("written"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn plan_explain_shows_whole_keys_and_every_change() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "packed"]);
    let id = run_id(&work);
    let text = work.ok(&[
        "plan",
        SMOKE,
        "--explain",
        "--set",
        "packed.with.seq_len=256",
        "--set",
        "packed.with.shuffle=false",
    ]);
    let section = |stage: &str| {
        let start = text.find(&format!("\n{stage} (")).map_or(0, |i| i + 1);
        text[start..].split("\n\n").next().unwrap().to_string()
    };
    let tokens = section("tokens");
    assert!(tokens.starts_with("tokens (tokenize v") && tokens.contains(": cached"), "{tokens}");
    assert!(tokens.contains("train_on: [\"assistant\"]") && tokens.contains("data <- chats.chats  "), "{tokens}");
    let packed = section("packed");
    assert!(packed.contains(": will run") && packed.contains("seq_len: 256") && packed.contains("seed   "), "{packed}");
    assert!(packed.contains(&format!("differs from its entry of run {id}")), "{packed}");
    assert!(packed.contains("with.seq_len 512 -> 256") && packed.contains("with.shuffle true -> false"), "{packed}");
    let sft = section("sft");
    assert!(sft.contains("(computed when `packed` runs)") && sft.contains("device cpu, kernels "), "{sft}");
    assert!(sft.contains("no earlier run of this pipeline has a cached entry of it"), "{sft}");
}

#[test]
fn dag_draws_the_graph_with_cache_status() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--until", "split"]);
    let text = work.ok(&["dag", SMOKE]);
    let line = |stage: &str| text.lines().find(|l| l.trim_start_matches([' ', '└']).starts_with(stage)).unwrap();
    assert!(line("split").starts_with("└ split") && line("split").contains("cached"), "{text}");
    assert!(line("chats").contains("will run") && line("chats").ends_with("split.train"), "{text}");
    assert!(line("eval").ends_with("sft.model, tokenizer, split.eval as data"), "{text}");
    let mermaid = work.ok(&["dag", SMOKE, "--format", "mermaid"]);
    assert!(mermaid.starts_with("flowchart TD\n") && mermaid.contains("s1 -->|train| s2"), "{mermaid}");
    assert!(mermaid.contains("s1[\"split<br/><small>split · cached</small>\"]:::cached"), "{mermaid}");
    let dot = work.ok(&["dag", SMOKE, "--format", "dot"]);
    assert!(
        dot.starts_with("digraph \"math-sft-smoke\" {") && dot.contains("\"split\" -> \"chats\" [label=\"train\"];")
    );
    assert_eq!(dot.matches(" -> ").count(), mermaid.matches(" -->").count());
}

#[test]
fn diff_names_changed_keys_and_marks_changed_metrics() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    let a = run_id(&work);
    work.ok(&["run", SMOKE, "--set", "sft.with.steps=6"]);
    let b = run_id(&work);
    let text = work.ok(&["diff", &a, &b]);
    let line = |start: &str| text.lines().find(|l| l.trim_start().starts_with(start)).unwrap_or("").to_string();
    assert!(line("sft ").contains("with.steps 12 -> 6"), "{text}");
    assert!(line("eval ").contains("input `model` changed (from `sft.model`)"), "{text}");
    assert!(line("same key in both").contains("problems, split, chats, tokenizer, tokens, packed"), "{text}");
    let steps = text.lines().find(|l| l.contains("sft") && l.contains(" steps ")).unwrap();
    assert_eq!(steps.split_whitespace().collect::<Vec<_>>(), ["sft", "steps", "12", "6", "*", "-6"], "{text}");
    let err = fails(&work, &["diff", &a, "19990101"], 2);
    assert!(err.contains("no run `19990101`"), "{err}");
}

#[test]
fn rerun_runs_the_recorded_pipeline_and_verify_compares_bytes() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE, "--set", "sft.with.steps=6"]);
    let id = run_id(&work);
    // the recorded pipeline has the override applied: everything is cached
    work.ok(&["rerun", &id]);
    assert!(work.statuses().iter().all(|(_, s)| s == "cached"), "{:?}", work.statuses());
    assert_eq!(work.last_manifest()["overrides"][0], "sft.with.steps=6");

    let out = work.ok(&["rerun", &id, "--verify"]);
    assert!(out.contains("9 of 9 recomputed reproduced the cache"), "{out}");
    let stages = work.last_manifest()["stages"].as_array().unwrap().clone();
    assert!(stages.iter().all(|s| s["verified"]["reproducible"] == true), "{stages:?}");
    assert!(!work.store().join("verify").exists(), "the recomputation is removed");
    let runs = work.ok(&["runs"]);
    let newest = runs.lines().nth(1).unwrap();
    assert!(newest.contains("ok, 9/9 reproduced") && newest.ends_with("sft.with.steps=6"), "{runs}");

    // a cached file that changed is reported, and the run fails
    let key = stages[8]["key"].as_str().unwrap();
    let page = work.store().join("cache").join(key).join("report/report.html");
    let mut bytes = std::fs::read(&page).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&page, bytes).unwrap();
    let out = work.kiln(&["rerun", &id, "--verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout.lines().find(|l| l.starts_with("report")).unwrap();
    assert!(report.contains("DIFFERS") && report.contains("report/report.html"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reproducible: report"));

    let err = fails(&work, &["rerun", "19990101"], 2);
    assert!(err.contains("no run `19990101`"), "{err}");
}

#[test]
fn gc_keeps_the_entries_of_kept_and_running_runs() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    work.ok(&["run", SMOKE, "--set", "sft.with.steps=6"]);
    let dry = work.ok(&["gc", "--keep-runs", "1", "--dry-run"]);
    assert!(dry.starts_with("would remove 3 entries"), "{dry}");
    let gc = work.ok(&["gc", "--keep-runs", "1"]);
    assert!(gc.starts_with("removed 3 entries"), "{gc}");
    for stage in ["sft", "eval", "report"] {
        assert!(gc.lines().any(|l| l.split_whitespace().nth(2) == Some(stage)), "{gc}");
    }
    assert!(gc.contains("kept 9 entries"), "{gc}");
    let plan = work.ok(&["plan", SMOKE]);
    assert!(plan.lines().any(|l| l.starts_with("sft") && l.contains("will run")), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("packed") && l.contains("cached")), "{plan}");
    assert!(work.ok(&["gc", "--keep-runs", "1"]).starts_with("removed 0 entries"));

    // A running pipeline's entries stay, even when no run is kept; once it is killed
    // they go.
    let mut child = work.spawn(&["run", SMOKE, "--set", "sft.with.steps=100000"], Stdio::null());
    let runs = work.store().join("runs");
    wait_for("the long run to start training", || {
        let newest = std::fs::read_dir(&runs).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).max()?;
        let text = std::fs::read_to_string(newest.join("manifest.json")).ok()?;
        (text.contains("\"tokens\"") && work.store().join("tmp").read_dir().ok()?.next().is_some()).then_some(())
    });
    let gc = work.ok(&["gc", "--keep-runs", "0"]);
    assert!(gc.starts_with("removed 3 entries") && gc.contains("kept 6 entries"), "{gc}");
    assert!(gc.contains("(the 0 newest and 1 running)"), "{gc}");
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = work.ok(&["runs"]);
    assert!(runs.lines().nth(1).is_some_and(|l| l.contains("killed")), "{runs}");
    let gc = work.ok(&["gc", "--keep-runs", "0"]);
    assert!(gc.starts_with("removed 6 entries") && gc.contains("leftovers of killed runs"), "{gc}");
}

#[test]
fn each_run_writes_its_report_page_with_its_stages() {
    let work = Workdir::new();
    let out = work.ok(&["run", SMOKE]);
    let path = out.lines().find_map(|l| l.strip_prefix("report: ")).expect("the run prints its page");
    let page = std::fs::read_to_string(path).unwrap();
    assert!(path.ends_with(&format!("{}/report.html", run_id(&work))), "{path}");
    assert!(page.contains("<tr><td>sft</td><td>train</td><td>ran</td>"), "{page}");
    assert!(page.contains("<h2>Training</h2>") && page.contains("<h2>Evaluation</h2>"));
    work.ok(&["run", SMOKE]);
    let page = std::fs::read_to_string(work.store().join("runs").join(run_id(&work)).join("report.html")).unwrap();
    assert!(page.contains("<tr><td>sft</td><td>train</td><td>cached</td>"), "{page}");
    assert!(!page.contains("kiln:run-stages"));
}

/// `--run NAME=RUN` reads a recorded run's outputs as `NAME.stage`: two runs joined.
#[test]
fn query_joins_the_outputs_of_two_runs() {
    let work = Workdir::new();
    work.ok(&["run", SMOKE]);
    let a = run_id(&work);
    work.ok(&["run", SMOKE, "--set", "sft.with.steps=6"]);
    let b = run_id(&work);
    let sql = "SELECT count(*) AS n, sum(CASE WHEN x.output = y.output THEN 1 ELSE 0 END) AS same \
               FROM a.eval x JOIN b.eval y ON x.id = y.id";
    let (run_a, run_b) = (format!("a={a}"), format!("b={b}"));
    let csv = work.ok(&["query", SMOKE, sql, "--run", &run_a, "--run", &run_b, "--format", "csv"]);
    let row: Vec<u64> = csv.lines().nth(1).unwrap().split(',').map(|c| c.parse().unwrap()).collect();
    assert_eq!(row[0], 12, "the smoke evaluation's 12 problems, in both runs: {csv}");
    assert!(row[1] < 12, "6 and 12 steps of training answer differently: {csv}");
    // the same run under two names joins with itself
    let run_b2 = format!("a={b}");
    let csv = work.ok(&["query", SMOKE, sql, "--run", &run_b2, "--run", &run_b, "--format", "csv"]);
    assert_eq!(csv.lines().nth(1), Some("12,12"), "{csv}");

    let err = fails(&work, &["query", SMOKE, "SELECT * FROM c.eval", "--run", &run_a], 2);
    assert!(err.contains("no run named `c`") && err.contains("--run c=RUN"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELECT * FROM a.evl", "--run", &run_a], 2);
    assert!(err.contains("has no table `evl`") && err.contains("Did you mean `eval`?"), "{err}");
    let err = fails(&work, &["query", SMOKE, "SELECT 1", "--run", "last"], 2);
    assert!(err.contains("write NAME=RUN"), "{err}");
}
