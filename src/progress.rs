//! A progress bar on standard error for long commands (`import-legacy`): redrawn in place
//! on a terminal, a line every tenth otherwise (a log file keeps a readable trail). Passes
//! of fewer than `LARGE` rows show nothing: they are over before a bar would help.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::app::import_legacy::Progress;

/// Passes smaller than this show no progress.
const LARGE: u64 = 10_000;
/// A terminal's bar is redrawn at most this often.
const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: u64 = 30;

pub struct Bar {
    terminal: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    table: &'static str,
    total: u64,
    done: u64,
    shown_tenth: u64,
    drawn_at: Option<Instant>,
}

impl Bar {
    pub fn stderr() -> Self {
        Bar {
            terminal: std::io::stderr().is_terminal(),
            state: Mutex::new(State::default()),
        }
    }

    fn draw(&self, s: &mut State, last: bool) {
        if s.total < LARGE {
            return;
        }
        let done = s.done.min(s.total);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            if !last && s.drawn_at.is_some_and(|at| at.elapsed() < REDRAW) {
                return;
            }
            s.drawn_at = Some(Instant::now());
            let filled = done * WIDTH / s.total;
            let _ = write!(
                err,
                "\r{:<18} [{}{}] {:>3}% {done}/{}",
                s.table,
                "#".repeat(filled as usize),
                "-".repeat((WIDTH - filled) as usize),
                done * 100 / s.total,
                s.total
            );
            if last {
                let _ = writeln!(err);
            }
        } else {
            let tenth = done * 10 / s.total;
            if tenth > s.shown_tenth || last {
                s.shown_tenth = tenth;
                let _ = writeln!(
                    err,
                    "{}: {}% ({done}/{})",
                    s.table,
                    done * 100 / s.total,
                    s.total
                );
            }
        }
    }
}

impl Progress for Bar {
    fn begin(&self, table: &'static str, total: u64) {
        if let Ok(mut s) = self.state.lock() {
            *s = State {
                table,
                total,
                ..State::default()
            };
        }
    }

    fn advance(&self, rows: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.done += rows;
            self.draw(&mut s, false);
        }
    }

    fn end(&self) {
        if let Ok(mut s) = self.state.lock()
            && s.shown_tenth < 10
        {
            self.draw(&mut s, true);
        }
    }
}
