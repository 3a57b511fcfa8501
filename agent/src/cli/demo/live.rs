//! The demo's live terminal output on standard error: one line per event
//! worth telling (prefixed with the seconds since the start) and, on a
//! terminal, progress bars for the release rolling out — a header line and
//! one bar per wave. Off a terminal the bars are hidden and only the event
//! lines are written, so logs and tests stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Display;
use std::time::Instant;

/// The demo's output.
pub(super) struct Live {
    multi: MultiProgress,
    started: Instant,
}

/// The bars of one release.
pub(super) struct Bars {
    header: ProgressBar,
    waves: Vec<ProgressBar>,
}

/// One wave's bar: agents in the wave, how many installed, and the rest in words.
pub(super) struct WaveLine {
    pub agents: u64,
    pub installed: u64,
    pub text: String,
}

impl Live {
    pub(super) fn new() -> Live {
        Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            started: Instant::now(),
        }
    }

    /// Writes an event line above the bars.
    pub(super) fn say(&self, line: impl Display) {
        let t = self.started.elapsed().as_secs_f64();
        self.multi.suspend(|| eprintln!("[{t:>5.1}s] {line}"));
    }

    /// Runs `f` (which writes to the terminal) with the bars out of the way.
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Adds the bars of a release with waves named `waves`.
    pub(super) fn release(&self, title: &str, waves: &[String]) -> Bars {
        let header = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("{prefix:.bold} {wide_msg}") {
            header.set_style(style);
        }
        header.set_prefix(title.to_string());
        let width = waves.iter().map(String::len).max().unwrap_or(0);
        let bars = waves
            .iter()
            .map(|name| {
                let bar = self.multi.add(ProgressBar::new(0));
                if let Ok(style) = ProgressStyle::with_template(
                    "  {prefix} [{bar:20.green/red}] {pos:>2}/{len:<2} installed  {wide_msg}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(format!("{name:<width$}"));
                bar
            })
            .collect();
        Bars {
            header,
            waves: bars,
        }
    }
}

impl Bars {
    /// Shows the latest counts.
    pub(super) fn update(&self, header: String, waves: &[WaveLine]) {
        self.header.set_message(header);
        for (bar, w) in self.waves.iter().zip(waves) {
            bar.set_length(w.agents);
            bar.set_position(w.installed);
            bar.set_message(w.text.clone());
        }
    }

    /// Leaves the bars on screen as they are now (`abandon`: `finish` would fill them).
    pub(super) fn finish(&self) {
        self.header.abandon();
        for bar in &self.waves {
            bar.abandon();
        }
    }
}
