//! Progress on the terminal: a bar per computing stage, or plain periodic lines when
//! stderr is not a terminal (CI logs, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use kiln_stages::Progress;

use crate::exec::Reporter;
use crate::plan::key::Key;
use crate::runs::{Outcome, StageRecord};

pub struct Terminal {
    tty: bool,
}

impl Terminal {
    pub fn new() -> Self {
        Terminal { tty: std::io::stderr().is_terminal() }
    }
}

impl Reporter for Terminal {
    fn started(&self, stage: &str, kind: &str) -> Box<dyn Progress + '_> {
        if self.tty {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>12.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} ({elapsed})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(stage.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            Box::new(Bar { bar, unit: Mutex::new(String::new()) })
        } else {
            eprintln!("{stage} ({kind}): running");
            Box::new(Lines { stage: stage.into(), state: Mutex::new(LineState::default()) })
        }
    }

    fn finished(&self, record: &StageRecord) {
        let mark = match record.outcome() {
            Outcome::Failed | Outcome::Differs => "✗",
            Outcome::Ran | Outcome::Reproduced => "✓",
            Outcome::Cached => "·",
            Outcome::Skipped => "-",
        };
        let time = if record.took_time() { format!(" in {:.1}s", record.duration_s) } else { String::new() };
        eprintln!("{mark} {} {}{time}", record.name, record.outcome().word());
    }

    fn waiting(&self, stage: &str) {
        eprintln!("{stage}: another run is computing this entry; waiting for it");
    }

    fn damaged(&self, stage: &str, key: &Key, why: &str, moved_to: &std::path::Path) {
        eprintln!(
            "{stage}: cache entry {} is damaged ({why}); moved to {} and computed again",
            key.short(),
            moved_to.display()
        );
    }
}

struct Bar {
    bar: ProgressBar,
    unit: Mutex<String>,
}

impl Progress for Bar {
    fn start(&self, total: u64, unit: &str) {
        self.bar.set_length(total);
        self.bar.set_position(0);
        *self.unit.lock().expect("not poisoned") = unit.to_string();
        self.bar.set_message(unit.to_string());
    }
    fn advance(&self, n: u64) {
        self.bar.inc(n);
    }
    fn message(&self, text: &str) {
        let unit = self.unit.lock().expect("not poisoned").clone();
        self.bar.set_message(format!("{unit} {text}"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[derive(Default)]
struct LineState {
    total: u64,
    done: u64,
    unit: String,
    message: String,
    last: Option<Instant>,
}

/// Prints `stage: 500/1000 steps loss 1.23` at most every 10 seconds.
struct Lines {
    stage: String,
    state: Mutex<LineState>,
}

impl Lines {
    fn maybe_print(&self, state: &mut LineState) {
        let due = state.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            state.last = Some(Instant::now());
            eprintln!("{}: {}/{} {} {}", self.stage, state.done, state.total, state.unit, state.message);
        }
    }
}

impl Progress for Lines {
    fn start(&self, total: u64, unit: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        s.total = total;
        s.done = 0;
        s.unit = unit.to_string();
    }
    fn advance(&self, n: u64) {
        let mut s = self.state.lock().expect("not poisoned");
        s.done += n;
        self.maybe_print(&mut s);
    }
    fn message(&self, text: &str) {
        let mut s = self.state.lock().expect("not poisoned");
        s.message = text.to_string();
    }
}
