//! Logging setup for the binary. Text lines (the default) or JSON lines (`LOG_FORMAT=json`).
//!
//! A log line is one event: a field that carries a CR or LF from outside (an id, an
//! upstream's error text) must not start a forged line of its own. JSON escapes them
//! already; tracing's text format escapes ESC and the C1 controls but not CR/LF, so the
//! text writer escapes every CR and LF inside an event (`\r`, `\n`) and keeps only the
//! line's own end.

use std::io::{self, Write};

/// Installs the global subscriber (`RUST_LOG` filters, `info` by default), writing to
/// standard output.
pub fn init() {
    init_to(false);
}

/// The same, writing to standard error when `stderr` (a command whose standard output is
/// its answer: `import-legacy --json`).
pub fn init_to(stderr: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = std::env::var("LOG_FORMAT").as_deref() == Ok("json");
    match (json, stderr) {
        (true, false) => builder.json().init(),
        (true, true) => builder.json().with_writer(io::stderr).init(),
        (false, false) => builder.with_writer(|| OneLine(io::stdout())).init(),
        (false, true) => builder.with_writer(|| OneLine(io::stderr())).init(),
    }
}

/// A writer that escapes CR and LF within what it is given, except a final LF.
pub struct OneLine<W>(pub W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        if !body.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_break_inside_an_event_cannot_forge_a_line() {
        let mut w = OneLine(Vec::new());
        w.write_all(b"INFO callback delivered subscription_id=sub-1\r\nERROR forged\n")
            .unwrap();
        w.write_all(b"INFO plain line\n").unwrap();
        let text = String::from_utf8(w.0).unwrap();
        assert_eq!(
            text,
            "INFO callback delivered subscription_id=sub-1\\r\\nERROR forged\nINFO plain line\n"
        );
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn the_real_text_format_keeps_one_event_on_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || OneLine(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "sub-1\r\nERROR forged line";
            tracing::info!(subscription_id = %id, "callback delivered");
            tracing::warn!("second event");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(r"sub-1\r\nERROR forged line"), "{text}");
    }
}
