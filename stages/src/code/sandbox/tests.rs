//! Hostile programs, each contained with the right ending and nothing left running
//! afterwards (checked in the process table by a marker in each program's arguments).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::code::language::{Language, Toolchain, environment};

fn sandbox(time_ms: u64) -> Sandbox {
    let limits = Limits { time: Duration::from_millis(time_ms), memory_bytes: 1 << 30, ..Limits::default() };
    Sandbox::probe(Isolation::Strict, limits).unwrap_or_else(|e| panic!("the sandbox cannot start here: {e}"))
}

fn python(sandbox: &Sandbox) -> PathBuf {
    let toolchain = Toolchain::find(Language::Python, sandbox).unwrap_or_else(|e| panic!("{e}"));
    toolchain.tools[0].clone()
}

/// Processes whose command line holds `marker`.
fn running(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let mut cmdline = Vec::new();
        if std::fs::File::open(entry.path().join("cmdline")).and_then(|mut f| f.read_to_end(&mut cmdline)).is_ok() {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Runs a Python program with a marker argument; asserts nothing of it survives.
fn run_python(sandbox: &Sandbox, name: &str, source: &str) -> Outcome {
    let python = python(sandbox);
    let dir = tempdir_in(&std::env::temp_dir(), "test").unwrap();
    std::fs::write(dir.path().join("main.py"), source).unwrap();
    let marker = format!("kiln-hostile-{name}-{}", std::process::id());
    let command = Command {
        program: python.clone(),
        args: vec!["main.py".into(), marker.clone()],
        env: environment(&[python], dir.path()),
        dir: dir.path().to_path_buf(),
    };
    let outcome = sandbox.run(&command).unwrap_or_else(|e| panic!("{name}: {e}"));
    let left = running(&marker);
    assert!(left.is_empty(), "{name}: processes left running after the run: {left:?}");
    outcome
}

#[test]
fn a_correct_program_exits_zero_with_its_output() {
    let o = run_python(&sandbox(5000), "ok", "import sys\nprint('hello', sys.argv[1][:5])\n");
    assert_eq!(o.exit, Exit::Code(0), "{}", o.stderr_text());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello kiln-\n");
}

#[test]
fn a_failing_assertion_and_a_syntax_error_exit_nonzero_with_their_stderr() {
    let s = sandbox(5000);
    let o = run_python(&s, "assert", "assert 1 + 1 == 3, 'wrong sum'\n");
    assert_eq!(o.exit, Exit::Code(1));
    assert!(o.stderr_text().contains("AssertionError: wrong sum"), "{}", o.stderr_text());
    let o = run_python(&s, "syntax", "def f(:\n    pass\n");
    assert_eq!(o.exit, Exit::Code(1));
    assert!(o.stderr_text().contains("SyntaxError"), "{}", o.stderr_text());
}

#[test]
fn an_infinite_loop_is_stopped_at_the_time_limit() {
    let o = run_python(&sandbox(1000), "loop", "while True:\n    pass\n");
    assert_eq!(o.exit, Exit::Timeout);
    assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
}

#[test]
fn a_fork_bomb_is_contained_and_leaves_nothing() {
    let source =
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n";
    let o = run_python(&sandbox(1500), "forkbomb", source);
    assert_eq!(o.exit, Exit::Timeout);
}

#[test]
fn a_setsid_grandchild_sleeping_forever_ends_with_the_program() {
    let source = "import os, sys, time\n\
        if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\n\
        print('parent done')\n";
    let o = run_python(&sandbox(5000), "setsid", source);
    assert_eq!(o.exit, Exit::Code(0), "{}", o.stderr_text());
    assert!(o.elapsed < Duration::from_secs(4), "waited for the orphan: {:?}", o.elapsed);
}

#[test]
fn unbounded_output_is_stopped_and_only_its_tail_kept() {
    let s = sandbox(10_000);
    let o = run_python(&s, "output", "while True:\n    print('x' * 1000)\n");
    assert_eq!(o.exit, Exit::OutputLimit);
    assert!(o.output_bytes > s.limits.max_output);
    assert!(o.stdout.len() <= s.limits.kept_output);
}

#[test]
fn a_memory_hog_fails_with_memory_error() {
    let o = run_python(&sandbox(5000), "memory", "x = bytearray(8 << 30)\n");
    assert_eq!(o.exit, Exit::Code(1));
    assert!(o.stderr_text().contains("MemoryError"), "{}", o.stderr_text());
}

#[test]
fn a_file_size_bomb_stops_at_the_file_limit() {
    let s = sandbox(10_000);
    let source = "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n";
    let o = run_python(&s, "fsize", source);
    // Python ignores SIGXFSZ, so the write fails with EFBIG.
    assert_eq!(o.exit, Exit::Code(1), "{}", o.stderr_text());
    assert!(o.stderr_text().contains("File too large"), "{}", o.stderr_text());
}

#[test]
fn writes_outside_the_work_folder_are_refused() {
    let outside = std::env::temp_dir().join(format!("kiln-escape-{}", std::process::id()));
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let targets = [outside.display().to_string(), "/tmp/kiln-escape-2".into(), format!("{home}/kiln-escape")];
    let mut source = String::from("import os\nok = 0\n");
    for target in &targets {
        source += &format!(
            "try:\n    open({target:?}, 'w').write('x')\n    print('wrote', {target:?})\nexcept OSError as e:\n    ok += 1\n"
        );
    }
    source += "open('inside', 'w').write('fine')\nprint('refused', ok)\n";
    let o = run_python(&sandbox(5000), "escape", &source);
    assert_eq!(o.exit, Exit::Code(0), "{}", o.stderr_text());
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("refused {}\n", targets.len()));
    for target in targets {
        assert!(!std::path::Path::new(&target).exists(), "{target} was written");
    }
}

#[test]
fn a_loopback_connection_to_the_host_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let source = format!(
        "import socket\ns = socket.socket()\ns.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port}))\n    \
         s.sendall(b'escaped')\n    print('connected')\nexcept OSError as e:\n    print('refused')\n"
    );
    let o = run_python(&sandbox(5000), "network", &source);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "refused\n", "{}", o.stderr_text());
    assert!(listener.accept().is_err(), "the host's listener got a connection");
}

