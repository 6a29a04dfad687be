//! The forked side of the sandbox: processes A, B and C of the module's picture. Every
//! function here runs between `fork` and `execve` of a multi-threaded program, so it
//! calls only async-signal-safe system calls on memory prepared before the fork: no
//! allocation, no locks, no panics.
//!
//! A takes the namespaces and the uid, forks B (PID 1 inside), then waits for B or for
//! the parent's stop byte, whichever comes first; on a stop it kills B and reaps it. B's
//! exit returns only once the kernel has reaped every process of the namespace, so A's
//! exit means the run is over.

use std::ffi::CString;
use std::path::Path;

use super::{Mechanism, Sandbox, SandboxError, cstring, path_cstring};

/// A setup step of the child, reported to the parent when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Fds = 1,
    Setsid,
    Chown,
    DropUid,
    UserNamespace,
    UidMap,
    NetNamespace,
    MountNamespace,
    MountReadOnly,
    IpcNamespace,
    PidNamespace,
    ParentDeath,
    Fork,
    Chdir,
    Rlimit,
    NoNewPrivs,
    Landlock,
    Exec,
}

impl Step {
    const ALL: [Step; 18] = [
        Step::Fds,
        Step::Setsid,
        Step::Chown,
        Step::DropUid,
        Step::UserNamespace,
        Step::UidMap,
        Step::NetNamespace,
        Step::MountNamespace,
        Step::MountReadOnly,
        Step::IpcNamespace,
        Step::PidNamespace,
        Step::ParentDeath,
        Step::Fork,
        Step::Chdir,
        Step::Rlimit,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Exec,
    ];

    /// The mechanism this step sets up, if dropping one would avoid it.
    pub fn mechanism(self) -> Option<Mechanism> {
        match self {
            Step::Chown | Step::DropUid => Some(Mechanism::UnprivilegedUid),
            Step::UserNamespace | Step::UidMap => Some(Mechanism::UserNamespace),
            Step::NetNamespace => Some(Mechanism::NetNamespace),
            Step::MountNamespace | Step::MountReadOnly => Some(Mechanism::MountNamespace),
            Step::IpcNamespace => Some(Mechanism::IpcNamespace),
            Step::PidNamespace => Some(Mechanism::PidNamespace),
            Step::NoNewPrivs | Step::Landlock => Some(Mechanism::Landlock),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::Fds => "setting up the program's file descriptors",
            Step::Setsid => "starting a new session (setsid)",
            Step::Chown => "giving the work folder to the sandbox's uid (chown)",
            Step::DropUid => "switching to an unprivileged uid (setresuid)",
            Step::UserNamespace => "creating a user namespace (unshare CLONE_NEWUSER)",
            Step::UidMap => "writing the user namespace's uid_map",
            Step::NetNamespace => "creating a network namespace (unshare CLONE_NEWNET)",
            Step::MountNamespace => "creating a mount namespace (unshare CLONE_NEWNS)",
            Step::MountReadOnly => "making every mount but the work folder read-only (mount_setattr)",
            Step::IpcNamespace => "creating an IPC namespace (unshare CLONE_NEWIPC)",
            Step::PidNamespace => "creating a PID namespace (unshare CLONE_NEWPID)",
            Step::ParentDeath => "tying the sandbox's life to kiln's (PR_SET_PDEATHSIG)",
            Step::Fork => "forking the sandbox's processes",
            Step::Chdir => "entering the work folder",
            Step::Rlimit => "setting resource limits (setrlimit)",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Landlock => "confining writes with Landlock (landlock_restrict_self)",
            Step::Exec => "executing the program",
        }
    }
}

/// The tag of B's message carrying C's wait status (steps start at 1).
const STATUS_TAG: u8 = 0;

/// C's wait status, as B reported it (none when C never ran to an end B saw).
pub fn decode_status(report: &[u8]) -> Option<libc::c_int> {
    match *report {
        [STATUS_TAG, s0, s1, s2, s3, ..] => Some(libc::c_int::from_le_bytes([s0, s1, s2, s3])),
        _ => None,
    }
}

/// Reads what the children reported: nothing when the program started.
pub fn decode_report(report: &[u8], program: &Path) -> Option<SandboxError> {
    let [step, e0, e1, e2, e3, ..] = *report else { return None };
    if step == STATUS_TAG {
        return None;
    }
    let errno = i32::from_le_bytes([e0, e1, e2, e3]);
    let step = Step::ALL.into_iter().find(|s| *s as u8 == step)?;
    Some(match step {
        Step::Exec => SandboxError::Exec { program: program.to_path_buf(), errno },
        step => SandboxError::Setup { step, errno },
    })
}

