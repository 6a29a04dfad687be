//! Executing programs in the sandbox and judging them: compile once per sample (where
//! the language compiles), then run, each step under its own time limit; the ending
//! becomes one of five statuses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::language::{Language, Missing, Toolchain, environment};
use super::sandbox::{Command, Exit, Outcome, Sandbox, SandboxError, tempdir_in};

/// How a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every test passed (exit status 0).
    Passed,
    /// It ran and a test failed, or it raised, crashed or wrote past the output limit.
    Failed,
    /// Stopped at the time limit.
    Timeout,
    /// It ran out of its address space.
    Memory,
    /// It could not run as a program: a syntax or compile error.
    Error,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Passed, Status::Failed, Status::Timeout, Status::Memory, Status::Error];

    pub fn name(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Memory => "memory",
            Status::Error => "error",
        }
    }
}

/// What executing one program gave.
#[derive(Debug, Clone)]
pub struct Execution {
    pub status: Status,
    /// The tail of stderr (of the compiler when compiling failed).
    pub stderr: String,
    pub seconds: f64,
}

/// Runs programs of the languages it was made for.
pub struct Executor {
    sandbox: Sandbox,
    toolchains: BTreeMap<Language, Toolchain>,
    scratch: PathBuf,
}

/// Words in stderr that mean the program ran out of memory, per runtime.
const OUT_OF_MEMORY: &[&str] = &[
    "MemoryError",
    "std::bad_alloc",
    "memory allocation of",
    "OutOfMemoryError",
    "JavaScript heap out of memory",
    "out of memory",
    "Cannot allocate memory",
];

impl Executor {
    /// An executor for `languages`; a language whose toolchain is missing is an error.
    pub fn new(sandbox: Sandbox, languages: &[Language]) -> Result<Executor, Missing> {
        let mut toolchains = BTreeMap::new();
        for &language in languages {
            toolchains.insert(language, Toolchain::find(language, &sandbox)?);
        }
        Ok(Executor { sandbox, toolchains, scratch: std::env::temp_dir() })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Writes `program` to a fresh folder, compiles and runs it, and judges the ending.
    /// Fails only when the sandbox itself cannot start.
    pub fn execute(&self, language: Language, program: &str) -> Result<Execution, SandboxError> {
        let started = Instant::now();
        let toolchain = self
            .toolchains
            .get(&language)
            .unwrap_or_else(|| panic!("this is a bug in kiln: no toolchain for {} was prepared", language.name()));
        let dir = tempdir_in(&self.scratch, "sample")?;
        let path = dir.path().to_path_buf();
        std::fs::write(path.join(language.source_file()), program)
            .map_err(|e| SandboxError::Host(format!("cannot write the program into {}: {e}", path.display())))?;
        let mut limits = self.sandbox.limits.clone();
        limits.memory_bytes = limits.memory_bytes.max(language.min_memory_bytes());
        limits.processes = limits.processes.max(language.min_processes());
        let sandbox = Sandbox { mechanisms: self.sandbox.mechanisms, limits };
        let env = environment(&toolchain.tools, &path);
        let command = |program: &PathBuf, args: &[&str]| Command {
            program: program.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.clone(),
            dir: path.clone(),
        };
        let binary = path.join("main").display().to_string();
        let compile = match language {
            Language::Python | Language::Javascript | Language::Go => None,
            Language::Cpp => Some(command(&toolchain.tools[0], &["-std=c++17", "-O1", "-o", "main", "main.cpp"])),
            Language::Rust =>
            // HumanEvalPack's Rust tests are `#[test]` functions: build the test harness.
            {
                Some(command(&toolchain.tools[0], &["--edition", "2021", "--test", "-O", "-o", "main", "main.rs"]))
            }
            Language::Java => Some(command(&toolchain.tools[0], &["-encoding", "UTF-8", "Main.java"])),
        };
        if let Some(compile) = compile {
            let outcome = sandbox.run(&compile)?;
            if !outcome.success() {
                let status = match outcome.exit {
                    Exit::Timeout => Status::Timeout,
                    _ => Status::Error,
                };
                return Ok(Execution { status, stderr: tail(&outcome), seconds: started.elapsed().as_secs_f64() });
            }
        }
        let run = match language {
            Language::Python => command(&toolchain.tools[0], &["main.py"]),
            Language::Javascript => command(&toolchain.tools[0], &["main.js"]),
            Language::Cpp | Language::Rust => command(&PathBuf::from(&binary), &[]),
            Language::Go => command(&toolchain.tools[0], &["test", "main_test.go"]),
            Language::Java => command(&toolchain.tools[1], &["-Xss64m", "-Xmx1g", "-cp", ".", "Main"]),
        };
        let outcome = sandbox.run(&run)?;
        let status = judge(language, &outcome);
        Ok(Execution { status, stderr: tail(&outcome), seconds: started.elapsed().as_secs_f64() })
    }
}

fn judge(language: Language, outcome: &Outcome) -> Status {
    let stderr = outcome.stderr_text();
    match outcome.exit {
        // HumanEvalPack's JavaScript tests use console.assert, which only prints.
        Exit::Code(0) if language == Language::Javascript && stderr.contains("Assertion failed") => Status::Failed,
        Exit::Code(0) => Status::Passed,
        Exit::Timeout => Status::Timeout,
        // RLIMIT_CPU's soft limit: the CPU time ran out before the wall time did.
        Exit::Signal(libc::SIGXCPU) => Status::Timeout,
        Exit::OutputLimit => Status::Failed,
        _ if OUT_OF_MEMORY.iter().any(|m| stderr.contains(m)) => Status::Memory,
        Exit::Code(_) if language == Language::Python && python_could_not_run(&stderr) => Status::Error,
        Exit::Code(_) if language == Language::Javascript && stderr.contains("SyntaxError") => Status::Error,
        _ => Status::Failed,
    }
}

/// Python reports a program it cannot compile as a SyntaxError (or its subclasses) as
/// the last line, with no traceback above it (one raised while running, by `eval` or
/// `ast.parse`, has one and is a failure).
fn python_could_not_run(stderr: &str) -> bool {
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    ["SyntaxError", "IndentationError", "TabError"].iter().any(|e| last.starts_with(e))
        && !stderr.contains("Traceback (most recent call last)")
}

fn tail(outcome: &Outcome) -> String {
    let mut text = outcome.stderr_text();
    match outcome.exit {
        Exit::OutputLimit => text.push_str(&format!("\nkiln: stopped after {} bytes of output", outcome.output_bytes)),
        Exit::Timeout => text.push_str("\nkiln: stopped at the time limit"),
        Exit::Signal(s) => text.push_str(&format!("\nkiln: ended by signal {s}")),
        Exit::Code(_) => {}
    }
    text
}