#[test]
fn killing_the_parent_or_kiln_does_not_reach_them() {
    let kiln = std::process::id();
    let source = format!(
        "import os, signal\nfor pid in (os.getppid(), {kiln}, -1, 0):\n    try:\n        os.kill(pid, signal.SIGKILL) if pid > 0 \
         else None\n    except OSError as e:\n        print(pid, e.errno)\nprint('alive')\n"
    );
    let o = run_python(&sandbox(5000), "killparent", &source);
    // getppid() is 0 outside view or the namespace's PID 1, which ignores signals from
    // inside; kiln's pid does not exist in the namespace.
    assert_eq!(o.exit, Exit::Code(0), "{}", o.stderr_text());
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("alive\n"));
}

#[test]
fn a_program_closing_its_output_and_blocking_is_still_timed_out() {
    let source = "import os, sys, time\nsys.stdin.read()\nos.close(1)\nos.close(2)\ntime.sleep(1000)\n";
    let o = run_python(&sandbox(1000), "closed", source);
    assert_eq!(o.exit, Exit::Timeout);
    assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
}

#[test]
fn a_missing_program_is_an_exec_error_naming_it() {
    let s = sandbox(1000);
    let dir = tempdir_in(&std::env::temp_dir(), "test").unwrap();
    let command = Command {
        program: PathBuf::from("/nonexistent/python9"),
        args: vec![],
        env: vec![],
        dir: dir.path().to_path_buf(),
    };
    let error = s.run(&command).unwrap_err();
    assert!(matches!(error, SandboxError::Exec { errno: libc::ENOENT, .. }), "{error:?}");
    assert!(error.to_string().contains("/nonexistent/python9"));
}

#[test]
fn the_work_folder_is_removed_with_what_the_run_left() {
    let s = sandbox(5000);
    let python = python(&s);
    let dir = tempdir_in(&std::env::temp_dir(), "test").unwrap();
    let path = dir.path().to_path_buf();
    let source = "import os\nos.makedirs('a/b')\nopen('a/b/c', 'w').write('x')\nos.chmod('a', 0o500)\n";
    std::fs::File::create(path.join("main.py")).unwrap().write_all(source.as_bytes()).unwrap();
    let command = Command {
        program: python.clone(),
        args: vec!["main.py".into()],
        env: environment(&[python], &path),
        dir: path.clone(),
    };
    assert_eq!(s.run(&command).unwrap().exit, Exit::Code(0));
    assert!(path.join("a/b/c").exists());
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn without_the_mechanisms_the_same_escapes_succeed() {
    // The control for the two tests above: the programs do escape an unconfined run.
    let mut s = sandbox(5000);
    s.mechanisms = Mechanisms::none();
    let outside = std::env::temp_dir().join(format!("kiln-unconfined-{}", std::process::id()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = format!(
        "import socket\nopen({:?}, 'w').write('x')\ns = socket.create_connection(('127.0.0.1', {port}), 2)\nprint('escaped')\n",
        outside.display().to_string()
    );
    let o = run_python(&s, "unconfined", &source);
    let wrote = outside.exists();
    let _ = std::fs::remove_file(&outside);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "escaped\n", "{}", o.stderr_text());
    assert!(wrote);
    assert!(listener.accept().is_ok());
}

#[test]
fn an_exit_code_above_128_is_a_code_and_a_signal_is_a_signal() {
    let s = sandbox(5000);
    let o = run_python(&s, "exit137", "import sys\nsys.exit(137)\n");
    assert_eq!(o.exit, Exit::Code(137));
    let o = run_python(&s, "abort", "import os\nos.abort()\n");
    assert_eq!(o.exit, Exit::Signal(libc::SIGABRT));
}