/// Everything the children need, made before the fork.
pub struct Prepared {
    program: CString,
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    dir: CString,
    parent: libc::pid_t,
    use_user_ns: bool,
    namespaces: libc::c_int,
    read_only: bool,
    drop_uid: bool,
    use_landlock: bool,
    rlimits: [(libc::__rlimit_resource_t, libc::rlim_t); 6],
}

// The raw pointers point into the CStrings owned beside them.
unsafe impl Send for Prepared {}

/// The parent's descriptors the children use.
pub struct Fds {
    pub stdout: libc::c_int,
    pub stderr: libc::c_int,
    pub report: libc::c_int,
    pub stop: libc::c_int,
    /// The Landlock ruleset, or -1.
    pub ruleset: libc::c_int,
}

/// Where A puts the descriptors it keeps (after 0, 1, 2); everything above is closed.
const REPORT: libc::c_int = 3;
const STOP: libc::c_int = 4;
const RULESET: libc::c_int = 5;

impl Prepared {
    pub fn new(command: &super::Command, sandbox: &Sandbox) -> Result<Prepared, SandboxError> {
        use std::os::unix::ffi::OsStrExt;
        let program = path_cstring(&command.program)?;
        let mut args = vec![program.clone()];
        for a in &command.args {
            args.push(cstring(a.as_bytes(), "an argument")?);
        }
        let env = command
            .env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes(), "an environment variable"))
            .collect::<Result<Vec<_>, _>>()?;
        let argv = args.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        let envp = env.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
        let m = sandbox.mechanisms;
        let mut namespaces = 0;
        for (mechanism, flag) in [
            (Mechanism::NetNamespace, libc::CLONE_NEWNET),
            (Mechanism::MountNamespace, libc::CLONE_NEWNS),
            (Mechanism::IpcNamespace, libc::CLONE_NEWIPC),
            (Mechanism::PidNamespace, libc::CLONE_NEWPID),
        ] {
            if m.has(mechanism) {
                namespaces |= flag;
            }
        }
        let l = &sandbox.limits;
        let cpu = l.time.as_secs() + 1;
        // A, B and C count against RLIMIT_NPROC, besides what the program starts.
        let rlimits = [
            (libc::RLIMIT_AS, l.memory_bytes),
            (libc::RLIMIT_CPU, cpu),
            (libc::RLIMIT_NPROC, l.processes + 3),
            (libc::RLIMIT_FSIZE, l.file_bytes),
            (libc::RLIMIT_NOFILE, l.open_files),
            (libc::RLIMIT_CORE, 0),
        ];
        Ok(Prepared {
            program,
            _args: args,
            argv,
            _env: env,
            envp,
            dir: cstring(command.dir.as_os_str().as_bytes(), "the work folder")?,
            // SAFETY: getpid and geteuid cannot fail.
            parent: unsafe { libc::getpid() },
            use_user_ns: m.has(Mechanism::UserNamespace),
            namespaces,
            read_only: m.has(Mechanism::MountNamespace),
            drop_uid: m.has(Mechanism::UnprivilegedUid) && unsafe { libc::geteuid() } == 0,
            use_landlock: m.has(Mechanism::Landlock),
            rlimits,
        })
    }
}

