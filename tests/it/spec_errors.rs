//! Golden files for spec errors: each `tests/spec_errors/NAME.yaml` is planned, and
//! its stderr must equal `NAME.stderr` and its exit status be 2, with nothing written to
//! the store. `KILN_BLESS=1 cargo test spec_errors` (or `just bless`) rewrites them.

use std::path::Path;

use super::{Workdir, repo};

#[test]
fn spec_errors_match_their_golden_files() {
    let dir = repo().join("tests/spec_errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "golden cases are missing");
    let bless = std::env::var_os("KILN_BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let relative = Path::new("tests/spec_errors").join(case.file_name().unwrap());
        let work = Workdir::new();
        let mut args = vec!["run", relative.to_str().unwrap()];
        // A case may carry its overrides on its first line: `# args: --set a.b=c`.
        let text = std::fs::read_to_string(&case).unwrap();
        let extra: Vec<String> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# args: "))
            .map(|a| a.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        args.extend(extra.iter().map(String::as_str));
        let out = work.kiln(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{name}: exit status\n{stderr}");
        assert!(!work.store().exists(), "{name}: a spec error touched the store");
        let golden = dir.join(format!("{name}.stderr"));
        if bless {
            std::fs::write(&golden, &stderr).unwrap();
        } else if std::fs::read_to_string(&golden).unwrap_or_default() != stderr {
            failures.push(format!(
                "--- {name}: expected\n{}\n--- got\n{stderr}",
                std::fs::read_to_string(&golden).unwrap_or_default()
            ));
        }
    }
    assert!(failures.is_empty(), "{}\n(re-bless with KILN_BLESS=1 if the change is intended)", failures.join("\n"));
}
