//! kiln's integration tests: one binary, one module per area. They run the `kiln`
//! binary as a user does, in a fresh working directory each.

mod benchmarks;
mod cli;
mod code;
mod conformance;
mod debugging;
mod hostile;
mod pipeline;
mod sources;
mod spec_errors;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (pipelines and golden files are found relative to it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch working directory holding its own `.kiln/`.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    pub fn new() -> Self {
        Workdir { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.path().join(".kiln")
    }

    /// Runs `kiln ARGS --workdir <this>` from the repository root.
    pub fn kiln(&self, args: &[&str]) -> Output {
        self.kiln_with(args, &[])
    }

    /// `kiln` with extra environment variables.
    pub fn kiln_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied()).output().expect("kiln runs")
    }

    /// `kiln ARGS --workdir <this>` started in the background, stdout discarded.
    pub fn spawn(&self, args: &[&str], stderr: Stdio) -> Child {
        self.command(args).stdout(Stdio::null()).stderr(stderr).spawn().expect("kiln starts")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.current_dir(repo()).args(args).env_remove("KILN_HOME");
        if !matches!(args.first(), Some(&"stages" | &"schema")) {
            command.arg("--workdir").arg(self.path());
        }
        command
    }

    /// Like `kiln`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The newest run's manifest.
    pub fn last_manifest(&self) -> serde_json::Value {
        let runs = self.store().join("runs");
        let mut ids: Vec<_> = std::fs::read_dir(&runs).expect("runs exist").map(|e| e.unwrap().file_name()).collect();
        ids.sort();
        let text = std::fs::read_to_string(runs.join(ids.last().expect("a run")).join("manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `stage -> status` of the newest run.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.last_manifest()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string()))
            .collect()
    }
}

pub const SMOKE: &str = "pipelines/math-sft-smoke.yaml";

/// Polls `found` every few milliseconds until it gives a value; fails naming `what`
/// after two minutes.
pub fn wait_for<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{what} never happened");
        std::thread::sleep(Duration::from_millis(5));
    }
}
