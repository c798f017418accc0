//! What `seesaw install` shows on stderr while an install runs, and the JSON
//! documents of `install --json`: one display for the standalone install
//! ([`crate::cli`]) and for an install the daemon runs ([`crate::client`]).
//!
//! Owns the look of progress: on a terminal one indicatif bar per phase
//! (phase, bytes, rate, ETA), cleared when the install ends so no text is
//! left behind; otherwise plain lines, at most one per [`STEP_PERCENT`] step
//! of each phase, never a carriage return; with `--json` the same steps as
//! JSON lines, then the result document. Front-end helper only: it holds no
//! install logic, never writes stdout, and lower layers do not use it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::install::{Phase, Progress};
use crate::slot::Slot;
use crate::updater::UpdateError;

/// Percent of a phase between two plain or JSON lines.
pub const STEP_PERCENT: u64 = 10;

/// How progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An indicatif bar per phase, redrawn in place (stderr is a terminal).
    Bar,
    /// A plain line per step of each phase (stderr is a file or a pipe).
    Lines,
    /// A JSON line per step of each phase, then the result document (`--json`).
    Json,
}

impl Style {
    /// [`Style::Json`] when `json`, else [`Style::Bar`] if stderr is a
    /// terminal and [`Style::Lines`] if it is not.
    pub fn detect(json: bool) -> Style {
        if json {
            Style::Json
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// The name a phase of [`crate::install`] is shown under.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Write => "verifying and writing",
        Phase::Verify => "reading back",
    }
}

/// Percent of `done` in `total` bytes, 0–100 (100 for an empty total).
pub fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    // In u128: done × 100 does not overflow for any u64.
    (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
}

/// Which updates become a line: the first of a phase, then the first of
/// each later [`STEP_PERCENT`] step, so a phase prints at most 11 lines and
/// its 100% line (the final one) once. Phases are throttled apart, however
/// their updates interleave. Pure: no clock, no output.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Each phase seen, with the step of its last line.
    last: Vec<(String, u64)>,
}

