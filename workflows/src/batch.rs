//! Batch rendering: one workflow run per row of a JSONL or CSV file, rows
//! in parallel, a manifest line per finished row, and resumption: a row
//! whose outputs exist and match their recorded hashes is not run again.
//!
//! Crash safety: a row's outputs are written atomically before its
//! manifest line, and each line is appended whole and synced; a line cut
//! short by a kill is ignored on the next run, which rewrites the manifest
//! with one line per finished row.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use pipelines::tasks::Runner;
use serde::{Deserialize, Serialize};

use crate::error::{Result, WorkflowError};
use crate::io::{json_input, parse_input, write_outputs, Written};
use crate::run::{bind_inputs, run, Event, RunOptions};
use crate::types::Value;
use crate::validate::Workflow;

/// The manifest's file name in the output folder.
pub const MANIFEST: &str = "manifest.jsonl";

/// One row's cells as read: JSON values (JSONL) or text (CSV).
#[derive(Debug, Clone)]
pub enum Cell {
    Json(serde_json::Value),
    Text(String),
}

pub type Row = BTreeMap<String, Cell>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestLine {
    pub row: usize,
    /// `ok` or `failed`.
    pub status: String,
    pub outputs: Vec<Written>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub rows: usize,
    /// Rows finished earlier whose outputs verified.
    pub skipped: usize,
    pub done: usize,
    pub failed: usize,
    /// Rows left when a stop was asked for.
    pub not_run: usize,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> WorkflowError + '_ {
    move |error| WorkflowError::Io {
        path: path.into(),
        error,
    }
}

/// Reads a JSONL file (one object per line) or a CSV file (a header of
/// input names), by extension; at most `max_rows` rows.
pub fn read_rows(path: &Path, max_rows: usize) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let too_many =
        || WorkflowError::Limit(format!("{}: more than {max_rows} rows", path.display()));
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut rows = Vec::new();
    if is_csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| WorkflowError::Input {
                name: "batch".into(),
                reason: format!("{}: {e}", path.display()),
            })?
            .clone();
        for (n, record) in reader.records().enumerate() {
            let record = record.map_err(|e| WorkflowError::Input {
                name: "batch".into(),
                reason: format!("{} row {}: {e}", path.display(), n + 1),
            })?;
            if rows.len() == max_rows {
                return Err(too_many());
            }
            rows.push(
                header
                    .iter()
                    .zip(record.iter())
                    .map(|(k, v)| (k.to_string(), Cell::Text(v.to_string())))
                    .collect(),
            );
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let object: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(line).map_err(|e| WorkflowError::Input {
                    name: "batch".into(),
                    reason: format!("{} line {}: {e}", path.display(), n + 1),
                })?;
            if rows.len() == max_rows {
                return Err(too_many());
            }
            rows.push(
                object
                    .into_iter()
                    .map(|(k, v)| (k, Cell::Json(v)))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// The rows finished earlier whose outputs exist and verify, by row.
fn finished_rows(manifest: &Path) -> BTreeMap<usize, ManifestLine> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return BTreeMap::new();
    };
    let mut last: BTreeMap<usize, ManifestLine> = BTreeMap::new();
    // A line cut short by a kill does not parse and is dropped.
    for line in text
        .lines()
        .filter_map(|l| serde_json::from_str::<ManifestLine>(l).ok())
    {
        last.insert(line.row, line);
    }
    last.retain(|_, l| {
        l.status == "ok"
            && l.outputs
                .iter()
                .all(|w| pipelines::pack::sha256_file(&w.path).is_ok_and(|h| h == w.sha256))
    });
    last
}

fn bind_row(wf: &Workflow, row: &Row, base: &Path) -> Result<BTreeMap<String, Value>> {
    let mut given = BTreeMap::new();
    for (name, cell) in row {
        let Some(input) = wf.inputs.get(name) else {
            let known: Vec<&String> = wf.inputs.keys().collect();
            return Err(WorkflowError::Input {
                name: name.clone(),
                reason: format!("the workflow has no such input (inputs: {known:?})"),
            });
        };
        let value = match cell {
            Cell::Json(v) => json_input(name, v, input.ty, base)?,
            Cell::Text(t) => parse_input(name, t, input.ty, base)?,
        };
        given.insert(name.clone(), value);
    }
    bind_inputs(wf, given)
}

/// Renders every row not already finished; `stop` set (Ctrl-C) lets rows
/// in flight finish and starts no more.
#[allow(clippy::too_many_arguments)]
pub fn render(
    wf: &Workflow,
    rows: &[Row],
    rows_dir: &Path,
    out: &Path,
    runner: Option<&Runner>,
    options: &RunOptions,
    jobs: usize,
    stop: &AtomicBool,
    on_row: &(dyn Fn(&ManifestLine) + Sync),
) -> Result<BatchReport> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let manifest_path = out.join(MANIFEST);
    let finished = finished_rows(&manifest_path);
    // One line per finished row, before anything else is appended.
    let compact: String = finished
        .values()
        .filter_map(|l| serde_json::to_string(l).ok())
        .map(|l| l + "\n")
        .collect();
    modalities::write_atomic(&manifest_path, compact.as_bytes())?;
    let manifest = Mutex::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&manifest_path)
            .map_err(io_error(&manifest_path))?,
    );
    let pending: Vec<usize> = (0..rows.len())
        .filter(|i| !finished.contains_key(i))
        .collect();
    let next = AtomicUsize::new(0);
    let (done, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let quiet = |_: &Event| {};
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Some(&row) = pending.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                let started = Instant::now();
                let dir: PathBuf = out.join("rows").join(format!("{row:05}"));
                let result = bind_row(wf, &rows[row], rows_dir)
                    .and_then(|inputs| run(wf, &inputs, runner, options, &quiet))
                    .and_then(|report| match report.failed.first() {
                        Some((step, reason)) => Err(WorkflowError::Input {
                            name: format!("step {step}"),
                            reason: reason.clone(),
                        }),
                        None => write_outputs(&dir, &report.outputs),
                    });
                let line = match result {
                    Ok(outputs) => {
                        done.fetch_add(1, Ordering::SeqCst);
                        ManifestLine {
                            row,
                            status: "ok".into(),
                            outputs,
                            seconds: started.elapsed().as_secs_f64(),
                            error: None,
                        }
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        ManifestLine {
                            row,
                            status: "failed".into(),
                            outputs: Vec::new(),
                            seconds: started.elapsed().as_secs_f64(),
                            error: Some(e.to_string()),
                        }
                    }
                };
                if let (Ok(text), Ok(mut file)) = (serde_json::to_string(&line), manifest.lock()) {
                    // One write of the whole line, then synced: a kill
                    // leaves whole lines and at most one cut-off last line.
                    let _ = file.write_all(format!("{text}\n").as_bytes());
                    let _ = file.sync_data();
                }
                on_row(&line);
            });
        }
    });
    let (done, failed) = (done.into_inner(), failed.into_inner());
    Ok(BatchReport {
        rows: rows.len(),
        skipped: finished.len(),
        done,
        failed,
        not_run: pending.len() - done - failed,
    })
}
