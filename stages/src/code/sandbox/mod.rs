//! Running one model-written program, contained: every run is its own process tree in
//! new user, PID, network, mount and IPC namespaces, as an unprivileged uid, under
//! rlimits, with writes confined to a fresh folder (Landlock, and a read-only view of
//! every other mount), stdin closed and output capped.
//!
//! The invariant: when [`Sandbox::run`] returns, nothing the program started is still
//! running (with the PID namespace; without it, a process that left the program's
//! session can survive).
//! The tree is three processes deep (`fork` three times, no helper binary):
//!
//! ```text
//! kiln thread ─ A (namespaces made here; waits) ─ B (PID 1 of the new PID namespace)
//!                                                   └ C (exec of the program)
//! ```
//!
//! B only waits for C and exits with its status. When PID 1 of a PID namespace exits
//! the kernel kills every process in it, so grandchildren that called `setsid` or
//! double-forked die too, and B's exit completes only once they are reaped. A waits
//! for B or for a stop byte from kiln (time or output limit), then kills B; so A's exit
//! means the run is over. A dies with kiln's thread and B with A (`PR_SET_PDEATHSIG`),
//! so a kiln killed by SIGKILL takes its sandboxes with it.
//!
//! Containment is for accidents and careless code (a fork bomb, an endless loop, a
//! runaway allocation, a stray `rm`); it is not a boundary against a kernel exploit.

mod child;
mod landlock;

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use child::Step;

/// How strictly the mechanisms are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Every mechanism, or the stage fails saying which one is missing.
    #[default]
    Strict,
    /// Whatever this kernel and user allow; the run records what was used.
    Available,
}

/// One containment mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// A new user namespace: no capability outside it.
    UserNamespace,
    /// A new PID namespace: the program can signal only its own processes, and all of
    /// them end when its PID 1 does (the host's /proc stays mounted, so it can list others).
    PidNamespace,
    /// A new network namespace: no interface but a loopback that is down.
    NetNamespace,
    /// A new mount namespace in which every mount but the work folder is read-only.
    MountNamespace,
    /// A new IPC namespace: no shared memory or semaphores of the host.
    IpcNamespace,
    /// Running as a uid of its own (only when kiln runs as root), so RLIMIT_NPROC
    /// applies and the program can read only what any user can.
    UnprivilegedUid,
    /// Landlock: writes only inside the work folder, no TCP, no signals out.
    Landlock,
}

impl Mechanism {
    pub const ALL: [Mechanism; 7] = [
        Mechanism::UserNamespace,
        Mechanism::PidNamespace,
        Mechanism::NetNamespace,
        Mechanism::MountNamespace,
        Mechanism::IpcNamespace,
        Mechanism::UnprivilegedUid,
        Mechanism::Landlock,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::UserNamespace => "user namespace",
            Mechanism::PidNamespace => "PID namespace",
            Mechanism::NetNamespace => "network namespace",
            Mechanism::MountNamespace => "mount namespace",
            Mechanism::IpcNamespace => "IPC namespace",
            Mechanism::UnprivilegedUid => "unprivileged uid",
            Mechanism::Landlock => "Landlock",
        }
    }
}

/// A set of mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mechanisms(u32);

impl Mechanisms {
    pub fn all() -> Self {
        Mechanism::ALL.iter().fold(Mechanisms(0), |set, &m| set.with(m))
    }
    pub fn none() -> Self {
        Mechanisms(0)
    }
    pub fn with(self, m: Mechanism) -> Self {
        Mechanisms(self.0 | 1 << m as u32)
    }
    pub fn without(self, m: Mechanism) -> Self {
        Mechanisms(self.0 & !(1 << m as u32))
    }
    pub fn has(self, m: Mechanism) -> bool {
        self.0 & 1 << m as u32 != 0
    }
    pub fn list(self) -> Vec<Mechanism> {
        Mechanism::ALL.into_iter().filter(|&m| self.has(m)).collect()
    }
}

/// Resource limits of one run. Time is wall-clock; CPU time is capped a second above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub time: Duration,
    /// Address space (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Processes and threads of the run's uid (RLIMIT_NPROC), beyond kiln's own two.
    pub processes: u64,
    /// The largest file it may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    pub open_files: u64,
    /// The tail of stdout and of stderr that is kept.
    pub kept_output: usize,
    /// Output (stdout and stderr together) beyond which the run is stopped.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_secs(10),
            memory_bytes: 2 << 30,
            processes: 32,
            file_bytes: 16 << 20,
            open_files: 256,
            kept_output: 4096,
            max_output: 8 << 20,
        }
    }
}

