//! Build progress: BuildKit-like plain lines, an indicatif view on a TTY, one JSON event per
//! line (`rawjson`), or nothing (`quiet`). Output is never truncated in plain mode.
//!
//! Plain format, as BuildKit's (`#N` is the vertex's number in start order):
//! ```text
//! #3 [2/3] RUN echo hi
//! #3 0.104 hi
//! #3 DONE 0.2s
//!
//! #4 [3/3] COPY . /app
//! #4 CACHED
//! ```
//!
//! With `--explain`, a step that runs although an earlier build had a result for it gets
//! a line saying why, right after its name: `#3 CACHE MISS: src/main.rs changed`
//! (rawjson: `{"type": "explain", "vertex", "number", "reason"}`).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_worker::session::Event;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    Auto,
    Tty,
    Plain,
    Quiet,
    Rawjson,
}

/// Consumes events until the channel closes; returns the counts (executed, cached).
pub(crate) async fn render(mode: Mode, explain: bool, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mode = match mode {
        Mode::Auto => {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                Mode::Tty
            } else {
                Mode::Plain
            }
        }
        m => m,
    };
    match mode {
        Mode::Tty => tty(rx, explain).await,
        Mode::Quiet => while rx.recv().await.is_some() {},
        Mode::Rawjson => {
            let start = Instant::now();
            while let Some(e) = rx.recv().await {
                if !explain && matches!(e, Event::Explain { .. }) {
                    continue;
                }
                let v = raw(&e, start.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{v}");
            }
        }
        _ => plain(rx, explain).await,
    }
}

fn raw(e: &Event, t: Duration) -> serde_json::Value {
    use serde_json::json;
    let t = t.as_secs_f64();
    match e {
        Event::Explain {
            vertex,
            number,
            reason,
        } => {
            json!({"type": "explain", "time": t, "vertex": vertex.0, "number": number, "reason": reason})
        }
        Event::Started {
            vertex,
            number,
            name,
        } => {
            json!({"type": "started", "time": t, "vertex": vertex.0, "number": number, "name": name})
        }
        Event::Cached {
            vertex,
            number,
            name,
        } => {
            json!({"type": "cached", "time": t, "vertex": vertex.0, "number": number, "name": name})
        }
        Event::Log {
            vertex,
            number,
            stream,
            data,
        } => json!({
            "type": "log", "time": t, "vertex": vertex.0, "number": number, "stream": stream,
            "data": String::from_utf8_lossy(data),
        }),
        Event::Done {
            vertex,
            number,
            elapsed,
        } => json!({
            "type": "completed", "time": t, "vertex": vertex.0, "number": number,
            "elapsed": elapsed.as_secs_f64(),
        }),
        Event::Failed {
            vertex,
            number,
            message,
            elapsed,
        } => json!({
            "type": "errored", "time": t, "vertex": vertex.0, "number": number,
            "error": message, "elapsed": elapsed.as_secs_f64(),
        }),
    }
}

struct Running {
    start: Instant,
    partial: Vec<u8>,
}

async fn plain(mut rx: mpsc::UnboundedReceiver<Event>, explain: bool) {
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut last: Option<u32> = None;
    // Explanations arrive just before their step's `Started`; printed after its name.
    let mut reasons: HashMap<u32, String> = HashMap::new();
    while let Some(e) = rx.recv().await {
        let mut out = std::io::stderr().lock();
        match e {
            Event::Explain { number, reason, .. } => {
                if explain {
                    reasons.insert(number, reason);
                }
            }
            Event::Started { number, name, .. } => {
                let _ = writeln!(out, "\n#{number} {name}");
                if let Some(r) = reasons.remove(&number) {
                    let _ = writeln!(out, "#{number} CACHE MISS: {r}");
                }
                running.insert(
                    number,
                    Running {
                        start: Instant::now(),
                        partial: vec![],
                    },
                );
                last = Some(number);
            }
            Event::Cached { number, name, .. } => {
                let _ = writeln!(out, "\n#{number} {name}\n#{number} CACHED");
                last = None;
            }
            Event::Log { number, data, .. } => {
                if let Some(r) = running.get_mut(&number) {
                    if last != Some(number) {
                        last = Some(number);
                    }
                    let t = r.start.elapsed().as_secs_f64();
                    r.partial.extend_from_slice(&data);
                    while let Some(i) = r.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = r.partial.drain(..=i).collect();
                        let _ = write!(out, "#{number} {t:.3} ");
                        let _ = out.write_all(&line);
                    }
                }
            }
            Event::Done {
                number, elapsed, ..
            } => {
                flush_partial(&mut out, &mut running, number);
                let _ = writeln!(out, "#{number} DONE {:.1}s", elapsed.as_secs_f64());
            }
            Event::Failed {
                number,
                message,
                elapsed,
                ..
            } => {
                flush_partial(&mut out, &mut running, number);
                let _ = writeln!(
                    out,
                    "#{number} ERROR {:.1}s: {message}",
                    elapsed.as_secs_f64()
                );
            }
        }
    }
}

fn flush_partial(out: &mut impl Write, running: &mut HashMap<u32, Running>, number: u32) {
    if let Some(r) = running.remove(&number) {
        if !r.partial.is_empty() {
            let t = r.start.elapsed().as_secs_f64();
            let _ = write!(out, "#{number} {t:.3} ");
            let _ = out.write_all(&r.partial);
            let _ = writeln!(out);
        }
    }
}

async fn tty(mut rx: mpsc::UnboundedReceiver<Event>, explain: bool) {
    let multi = MultiProgress::new();
    let spin =
        ProgressStyle::with_template("{spinner:.blue} {prefix:.bold} {wide_msg} {elapsed:>4}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<u32, (ProgressBar, String)> = HashMap::new();
    while let Some(e) = rx.recv().await {
        match e {
            Event::Explain { number, reason, .. } => {
                if explain {
                    let _ = multi.println(format!("  #{number} CACHE MISS: {reason}"));
                }
            }
            Event::Started { number, name, .. } => {
                let pb = multi.add(ProgressBar::new_spinner());
                pb.set_style(spin.clone());
                pb.set_prefix(format!("#{number}"));
                pb.set_message(name.clone());
                pb.enable_steady_tick(Duration::from_millis(120));
                bars.insert(number, (pb, name));
            }
            Event::Cached { number, name, .. } => {
                let _ = multi.println(format!("  #{number} {name} CACHED"));
            }
            Event::Log { number, data, .. } => {
                if let Some((pb, name)) = bars.get(&number) {
                    let text = String::from_utf8_lossy(&data);
                    if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                        pb.set_message(format!("{name} │ {}", line.trim()));
                    }
                }
            }
            Event::Done {
                number, elapsed, ..
            } => {
                if let Some((pb, name)) = bars.remove(&number) {
                    pb.finish_and_clear();
                    let _ =
                        multi.println(format!("✔ #{number} {name} {:.1}s", elapsed.as_secs_f64()));
                }
            }
            Event::Failed {
                number, elapsed, ..
            } => {
                if let Some((pb, name)) = bars.remove(&number) {
                    pb.finish_and_clear();
                    let _ =
                        multi.println(format!("✘ #{number} {name} {:.1}s", elapsed.as_secs_f64()));
                }
            }
        }
    }
}