/// Reports a failed step (errno from the last call) and exits.
fn fail(step: Step) -> ! {
    // SAFETY: errno location and write/_exit are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let e = errno.to_le_bytes();
        let message = [step as u8, e[0], e[1], e[2], e[3]];
        libc::write(REPORT, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

fn check(result: libc::c_long, step: Step) {
    if result < 0 {
        fail(step);
    }
}

/// Process A. Never returns.
pub fn run_a(p: &Prepared, fds: &Fds) -> ! {
    // SAFETY: raw system calls on prepared memory; see the module comment.
    unsafe {
        // Our descriptors to fixed numbers, everything else closed: a concurrent run's
        // pipe inherited through this fork would otherwise keep that run's output open.
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let moved = [fds.stdout, fds.stderr, fds.report, fds.stop, fds.ruleset, devnull]
            .map(|fd| if fd < 0 { -1 } else { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) });
        let [out, err, report, stop, ruleset, null] = moved;
        if libc::dup2(report, REPORT) < 0 {
            libc::_exit(127);
        }
        if null < 0
            || libc::dup2(null, 0) < 0
            || libc::dup2(out, 1) < 0
            || libc::dup2(err, 2) < 0
            || libc::dup2(stop, STOP) < 0
            || (ruleset >= 0 && libc::dup2(ruleset, RULESET) < 0)
        {
            fail(Step::Fds);
        }
        for fd in [REPORT, STOP, RULESET] {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // Without a ruleset, slot 5 holds whatever kiln had there: close it too.
        let first_closed = if ruleset >= 0 { RULESET + 1 } else { RULESET };
        check(libc::syscall(libc::SYS_close_range, first_closed, libc::c_uint::MAX, 0), Step::Fds);
        // kiln's signal handlers and mask are not the program's (Rust ignores SIGPIPE),
        // and B, a copy of kiln, must not run kiln's handlers either.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..libc::SIGRTMIN() {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Files the compile step writes must be readable by the run step.
        libc::umask(0o022);

        check(libc::setsid() as libc::c_long, Step::Setsid);
        let (mut uid, mut gid) = (libc::geteuid(), libc::getegid());
        if p.drop_uid {
            // A uid of its own per run (1,000,000 + A's pid, unique among live
            // processes), so one run's processes never count against another's limit.
            uid = 1_000_000 + libc::getpid() as libc::uid_t;
            gid = uid;
            check(libc::chown(p.dir.as_ptr(), uid, gid) as libc::c_long, Step::Chown);
        }
        if p.use_user_ns {
            drop_uid(p, uid, gid);
            check(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long, Step::UserNamespace);
            write_id_map(c"/proc/self/setgroups", b"deny", 0);
            write_id_map(c"/proc/self/uid_map", b"1000 ", uid);
            write_id_map(c"/proc/self/gid_map", b"1000 ", gid);
            // Undumpable again: A and B hold a copy of kiln's memory.
            libc::prctl(libc::PR_SET_DUMPABLE, 0);
        }
        for (flag, step) in [
            (libc::CLONE_NEWNET, Step::NetNamespace),
            (libc::CLONE_NEWNS, Step::MountNamespace),
            (libc::CLONE_NEWIPC, Step::IpcNamespace),
            (libc::CLONE_NEWPID, Step::PidNamespace),
        ] {
            if p.namespaces & flag != 0 {
                check(libc::unshare(flag) as libc::c_long, step);
            }
        }
        if p.read_only {
            read_only_but(p.dir.as_ptr());
        }
        if !p.use_user_ns {
            drop_uid(p, uid, gid);
        }
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as libc::c_long, Step::ParentDeath);
        if libc::getppid() != p.parent {
            libc::_exit(127); // kiln died before the line above
        }
        check(libc::chdir(p.dir.as_ptr()) as libc::c_long, Step::Chdir);

        let mut lifeline = [0; 2];
        check(libc::pipe2(lifeline.as_mut_ptr(), libc::O_CLOEXEC) as libc::c_long, Step::Fork);
        let b = libc::fork();
        check(b as libc::c_long, Step::Fork);
        if b == 0 {
            libc::close(lifeline[1]);
            run_b(p, lifeline[0]);
        }
        libc::close(lifeline[0]);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, b, 0) as libc::c_int;
        if pidfd < 0 {
            libc::kill(b, libc::SIGKILL);
            fail(Step::Fork); // a kernel before 5.3: A could not see B end
        }
        let mut polled = [
            libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: STOP, events: libc::POLLIN, revents: 0 },
        ];
        loop {
            if libc::poll(polled.as_mut_ptr(), 2, -1) <= 0 {
                continue; // EINTR, ENOMEM: wait again, never stop watching
            }
            if polled[1].revents != 0 {
                // Stopped by the parent (time or output limit): end B, and with it the
                // namespace; without a PID namespace, B's process group.
                libc::kill(-b, libc::SIGKILL);
                libc::kill(b, libc::SIGKILL);
            }
            break;
        }
        let mut status = 0;
        while libc::waitpid(b, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
        if p.namespaces & libc::CLONE_NEWPID == 0 {
            libc::kill(-b, libc::SIGKILL);
        }
        libc::_exit(exit_code(status))
    }
}

