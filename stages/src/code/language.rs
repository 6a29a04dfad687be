//! The languages `eval.code` runs, and for each the toolchain found on this machine:
//! the first candidate of each tool that runs *inside the sandbox* (a Python under
//! `/root/.pyenv` is not one once the program runs as an unprivileged uid). A language
//! whose toolchain is missing is an error naming the tool, never a silent skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::sandbox::{Command, Mechanisms, Sandbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Javascript,
    Cpp,
    Rust,
    Go,
    Java,
}

impl Language {
    pub const ALL: [Language; 6] =
        [Language::Python, Language::Javascript, Language::Cpp, Language::Rust, Language::Go, Language::Java];

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
            Language::Cpp => "cpp",
            Language::Rust => "rust",
            Language::Go => "go",
            Language::Java => "java",
        }
    }

    /// A language by its name or the short names benchmarks use (HumanEvalPack's
    /// `js`, MultiPL-E's `rs`, `c++`).
    pub fn parse(name: &str) -> Option<Language> {
        Some(match name.to_ascii_lowercase().as_str() {
            "python" | "py" | "python3" => Language::Python,
            "javascript" | "js" | "node" => Language::Javascript,
            "cpp" | "c++" | "cxx" => Language::Cpp,
            "rust" | "rs" => Language::Rust,
            "go" | "golang" => Language::Go,
            "java" => Language::Java,
            _ => return None,
        })
    }

    /// The file the program is written to.
    pub fn source_file(self) -> &'static str {
        match self {
            Language::Python => "main.py",
            Language::Javascript => "main.js",
            Language::Cpp => "main.cpp",
            Language::Rust => "main.rs",
            Language::Go => "main_test.go",
            Language::Java => "Main.java",
        }
    }

    /// The tools it needs, with the argument that makes each print its version.
    fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Python => &[("python3", "--version")],
            Language::Javascript => &[("node", "--version")],
            Language::Cpp => &[("g++", "--version")],
            Language::Rust => &[("rustc", "--version")],
            Language::Go => &[("go", "version")],
            Language::Java => &[("javac", "-version"), ("java", "-version")],
        }
    }

    /// The address space a run gets at least: V8, the JVM and Go reserve far more
    /// virtual memory than they touch, and fail to start under a smaller RLIMIT_AS.
    pub fn min_memory_bytes(self) -> u64 {
        match self {
            Language::Python | Language::Cpp | Language::Rust => 0,
            Language::Go => 4 << 30,
            Language::Javascript | Language::Java => 16 << 30,
        }
    }

    /// Processes and threads a run needs besides what the program starts (the JVM's
    /// and Go's runtime threads, g++'s cc1plus and as).
    pub fn min_processes(self) -> u64 {
        match self {
            Language::Python => 0,
            Language::Cpp | Language::Rust => 8,
            Language::Javascript => 16,
            Language::Go | Language::Java => 64,
        }
    }
}

/// A language's tools, resolved to paths that run in the sandbox.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub language: Language,
    pub tools: Vec<PathBuf>,
}

/// Why a toolchain is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub language: Language,
    pub tool: &'static str,
    pub tried: Vec<PathBuf>,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} needs `{}`, and ", self.language.name(), self.tool)?;
        if self.tried.is_empty() {
            write!(f, "none is on PATH")
        } else {
            let tried: Vec<String> = self.tried.iter().map(|p| p.display().to_string()).collect();
            write!(f, "none of {} runs inside the sandbox (as an unprivileged uid)", tried.join(", "))
        }
    }
}

impl Toolchain {
    /// The toolchain of `language` for `sandbox`, found once per process.
    pub fn find(language: Language, sandbox: &Sandbox) -> Result<Toolchain, Missing> {
        type Cache = Mutex<HashMap<(Language, Mechanisms), Result<Toolchain, Missing>>>;
        static FOUND: OnceLock<Cache> = OnceLock::new();
        let cache = FOUND.get_or_init(Default::default);
        let key = (language, sandbox.mechanisms);
        if let Some(found) = cache.lock().expect("toolchain cache").get(&key) {
            return found.clone();
        }
        let found = Self::search(language, sandbox);
        cache.lock().expect("toolchain cache").insert(key, found.clone());
        found
    }

    fn search(language: Language, sandbox: &Sandbox) -> Result<Toolchain, Missing> {
        let mut tools = Vec::new();
        for &(tool, version) in language.tools() {
            let candidates = candidates(tool);
            let runs = |path: &PathBuf| {
                let Ok(dir) = super::sandbox::tempdir_in(&std::env::temp_dir(), "toolchain") else { return false };
                let mut limits = sandbox.limits.clone();
                limits.memory_bytes = limits.memory_bytes.max(language.min_memory_bytes());
                limits.processes = limits.processes.max(language.min_processes());
                let probe = Sandbox { mechanisms: sandbox.mechanisms, limits };
                let command = Command {
                    program: path.clone(),
                    args: vec![version.to_string()],
                    env: environment(std::slice::from_ref(path), dir.path()),
                    dir: dir.path().to_path_buf(),
                };
                probe.run(&command).is_ok_and(|o| o.success())
            };
            match candidates.iter().find(|c| runs(c)) {
                Some(path) => tools.push(path.clone()),
                None => return Err(Missing { language, tool, tried: candidates }),
            }
        }
        Ok(Toolchain { language, tools })
    }
}

/// Every executable named `tool` in PATH and the usual system folders, symlinks
/// resolved, each once, in PATH order.
fn candidates(tool: &str) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let Ok(real) = dir.join(tool).canonicalize() else { continue };
        if is_executable(&real) && !found.contains(&real) {
            found.push(real);
        }
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The environment of a sandboxed program: its tools' folders on PATH, home and
/// temporary folder in the work folder, a fixed hash seed and locale, nothing of kiln's.
pub fn environment(tools: &[PathBuf], dir: &Path) -> Vec<(String, String)> {
    let mut path: Vec<String> = tools.iter().filter_map(|t| t.parent()).map(|d| d.display().to_string()).collect();
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    path.dedup();
    let dir = dir.display().to_string();
    vec![
        ("PATH".into(), path.join(":")),
        ("HOME".into(), dir.clone()),
        ("TMPDIR".into(), dir.clone()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PYTHONHASHSEED".into(), "0".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ("GOCACHE".into(), format!("{dir}/.gocache")),
        ("GOPATH".into(), format!("{dir}/.gopath")),
        ("GOFLAGS".into(), "-mod=mod".into()),
        ("GOTOOLCHAIN".into(), "local".into()),
    ]
}
