//! How a long restore shows that it is moving: a bar with rate and ETA for
//! someone watching a terminal, a log line now and then for a container's log.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// At most this long between two plain progress lines.
const LINE_EVERY: Duration = Duration::from_secs(5);
/// A plain line also comes at every tenth of the total.
const LINE_STEPS: u64 = 10;

pub enum RowProgress {
    Bar(ProgressBar),
    Lines(Lines),
}

pub struct Lines {
    total: u64,
    started: Instant,
    last_line_at: Instant,
    last_step: u64,
}

impl RowProgress {
    /// A bar when `on_terminal`, log lines otherwise. `total` is the number
    /// of rows expected (the verified manifest's count).
    pub fn new(total: u64, on_terminal: bool) -> Self {
        if on_terminal {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows, \
                     {per_sec}, ETA {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            Self::Bar(bar)
        } else {
            let now = Instant::now();
            Self::Lines(Lines {
                total,
                started: now,
                last_line_at: now,
                last_step: 0,
            })
        }
    }

    /// `rows` have been handled so far.
    pub fn update(&mut self, rows: u64) {
        match self {
            Self::Bar(bar) => bar.set_position(rows),
            Self::Lines(lines) => lines.update(rows),
        }
    }

    /// Removes the bar, so the report that follows stands alone.
    pub fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Lines {
    fn update(&mut self, rows: u64) {
        let step = (rows * LINE_STEPS).checked_div(self.total).unwrap_or(0);
        let now = Instant::now();
        if step <= self.last_step && now - self.last_line_at < LINE_EVERY {
            return;
        }
        self.last_step = step;
        self.last_line_at = now;
        let elapsed = now - self.started;
        let rows_per_sec = rows as f64 / elapsed.as_secs_f64().max(1e-3);
        let eta_secs = (self.total.saturating_sub(rows) as f64 / rows_per_sec.max(1e-3)).round();
        tracing::info!(
            message = "restoring",
            rows,
            total = self.total,
            rows_per_sec = rows_per_sec.round(),
            eta_secs,
        );
    }
}
