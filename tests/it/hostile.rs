//! Hostile pipeline files, generated: each file of `pipelines/` and `tests/spec_errors/`
//! mutated by a seeded generator (bytes flipped, stray non-ASCII characters, tabs,
//! brackets, anchors, tags and document markers inserted, lines cut, repeated or
//! re-indented, values replaced by huge numbers, deep nesting and alias bombs spliced
//! in), and `kiln plan` run on each under a watchdog. Every file must be accepted
//! (exit 0) or rejected with exit 2 and a located error, within 10 s and 1 GiB, with no
//! panic, no abort and no cache entry.
//!
//! `just test` runs 1,000 cases; `KILN_HOSTILE_CASES=N KILN_HOSTILE_SEED=S` run others
//! (`just fuzz`). A failing case is written to `target/hostile/` to become a golden file
//! in `tests/spec_errors/`.
//!
//! The same for data files: the JSON Lines fixtures mutated (bytes flipped, invalid
//! UTF-8, cut short, gzip-compressed and then cut, a line of 100 MB, empty, deeply nested
//! JSON, binary noise) and read by `source.jsonl` and `source.code`: each run succeeds or
//! fails naming the file, within the same limits, and a failed source leaves no entry.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::repo;

const TIME_LIMIT: Duration = Duration::from_secs(10);
const MEMORY_LIMIT_KB: i64 = 1 << 20;

/// The seed corpus: every pipeline and every golden spec error.
fn seeds() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in ["pipelines", "tests/spec_errors"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

const INSERTS: &[&str] = &[
    "é",
    "…",
    "名前",
    "\t",
    "\u{0}",
    "\u{feff}",
    "\u{301}",
    "😀",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!str ",
    "!x ",
    "\n---\n",
    ":",
    ": ",
    "- ",
    "\"",
    "'",
    "\\",
    "#",
    "|\n",
    ">\n",
    "? ",
    "%YAML 1.2\n",
    "\r",
    "\n  ",
    ",",
];

const VALUES: &[&str] = &[
    "1e308",
    "-1",
    "99999999999999999999999",
    ".nan",
    "-.inf",
    "0",
    "null",
    "~",
    "[]",
    "{}",
    "''",
    "true",
    "0x7fffffffffffffff",
    "1.0e-400",
    "\"\\uD800\"",
    "*undefined",
    "!!binary aGk=",
];

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let at = |rng: &mut ChaCha8Rng, len: usize| rng.random_range(0..=len);
    let lines: Vec<&str> = text.lines().collect();
    match rng.random_range(0..10) {
        0 => {
            for _ in 0..rng.random_range(1..4) {
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
            }
        }
        1 | 2 => {
            for _ in 0..rng.random_range(1..4) {
                // Inserted at a character boundary, so the text stays UTF-8.
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut i = at(rng, s.len());
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                let insert = INSERTS[rng.random_range(0..INSERTS.len())];
                bytes = format!("{}{insert}{}", &s[..i], &s[i..]).into_bytes();
            }
        }
        3 => bytes.truncate(at(rng, bytes.len())),
        4 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let mut out: Vec<&str> = lines.clone();
            match rng.random_range(0..3) {
                0 => out.insert(i, lines[i]),
                1 => {
                    out.remove(i);
                }
                _ => out.swap(i, rng.random_range(0..lines.len())),
            }
            bytes = out.join("\n").into_bytes();
        }
        5 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out[i] = if rng.random_bool(0.5) {
                format!("{}{}", " ".repeat(rng.random_range(1..9)), out[i])
            } else {
                out[i].trim_start().to_string()
            };
            bytes = out.join("\n").into_bytes();
        }
        6 => {
            // A value replaced: after the first `: ` of a random line.
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            if let Some(i) = (0..8)
                .map(|_| rng.random_range(0..out.len().max(1)))
                .find(|&i| out.get(i).is_some_and(|l| l.contains(": ") && !l.trim_start().starts_with('#')))
            {
                let cut = out[i].find(": ").unwrap() + 2;
                out[i] = format!("{}{}", &out[i][..cut], VALUES[rng.random_range(0..VALUES.len())]);
            }
            bytes = out.join("\n").into_bytes();
        }
        7 => {
            let depth = [70, 1_000, 20_000][rng.random_range(0..3)];
            let nested = if rng.random_bool(0.5) {
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth))
            };
            bytes = format!("{text}\nnested: {nested}\n").into_bytes();
        }
        8 => {
            let mut bomb = String::from("b0: &b0 [x, x, x, x, x, x, x, x, x, x]\n");
            for i in 1..rng.random_range(3..12) {
                bomb += &format!("b{i}: &b{i} [{}]\n", vec![format!("*b{}", i - 1); 10].join(", "));
            }
            bytes = format!("{bomb}{text}").into_bytes();
        }
        _ => {
            // Every key of one line repeated further down, under the same indentation.
            if let Some(line) = lines.iter().find(|l| l.trim_start().starts_with("steps:") || l.contains("uses:")) {
                bytes = format!("{text}\n{line}\n").into_bytes();
            } else {
                bytes = format!("{text}\n{}", lines.first().unwrap_or(&"name: x")).into_bytes();
            }
        }
    }
    bytes
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    seconds: f64,
    max_rss_kb: i64,
}