/// Process B: PID 1 of the namespace. Forks C and waits for it, reaping orphans.
unsafe fn run_b(p: &Prepared, lifeline: libc::c_int) -> ! {
    // SAFETY: as run_a.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
            fail(Step::ParentDeath);
        }
        let mut alive = libc::pollfd { fd: lifeline, events: libc::POLLIN, revents: 0 };
        if libc::poll(&mut alive, 1, 0) != 0 {
            libc::_exit(127); // A died before the line above
        }
        libc::setsid();
        let c = libc::fork();
        check(c as libc::c_long, Step::Fork);
        if c == 0 {
            run_c(p);
        }
        let mut status = 0;
        loop {
            let reaped = libc::waitpid(-1, &mut status, 0);
            if reaped == c {
                break;
            }
            if reaped < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        // C's exact wait status, so that an exit code of 137 is not read as a signal.
        let s = status.to_le_bytes();
        let message = [STATUS_TAG, s[0], s[1], s[2], s[3]];
        libc::write(REPORT, message.as_ptr().cast(), message.len());
        libc::_exit(exit_code(status))
    }
}

/// Process C: limits, Landlock, then the program.
unsafe fn run_c(p: &Prepared) -> ! {
    // SAFETY: as run_a.
    unsafe {
        for (resource, value) in p.rlimits {
            let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
            check(libc::setrlimit(resource, &limit) as libc::c_long, Step::Rlimit);
        }
        if p.use_landlock {
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long, Step::NoNewPrivs);
            check(libc::syscall(libc::SYS_landlock_restrict_self, RULESET, 0), Step::Landlock);
        }
        libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        fail(Step::Exec)
    }
}

/// C's status as an exit code: its code, or 128 + the signal that ended it.
fn exit_code(status: libc::c_int) -> libc::c_int {
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) }
}

unsafe fn drop_uid(p: &Prepared, uid: libc::uid_t, gid: libc::gid_t) {
    if !p.drop_uid {
        return;
    }
    // SAFETY: plain system calls.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) < 0
            || libc::setresgid(gid, gid, gid) < 0
            || libc::setresuid(uid, uid, uid) < 0
        {
            fail(Step::DropUid);
        }
        // A uid change makes the process undumpable, which gives /proc/self to root and
        // would refuse the uid_map write that follows (reset once it is written).
        if p.use_user_ns {
            libc::prctl(libc::PR_SET_DUMPABLE, 1);
        }
    }
}

/// Writes `prefix` followed by "<id> 1" (or `prefix` alone when id is 0 and the prefix
/// is the setgroups word) into a /proc file, formatting the number on the stack.
unsafe fn write_id_map(path: &std::ffi::CStr, prefix: &[u8], id: u32) {
    let mut line = [0u8; 64];
    line[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    if prefix != b"deny" {
        let mut digits = [0u8; 10];
        let (mut n, mut count) = (id, 0);
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in (0..count).rev() {
            line[len] = digits[i];
            len += 1;
        }
        line[len..len + 3].copy_from_slice(b" 1\n");
        len += 3;
    }
    // SAFETY: `line` holds `len` bytes.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, line.as_ptr().cast(), len) != len as isize {
            fail(Step::UidMap);
        }
        libc::close(fd);
    }
}

/// Every mount read-only (and nosuid) except a bind mount of the work folder.
unsafe fn read_only_but(dir: *const libc::c_char) {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    let size = std::mem::size_of::<MountAttr>();
    // SAFETY: the attribute structs live across the calls that read them.
    unsafe {
        let none = std::ptr::null();
        check(
            libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) as libc::c_long,
            Step::MountReadOnly,
        );
        check(
            libc::mount(dir, dir, none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) as libc::c_long,
            Step::MountReadOnly,
        );
        let set =
            MountAttr { attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, attr_clr: 0, propagation: 0, userns_fd: 0 };
        check(
            libc::syscall(libc::SYS_mount_setattr, libc::AT_FDCWD, c"/".as_ptr(), libc::AT_RECURSIVE, &set, size),
            Step::MountReadOnly,
        );
        let clear = MountAttr { attr_set: 0, attr_clr: MOUNT_ATTR_RDONLY, propagation: 0, userns_fd: 0 };
        check(libc::syscall(libc::SYS_mount_setattr, libc::AT_FDCWD, dir, 0, &clear, size), Step::MountReadOnly);
    }
}