/// A program to run: an executable (an absolute path), its arguments and environment,
/// in a work folder that exists and holds its files.
#[derive(Debug, Clone)]
pub struct Command {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Stopped at the time limit.
    Timeout,
    /// Stopped for writing more than `max_output`.
    OutputLimit,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes written to stdout and stderr, kept or not.
    pub output_bytes: usize,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a program could not be started in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxError {
    /// A mechanism failed to set up (a kernel without it, a policy forbidding it).
    Setup { step: Step, errno: i32 },
    /// The program could not be executed (`execve` failed).
    Exec { program: PathBuf, errno: i32 },
    /// The host refused what kiln itself needs (a pipe, a fork, a folder).
    Host(String),
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::Setup { step, errno } => {
                write!(f, "{} failed: {}", step.describe(), std::io::Error::from_raw_os_error(*errno))?;
                if let Some(m) = step.mechanism() {
                    write!(f, " (the sandbox's {}", m.name())?;
                    write!(f, "; `isolation: available` runs without what this machine lacks)")?;
                }
                Ok(())
            }
            SandboxError::Exec { program, errno } => write!(
                f,
                "cannot execute {} in the sandbox: {}",
                program.display(),
                std::io::Error::from_raw_os_error(*errno)
            ),
            SandboxError::Host(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SandboxError {}

/// A sandbox: the mechanisms it uses and the limits of each run.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub mechanisms: Mechanisms,
    pub limits: Limits,
}

impl Sandbox {
    /// The sandbox this machine allows at `isolation`: with `Strict`, every mechanism or
    /// the error of the first that fails; with `Available`, every mechanism that works
    /// here (found by starting `/bin/true`, dropping what fails, in a few tries).
    pub fn probe(isolation: Isolation, limits: Limits) -> Result<Sandbox, SandboxError> {
        let scratch = tempdir_in(&std::env::temp_dir(), "probe")?;
        let probe = Command {
            program: PathBuf::from("/bin/true"),
            args: Vec::new(),
            env: Vec::new(),
            dir: scratch.path().to_path_buf(),
        };
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mechanisms = if root { Mechanisms::all() } else { Mechanisms::all().without(Mechanism::UnprivilegedUid) };
        let mut sandbox = Sandbox { mechanisms, limits };
        loop {
            match sandbox.run(&probe) {
                Ok(outcome) if outcome.success() => return Ok(sandbox),
                Ok(outcome) => {
                    return Err(SandboxError::Host(format!(
                        "/bin/true failed in the sandbox ({:?}): {}",
                        outcome.exit,
                        outcome.stderr_text()
                    )));
                }
                Err(SandboxError::Setup { step, errno }) if isolation == Isolation::Available => {
                    match step.mechanism().filter(|&m| sandbox.mechanisms.has(m)) {
                        Some(m) => sandbox.mechanisms = sandbox.mechanisms.without(m),
                        None => return Err(SandboxError::Setup { step, errno }),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `command` to its end, its time limit or its output limit. Returns only when
    /// every process it started has ended.
    pub fn run(&self, command: &Command) -> Result<Outcome, SandboxError> {
        let started = Instant::now();
        let prepared = child::Prepared::new(command, self)?;
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let (report_read, report_write) = pipe()?;
        let (stop_read, stop_write) = pipe()?;
        let ruleset = if self.mechanisms.has(Mechanism::Landlock) {
            Some(
                landlock::Ruleset::confining_writes_to(&command.dir)
                    .map_err(|errno| SandboxError::Setup { step: Step::Landlock, errno })?,
            )
        } else {
            None
        };
        let fds = child::Fds {
            stdout: out_write.as_raw_fd(),
            stderr: err_write.as_raw_fd(),
            report: report_write.as_raw_fd(),
            stop: stop_read.as_raw_fd(),
            ruleset: ruleset.as_ref().map_or(-1, |r| r.fd()),
        };
        // SAFETY: the child runs only async-signal-safe system calls on memory prepared
        // above (no allocation, no locks) and ends in `execve` or `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SandboxError::Host(format!("fork: {}", std::io::Error::last_os_error())));
        }
        if pid == 0 {
            child::run_a(&prepared, &fds);
        }
        drop((out_write, err_write, report_write, stop_read, ruleset));
        let capture = capture(self, pid, &stop_write, out_read, err_read, started);
        let a_status = wait(pid)?;
        let report = read_all(report_read);
        if let Some(error) = child::decode_report(&report, &command.program) {
            return Err(error);
        }
        let (stdout, stderr, output_bytes, stopped) = capture;
        // C's own status when B reported it; else A's (A exits with C's code, or 128 + its
        // signal).
        let status = child::decode_status(&report);
        let exit = match (stopped, status) {
            (Some(exit), _) => exit,
            (None, Some(status)) if libc::WIFEXITED(status) => Exit::Code(libc::WEXITSTATUS(status)),
            (None, Some(status)) => Exit::Signal(libc::WTERMSIG(status)),
            (None, None) if libc::WIFEXITED(a_status) => match libc::WEXITSTATUS(a_status) {
                code @ 129..=192 => Exit::Signal(code - 128),
                code => Exit::Code(code),
            },
            (None, None) => Exit::Signal(libc::WTERMSIG(a_status)),
        };
        Ok(Outcome { exit, stdout, stderr, output_bytes, elapsed: started.elapsed() })
    }
}

type Captured = (Vec<u8>, Vec<u8>, usize, Option<Exit>);

/// Reads stdout and stderr, keeping each one's tail, until A has exited and both pipes
/// are drained; at the time or output limit, sends A the stop byte. A exits only after
/// every process of the run has ended, so the pipes then hold only what was written.
/// A program that closes its output early is still waited for (A's pidfd).
fn capture(
    sandbox: &Sandbox,
    a: libc::pid_t,
    stop: &OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    started: Instant,
) -> Captured {
    let limits = &sandbox.limits;
    let deadline = started + limits.time;
    let mut tails = [Tail::new(limits.kept_output), Tail::new(limits.kept_output)];
    let fds = [out.as_raw_fd(), err.as_raw_fd()];
    let mut open = [true, true];
    // SAFETY: `a` is our unreaped child, so the pid cannot name another process.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, a, 0) } as libc::c_int;
    let mut a_running = pidfd >= 0;
    let mut total = 0usize;
    let mut stopped = None;
    let mut a_ended: Option<Instant> = None;
    let mut buffer = vec![0u8; 64 << 10];
    let stop_now = |why: Exit, stopped: &mut Option<Exit>| {
        if stopped.is_none() {
            *stopped = Some(why);
            send_stop(stop);
        }
    };
    while a_running || open.iter().any(|&o| o) {
        // A is gone, so every process of a PID namespace is too; a pipe still open a
        // second later is held by a process outside one (`isolation: available`).
        if a_ended.is_some_and(|t| t.elapsed() > std::time::Duration::from_secs(1)) {
            break;
        }
        let wait_ms = match stopped {
            Some(_) => 1000,
            None => deadline.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32,
        };
        let mut polled: Vec<libc::pollfd> = (0..2)
            .filter(|&i| open[i])
            .map(|i| libc::pollfd { fd: fds[i], events: libc::POLLIN, revents: 0 })
            .collect();
        if a_running {
            polled.push(libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: `polled` is a live array of `polled.len()` pollfd structs.
        let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, wait_ms) };
        if ready < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if ready <= 0 {
            if a_running {
                stop_now(Exit::Timeout, &mut stopped);
            }
            continue;
        }
        for p in &polled {
            if p.revents == 0 {
                continue;
            }
            if p.fd == pidfd {
                a_running = false;
                a_ended = Some(Instant::now());
                continue;
            }
            let i = if p.fd == fds[0] { 0 } else { 1 };
            // SAFETY: reads into `buffer`, which is `buffer.len()` bytes long.
            let n = unsafe { libc::read(p.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    open[i] = false;
                }
                continue;
            }
            let n = n as usize;
            total += n;
            tails[i].push(&buffer[..n]);
            if total > limits.max_output {
                stop_now(Exit::OutputLimit, &mut stopped);
            }
        }
        if a_running && Instant::now() >= deadline {
            stop_now(Exit::Timeout, &mut stopped);
        }
    }
    if pidfd >= 0 {
        // SAFETY: closes the pidfd opened above.
        unsafe { libc::close(pidfd) };
    }
    let [stdout, stderr] = tails.map(Tail::into_bytes);
    (stdout, stderr, total, stopped)
}

fn send_stop(stop: &OwnedFd) {
    // SAFETY: writes one byte from a live buffer.
    unsafe { libc::write(stop.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
}

fn wait(pid: libc::pid_t) -> Result<libc::c_int, SandboxError> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing its status into `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINTR) {
            return Err(SandboxError::Host(format!("waiting for the sandbox's process {pid}: {error}")));
        }
    }
}

fn read_all(fd: OwnedFd) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let _ = std::fs::File::from(fd).read_to_end(&mut bytes);
    bytes
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::Host(format!("pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The last `capacity` bytes of a stream.
struct Tail {
    bytes: std::collections::VecDeque<u8>,
    capacity: usize,
}

impl Tail {
    fn new(capacity: usize) -> Self {
        Tail { bytes: std::collections::VecDeque::new(), capacity }
    }
    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(chunk);
    }
    fn into_bytes(self) -> Vec<u8> {
        self.bytes.into()
    }
}

/// A fresh folder for one run, removed (with whatever the run left in it) on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700));
        let _ = make_removable(&self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A run may leave folders without write permission; give it back before removing.
fn make_removable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
            make_removable(&entry.path())?;
        }
    }
    Ok(())
}

/// A new folder `kiln-<what>-<unique>` under `parent`, readable by the sandbox's uid.
pub fn tempdir_in(parent: &Path, what: &str) -> Result<WorkDir, SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = parent.join(format!("kiln-{what}-{}-{unique}", std::process::id()));
    std::fs::create_dir_all(&path)
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| SandboxError::Host(format!("cannot create {}: {e}", path.display())))?;
    Ok(WorkDir { path })
}

fn cstring(bytes: &[u8], what: &str) -> Result<CString, SandboxError> {
    CString::new(bytes).map_err(|_| SandboxError::Host(format!("{what} contains a NUL byte")))
}

fn path_cstring(path: &Path) -> Result<CString, SandboxError> {
    cstring(path.as_os_str().as_bytes(), &path.display().to_string())
}

#[cfg(test)]
mod tests;