/// `kiln plan FILE --workdir DIR` under a watchdog.
fn plan(file: &Path, workdir: &Path) -> Outcome {
    kiln(&["plan", file.to_str().unwrap(), "--workdir", workdir.to_str().unwrap()])
}

/// `kiln ARGS` under a watchdog, with its peak memory (the child is reaped by `wait4`,
/// which std's `wait` does not offer, for its resource usage).
#[allow(clippy::zombie_processes)]
fn kiln(args: &[&str]) -> Outcome {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(repo())
        .env_remove("KILN_HOME")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln starts");
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            while started.elapsed() < TIME_LIMIT + Duration::from_secs(5) {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: the child is not reaped before `done` is set, so the pid is its.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let mut stderr = String::new();
    let mut pipe = child.stderr.expect("piped");
    std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, once.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Outcome { code, stderr, seconds: started.elapsed().as_secs_f64(), max_rss_kb: usage.ru_maxrss }
}

/// What is wrong with one case's outcome, if anything.
fn verdict(outcome: &Outcome, workdir: &Path) -> Option<String> {
    if outcome.stderr.contains("panicked") {
        return Some("panicked".into());
    }
    match outcome.code {
        Some(0) => {}
        Some(2) => {
            let located = outcome.stderr.contains("——▶ ") || outcome.stderr.contains(", column ");
            if !outcome.stderr.starts_with("error: ") || !located {
                return Some("rejected without a location".into());
            }
        }
        other => return Some(format!("exit {other:?} (killed or aborted)")),
    }
    if outcome.seconds > TIME_LIMIT.as_secs_f64() {
        return Some(format!("took {:.1} s", outcome.seconds));
    }
    if outcome.max_rss_kb > MEMORY_LIMIT_KB {
        return Some(format!("peak memory {} MB", outcome.max_rss_kb / 1024));
    }
    let entries = std::fs::read_dir(workdir.join(".kiln/cache")).map_or(0, |d| d.count());
    (entries > 0).then(|| format!("{entries} cache entries written"))
}

#[test]
fn hostile_pipeline_files_are_accepted_or_rejected_with_a_location() {
    let cases: usize = std::env::var("KILN_HOSTILE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let seed: u64 = std::env::var("KILN_HOSTILE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    let seeds = seeds();
    let dir = tempfile::tempdir().unwrap();
    let failed_dir: PathBuf = repo().join("target/hostile");
    let threads = 2;
    let results: Vec<(usize, Outcome, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seeds, dir, failed_dir) = (&seeds, dir.path(), &failed_dir);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for case in (t..cases).step_by(threads) {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed);
                        rng.set_stream(case as u64);
                        let (_, text) = &seeds[rng.random_range(0..seeds.len())];
                        let mut bytes = text.as_bytes().to_vec();
                        for _ in 0..rng.random_range(1..4) {
                            bytes = mutate(&String::from_utf8_lossy(&bytes), &mut rng);
                        }
                        let file = dir.join(format!("case-{case}.yaml"));
                        std::fs::write(&file, &bytes).unwrap();
                        let workdir = dir.join(format!("work-{case}"));
                        let outcome = plan(&file, &workdir);
                        let wrong = verdict(&outcome, &workdir);
                        if wrong.is_some() {
                            std::fs::create_dir_all(failed_dir).unwrap();
                            std::fs::write(failed_dir.join(format!("case-{case}.yaml")), &bytes).unwrap();
                        } else {
                            std::fs::remove_file(&file).ok();
                            std::fs::remove_dir_all(&workdir).ok();
                        }
                        out.push((case, outcome, wrong));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let rejected = results.iter().filter(|(_, o, _)| o.code == Some(2)).count();
    let slowest = results.iter().map(|(_, o, _)| o.seconds).fold(0.0, f64::max);
    let peak = results.iter().map(|(_, o, _)| o.max_rss_kb).max().unwrap_or(0);
    eprintln!(
        "hostile pipeline files: {cases} cases (seed {seed}), {rejected} rejected, {} accepted; slowest {slowest:.2} s, peak {} MB",
        cases - rejected,
        peak / 1024
    );
    let wrong: Vec<String> = results
        .iter()
        .filter_map(|(case, o, w)| w.as_ref().map(|w| format!("case {case}: {w}\n{}", o.stderr)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {cases} cases went wrong (files in target/hostile/):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// One mutation of a data file's bytes.
fn mutate_data(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match rng.random_range(0..9) {
        0 => {
            for _ in 0..rng.random_range(1..6) {
                if !out.is_empty() {
                    let i = rng.random_range(0..out.len());
                    out[i] = rng.random();
                }
            }
        }
        1 => {
            let i = rng.random_range(0..=out.len());
            out.splice(i..i, [0xff, 0xfe, 0xc3]);
        }
        2 => out.truncate(rng.random_range(0..=out.len())),
        3 => {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&out).unwrap();
            out = gz.finish().unwrap();
            if rng.random_bool(0.7) {
                out.truncate(rng.random_range(0..out.len()));
            }
        }
        4 => {
            let mut long = b"{\"question\": \"".to_vec();
            long.resize(100 << 20, b'x');
            long.extend_from_slice(b"\"}\n");
            out.splice(0..0, long);
        }
        5 => out.clear(),
        6 => {
            let depth = [100, 10_000, 1_000_000][rng.random_range(0..3)];
            let mut nested = "[".repeat(depth).into_bytes();
            nested.extend_from_slice("]".repeat(depth).as_bytes());
            nested.push(b'\n');
            out.splice(0..0, nested);
        }
        7 => out = (0..rng.random_range(1..100_000)).map(|_| rng.random()).collect(),
        _ => {
            let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
            let pick = lines[rng.random_range(0..lines.len())];
            out = [pick, b"\n", pick, b"\n\n\r\n{}\n[]\nnull\n"].concat();
        }
    }
    out
}

#[test]
fn hostile_data_files_are_read_or_named() {
    let cases: usize = std::env::var("KILN_HOSTILE_DATA_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seed: u64 = std::env::var("KILN_HOSTILE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    let fixtures = ["gsm8k-train.jsonl", "gsm8k-test.jsonl", "mbpp.jsonl", "humanevalpack-python.jsonl"];
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    let (mut failed, mut peak, mut slowest) = (0, 0, 0.0f64);
    for case in 0..cases {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(case as u64);
        let fixture = fixtures[rng.random_range(0..fixtures.len())];
        let bytes = mutate_data(&std::fs::read(repo().join("tests/fixtures").join(fixture)).unwrap(), &mut rng);
        let data = dir.path().join(format!("data-{case}.jsonl"));
        std::fs::write(&data, &bytes).unwrap();
        let source = if fixture.starts_with("gsm8k") {
            "{ uses: source.jsonl, with: { path: DATA, fields: { question: question, answer: answer } } }"
        } else if fixture.starts_with("mbpp") {
            "{ uses: source.code, with: { path: DATA, format: mbpp } }"
        } else {
            "{ uses: source.code, with: { path: DATA, format: humanevalpack } }"
        };
        let skip = if rng.random_bool(0.5) { ", on_bad_record: skip" } else { "" };
        let source = source.replace("DATA", &data.display().to_string()).replace(" } }", &format!("{skip} }} }}"));
        let pipeline = dir.path().join(format!("case-{case}.yaml"));
        std::fs::write(&pipeline, format!("name: data-{case}\nstages:\n  source: {source}\n")).unwrap();
        let workdir = dir.path().join(format!("work-{case}"));
        let outcome = kiln(&["run", pipeline.to_str().unwrap(), "--workdir", workdir.to_str().unwrap()]);
        let entries = std::fs::read_dir(workdir.join(".kiln/cache")).map_or(0, |d| d.count());
        let problem = if outcome.stderr.contains("panicked") {
            Some("panicked".to_string())
        } else if outcome.seconds > TIME_LIMIT.as_secs_f64() {
            Some(format!("took {:.1} s", outcome.seconds))
        } else if outcome.max_rss_kb > MEMORY_LIMIT_KB {
            Some(format!("peak memory {} MB", outcome.max_rss_kb / 1024))
        } else {
            match outcome.code {
                Some(0) => (entries != 1).then(|| format!("succeeded with {entries} entries")),
                Some(1) => {
                    failed += 1;
                    let named = outcome.stderr.contains(&format!("data-{case}.jsonl"));
                    if !named {
                        Some("failed without naming the file".to_string())
                    } else {
                        (entries != 0).then(|| format!("failed but left {entries} entries"))
                    }
                }
                other => Some(format!("exit {other:?}")),
            }
        };
        peak = peak.max(outcome.max_rss_kb);
        slowest = slowest.max(outcome.seconds);
        if let Some(problem) = problem {
            let kept = repo().join("target/hostile");
            std::fs::create_dir_all(&kept).unwrap();
            std::fs::write(kept.join(format!("data-{case}.jsonl")), &bytes).unwrap();
            wrong.push(format!("case {case} ({fixture}{skip}): {problem}\n{}", outcome.stderr));
        }
        std::fs::remove_file(&data).ok();
        std::fs::remove_dir_all(&workdir).ok();
    }
    eprintln!(
        "hostile data files: {cases} cases (seed {seed}), {failed} failed naming the file, {} read; slowest {slowest:.2} s, peak {} MB",
        cases - failed,
        peak / 1024
    );
    assert!(
        wrong.is_empty(),
        "{} of {cases} cases went wrong (files in target/hostile/):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