impl Throttle {
    /// A throttle that has let no line through.
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// Notes `done` of `total` bytes of `phase`; returns the percent to show
    /// if this update deserves a line, `None` if it does not.
    pub fn admit(&mut self, phase: &str, done: u64, total: u64) -> Option<u64> {
        let pct = percent(done, total);
        let step = pct / STEP_PERCENT;
        match self.last.iter_mut().find(|(p, _)| p == phase) {
            Some((_, last)) if step <= *last => None,
            Some((_, last)) => {
                *last = step;
                Some(pct)
            }
            None => {
                self.last.push((phase.to_string(), step));
                Some(pct)
            }
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Bytes per second of a phase that had `first` bytes done at its first
/// update and `done` bytes `elapsed` later; `None` until there is a
/// measurement (no time or no bytes since).
pub fn rate(first: u64, done: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (secs > 0.0 && done > first).then(|| (done - first) as f64 / secs)
}

/// The plain line for `done` of `total` bytes of `phase` at `rate` (bytes
/// per second, see [`rate`]), `elapsed` after the phase's first update:
/// `reading back:  25% 1.0/4.0 MiB, 2.0 MiB/s, ETA 2 s`; without a rate
/// yet only the phase, percent and bytes; at the end
/// `reading back: 100% 4.0/4.0 MiB, 2.0 MiB/s in 2.0 s`.
pub fn line(phase: &str, done: u64, total: u64, rate: Option<f64>, elapsed: Duration) -> String {
    let head = format!(
        "{phase}: {:3}% {:.1}/{:.1} MiB",
        percent(done, total),
        mib(done),
        mib(total)
    );
    match rate {
        None => head,
        Some(r) if done >= total => {
            format!(
                "{head}, {:.1} MiB/s in {:.1} s",
                r / 1048576.0,
                elapsed.as_secs_f64()
            )
        }
        Some(r) => format!(
            "{head}, {:.1} MiB/s, ETA {:.0} s",
            r / 1048576.0,
            (total - done) as f64 / r
        ),
    }
}

/// The JSON line for progress: `{"event": "progress", "percent": 0–100,
/// "bytes_done": bytes, "bytes_total": bytes, "message": the phase}`.
pub fn progress_document(phase: &str, done: u64, total: u64) -> serde_json::Value {
    serde_json::json!({
        "event": "progress",
        "percent": percent(done, total),
        "bytes_done": done,
        "bytes_total": total,
        "message": phase,
    })
}

/// The result document of `install --json`, its last line: `{"event":
/// "completed", "result": exit status (0 on success, see
/// [`crate::cli::exit`]), "message": text}` — the daemon's `Completed`
/// signal, or the same for a standalone install.
pub fn result_document(result: i32, message: &str) -> serde_json::Value {
    serde_json::json!({"event": "completed", "result": result, "message": message})
}

/// The message of a successful install, as the daemon's `Completed` signal
/// carries it: `installed 2.0.0 into slot B; reboot to try it`.
pub fn installed_message(version: &str, slot: Slot) -> String {
    format!("installed {version} into slot {slot}; reboot to try it")
}

/// The message of a failed install, as the daemon's `Completed` signal
/// carries it: `install failed: ` and the error.
pub fn failed_message(err: &UpdateError) -> String {
    format!("install failed: {err:#}")
}

/// One phase on the screen.
struct Shown {
    phase: String,
    /// When the phase's first update came, and its bytes done then.
    started: Instant,
    first: u64,
    bar: Option<indicatif::ProgressBar>,
}

struct State {
    throttle: Throttle,
    shown: Vec<Shown>,
    finished: bool,
}

/// The progress display of one install on stderr, in one [`Style`].
///
/// Fed by [`Meter::show`] (or as an [`install::Progress`](Progress) by the
/// install's worker threads) and ended by [`Meter::finish`]; dropping it
/// unfinished clears its bars too. Writing to stderr is best effort: a
/// closed stderr does not fail the install.
pub struct Meter {
    style: Style,
    bars: Option<indicatif::MultiProgress>,
    state: Mutex<State>,
}

impl Meter {
    /// A display in the style [`Style::detect`] picks for `json`.
    pub fn new(json: bool) -> Meter {
        Meter::with_style(Style::detect(json))
    }

    /// A display in `style`.
    pub fn with_style(style: Style) -> Meter {
        Meter {
            style,
            bars: (style == Style::Bar).then(indicatif::MultiProgress::new),
            state: Mutex::new(State {
                throttle: Throttle::new(),
                shown: Vec::new(),
                finished: false,
            }),
        }
    }

    /// The style this display uses.
    pub fn style(&self) -> Style {
        self.style
    }

    /// `done` of `total` bytes of `phase` are finished. A `total` of 0
    /// (nothing measurable yet) shows nothing.
    pub fn show(&self, phase: &str, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.finished {
            return;
        }
        let index = self.entry(&mut state, phase, done, total);
        if let Some(bar) = &state.shown[index].bar {
            bar.set_length(total);
            bar.set_position(done.min(total));
            return;
        }
        if state.throttle.admit(phase, done, total).is_none() {
            return;
        }
        let text = match self.style {
            Style::Json => progress_document(phase, done, total).to_string(),
            _ => {
                let shown = &state.shown[index];
                let elapsed = shown.started.elapsed();
                line(
                    phase,
                    done,
                    total,
                    rate(shown.first, done, elapsed),
                    elapsed,
                )
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }

    /// The index of `phase` in `state.shown`, added (with its bar) at the
    /// first update, `done` of `total` bytes.
    fn entry(&self, state: &mut State, phase: &str, done: u64, total: u64) -> usize {
        if let Some(i) = state.shown.iter().position(|s| s.phase == phase) {
            return i;
        }
        let bar = self
            .bars
            .as_ref()
            .map(|bars| bars.add(new_bar(phase, total)));
        state.shown.push(Shown {
            phase: phase.to_string(),
            started: Instant::now(),
            first: done,
            bar,
        });
        state.shown.len() - 1
    }

    /// Ends the display once the install ended with `result` (an exit
    /// status, 0 for success) and `message`: clears the bars, and in
    /// [`Style::Json`] prints [`result_document`]. Plain lines print nothing
    /// more: the result goes to stdout and an error is printed by the caller.
    pub fn finish(&self, result: i32, message: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.finished {
            return;
        }
        state.finished = true;
        self.clear(&state);
        if self.style == Style::Json {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                result_document(result, message)
            );
        }
    }

    fn clear(&self, state: &State) {
        for bar in state.shown.iter().filter_map(|s| s.bar.as_ref()) {
            bar.finish_and_clear();
        }
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.finished {
            self.clear(&state);
        }
    }
}

impl Progress for Meter {
    fn update(&self, phase: Phase, done: u64, total: u64) {
        if phase == Phase::Verify && total > 0 {
            // The read-back of the first chunk can report before its writer
            // does; writing stays the first phase shown all the same.
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !state.finished {
                self.entry(&mut state, phase_name(Phase::Write), 0, total);
            }
        }
        self.show(phase_name(phase), done, total);
    }
}

/// A bar for `phase`: the phase, the bar, bytes, rate and ETA.
fn new_bar(phase: &str, total: u64) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>21} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(total)
        .with_style(style)
        .with_prefix(phase.to_string())
        .with_finish(indicatif::ProgressFinish::AndClear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_gets_a_line_per_ten_percent_however_updates_interleave() {
        let total: u64 = 4 << 20;
        let chunk: u64 = 64 << 10;
        let mut t = Throttle::new();
        let mut admitted: Vec<(&str, u64)> = Vec::new();
        // The read-back follows the writers a few chunks behind, so the two
        // phases' updates alternate.
        for i in 1..=(total / chunk + 3) {
            for (phase, done) in [
                ("write", i * chunk),
                ("verify", i.saturating_sub(3) * chunk),
            ] {
                if let Some(pct) = t.admit(phase, done.min(total), total) {
                    admitted.push((phase, pct));
                }
            }
        }
        for phase in ["write", "verify"] {
            let pcts: Vec<u64> = admitted
                .iter()
                .filter(|(p, _)| *p == phase)
                .map(|(_, pct)| *pct)
                .collect();
            assert!(pcts.len() <= 11, "{phase}: {pcts:?}");
            assert!(pcts.len() >= 10, "{phase}: {pcts:?}");
            assert!(
                pcts.windows(2).all(|w| w[1] / 10 > w[0] / 10),
                "{phase}: {pcts:?}"
            );
            assert_eq!(pcts.last(), Some(&100), "{phase}: {pcts:?}");
        }
    }

    #[test]
    fn the_first_update_of_a_phase_is_shown_and_the_final_line_once() {
        let mut t = Throttle::new();
        assert_eq!(t.admit("write", 37, 100), Some(37));
        assert_eq!(t.admit("write", 39, 100), None);
        assert_eq!(t.admit("write", 40, 100), Some(40));
        assert_eq!(t.admit("write", 100, 100), Some(100));
        assert_eq!(t.admit("write", 100, 100), None);
        // Another phase starts from its own first line.
        assert_eq!(t.admit("verify", 0, 100), Some(0));
        assert_eq!(t.admit("verify", 9, 100), None);
    }

    #[test]
    fn percent_is_bounded_and_an_empty_total_is_complete() {
        assert_eq!(percent(0, 10), 0);
        assert_eq!(percent(5, 10), 50);
        assert_eq!(percent(11, 10), 100);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(u64::MAX / 2, u64::MAX), 49);
    }

    #[test]
    fn a_line_shows_phase_bytes_rate_and_eta() {
        let half = Duration::from_millis(500);
        let r = rate(0, 1 << 20, half);
        assert_eq!(r, Some(2097152.0));
        let l = line("reading back", 1 << 20, 4 << 20, r, half);
        assert_eq!(l, "reading back:  25% 1.0/4.0 MiB, 2.0 MiB/s, ETA 2 s");
        let r = rate(0, 4 << 20, Duration::from_secs(2));
        let l = line("reading back", 4 << 20, 4 << 20, r, Duration::from_secs(2));
        assert_eq!(l, "reading back: 100% 4.0/4.0 MiB, 2.0 MiB/s in 2.0 s");
        // The first update measures nothing yet.
        assert_eq!(rate(1 << 16, 1 << 16, Duration::ZERO), None);
        let l = line("reading back", 1 << 16, 4 << 20, None, Duration::ZERO);
        assert_eq!(l, "reading back:   1% 0.1/4.0 MiB");
        assert!(!l.contains('\r'));
    }

    #[test]
    fn the_json_documents_have_the_documented_keys() {
        let p = progress_document("reading back", 1, 4);
        assert_eq!(
            p,
            serde_json::json!({"event": "progress", "percent": 25, "bytes_done": 1,
                "bytes_total": 4, "message": "reading back"})
        );
        let r = result_document(0, &installed_message("2.0.0", Slot::B));
        assert_eq!(
            r,
            serde_json::json!({"event": "completed", "result": 0,
                "message": "installed 2.0.0 into slot B; reboot to try it"})
        );
    }

    #[test]
    fn nothing_is_shown_after_finish() {
        let m = Meter::with_style(Style::Lines);
        m.show("write", 1 << 20, 2 << 20);
        m.finish(0, "done");
        m.show("write", 2 << 20, 2 << 20);
        let state = m.state.lock().unwrap();
        assert_eq!(state.throttle.last, [("write".to_string(), 5)]);
    }
}
