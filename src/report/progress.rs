//! A progress bar with ETA for long runs, on stderr; hidden when asked (tests, logs) and drawn
//! only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` units of work, e.g. knockout forwards.
    pub fn new(total: u64, what: &str, visible: bool) -> Progress {
        let bar = if visible {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta_precise}",
        )
        .expect("valid progress template");
        bar.set_style(style);
        bar.set_message(what.to_string());
        Progress { bar }
    }

    pub fn inc(&self, n: usize) {
        self.bar.inc(n as u64);
    }

    /// Shows a line above the bar without breaking it.
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.println(line);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
