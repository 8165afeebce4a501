//! Running a checked workflow: independent steps at once (bounded), each
//! result cached on disk by content, progress as events, and a failed step
//! failing only what depends on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use pipelines::generate::CancelToken;
use pipelines::tasks::Runner;
use sha2::{Digest, Sha256};

use crate::error::{Result, WorkflowError};
use crate::expr::{Piece, Ref};
use crate::node::{Inputs, Outputs, StepContext};
use crate::store;
use crate::types::Value;
use crate::validate::{Binding, Step, Workflow};

/// Bump when a node's behaviour changes, so old cache entries stop matching.
const CACHE_VERSION: &str = "anyforge-step-cache-1";

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Queued {
        step: String,
    },
    Started {
        step: String,
    },
    Progress {
        step: String,
        done: u64,
        total: u64,
    },
    /// Every result of the step came from the cache.
    Cached {
        step: String,
    },
    Finished {
        step: String,
        seconds: f64,
    },
    Failed {
        step: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub seed: u64,
    /// Where step results are kept between runs; none turns caching off.
    pub cache_dir: Option<PathBuf>,
    pub max_concurrent: usize,
    pub max_fan_out: usize,
    /// Stops the run: running tasks leave the engine at their next step,
    /// steps not yet started fail as cancelled.
    pub cancel: CancelToken,
}

impl Default for RunOptions {
    fn default() -> Self {
        let limits = crate::WorkflowLimits::default();
        RunOptions {
            seed: 0,
            cache_dir: None,
            max_concurrent: limits.max_concurrent,
            max_fan_out: limits.max_fan_out,
            cancel: CancelToken::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The workflow's outputs by file name (those whose steps succeeded).
    pub outputs: BTreeMap<String, Value>,
    /// Steps that ran their node (at least one element not from the cache).
    pub executed: Vec<String>,
    pub cached: Vec<String>,
    /// Failed steps and why (a step whose input failed names it).
    pub failed: Vec<(String, String)>,
    /// The run was cancelled before every step finished.
    pub cancelled: bool,
}

/// Checks the caller's inputs against the declared ones, filling defaults.
pub fn bind_inputs(
    wf: &Workflow,
    mut given: BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>> {
    if let Some(name) = given.keys().find(|k| !wf.inputs.contains_key(*k)) {
        let known: Vec<&String> = wf.inputs.keys().collect();
        return Err(WorkflowError::Input {
            name: name.clone(),
            reason: format!("the workflow has no such input (inputs: {known:?})"),
        });
    }
    let mut out = BTreeMap::new();
    for (name, input) in &wf.inputs {
        let value = match given.remove(name).or_else(|| input.default.clone()) {
            Some(v) => v,
            None if input.optional => continue,
            None => {
                return Err(WorkflowError::Input {
                    name: name.clone(),
                    reason: format!("required ({})", input.ty),
                })
            }
        };
        if !(input.ty.accepts(value.port_type())
            || value == Value::List(Vec::new()) && input.ty.list)
        {
            return Err(WorkflowError::Input {
                name: name.clone(),
                reason: format!("expected {}, got {}", input.ty, value.port_type()),
            });
        }
        out.insert(name.clone(), value);
    }
    Ok(out)
}

struct Scope<'a> {
    inputs: &'a BTreeMap<String, Value>,
    /// Finished steps' outputs, shared (media are not copied per reader).
    results: &'a BTreeMap<String, Arc<Outputs>>,
    item: Option<(&'a Value, usize)>,
}

impl Scope<'_> {
    fn get(&self, r: &Ref) -> std::result::Result<Value, String> {
        match r {
            Ref::Input(n) => self
                .inputs
                .get(n)
                .cloned()
                .ok_or_else(|| format!("input {n} is missing")),
            Ref::Step { step, port } => self
                .results
                .get(step)
                .and_then(|o| o.get(port))
                .cloned()
                .ok_or_else(|| format!("{r} has no value")),
            Ref::Item => self
                .item
                .map(|(v, _)| v.clone())
                .ok_or_else(|| "no item".into()),
            Ref::Index => self
                .item
                .map(|(_, i)| Value::Integer(i as i64))
                .ok_or_else(|| "no index".into()),
        }
    }

    fn resolve(&self, b: &Binding) -> std::result::Result<Value, String> {
        match b {
            Binding::Literal(v) => Ok(v.clone()),
            Binding::Ref(r) => self.get(r),
            Binding::Text(pieces) => {
                let mut text = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => text.push_str(t),
                        Piece::Ref(r) => text.push_str(
                            &self
                                .get(r)?
                                .as_text()
                                .ok_or_else(|| format!("{r} is not text"))?,
                        ),
                    }
                }
                Ok(Value::Text(text))
            }
            Binding::List(items) => items
                .iter()
                .map(|i| self.resolve(i))
                .collect::<std::result::Result<_, _>>()
                .map(Value::List),
        }
    }
}

/// A step's seed: the run's seed mixed with the step's id and element.
fn step_seed(run_seed: u64, id: &str, element: usize) -> u64 {
    let mut h = Sha256::new();
    h.update(run_seed.to_le_bytes());
    h.update(id.as_bytes());
    h.update((element as u64).to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or([0; 8])) >> 11
}

struct Shared<'a> {
    runner: Option<&'a Runner>,
    pack_digest: String,
    options: &'a RunOptions,
    on_event: &'a (dyn Fn(&Event) + Sync),
}

impl Shared<'_> {
    fn cache_key(&self, step: &Step, inputs: &Inputs, seed: u64) -> String {
        let mut h = Sha256::new();
        h.update(CACHE_VERSION.as_bytes());
        h.update(step.spec.name.as_bytes());
        for (name, value) in &inputs.0 {
            h.update(name.as_bytes());
            value.digest(&mut h);
        }
        if step.spec.uses_pack {
            h.update(self.pack_digest.as_bytes());
            h.update(seed.to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One invocation of the node, through the cache. True when cached.
    fn invoke(
        &self,
        step: &Step,
        inputs: &Inputs,
        seed: u64,
    ) -> std::result::Result<(Outputs, bool), String> {
        let key = self.cache_key(step, inputs, seed);
        let path = self
            .options
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{key}.step")));
        if let Some(path) = &path {
            if let Ok(bytes) = std::fs::read(path) {
                if let Ok(outputs) = store::decode(&bytes) {
                    return Ok((outputs, true));
                }
            }
        }
        let progress = |done, total| {
            (self.on_event)(&Event::Progress {
                step: step.id.clone(),
                done,
                total,
            });
        };
        let ctx = StepContext {
            runner: self.runner,
            seed,
            progress: &progress,
            cancel: &self.options.cancel,
        };
        let outputs = step.node.run(&ctx, inputs)?;
        if let Some(path) = &path {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // A cache that cannot be written only costs a re-run later.
            let _ = modalities::write_atomic(path, &store::encode(&outputs));
        }
        Ok((outputs, false))
    }

    /// Runs a step (each element of its `for_each` list). True when every
    /// result came from the cache.
    fn run_step(
        &self,
        step: &Step,
        inputs: &BTreeMap<String, Value>,
        results: &BTreeMap<String, Arc<Outputs>>,
    ) -> std::result::Result<(Outputs, bool), String> {
        let scope = Scope {
            inputs,
            results,
            item: None,
        };
        let resolve = |scope: &Scope| -> std::result::Result<Inputs, String> {
            let mut resolved = BTreeMap::new();
            for (k, b) in &step.with {
                // An optional workflow input left out leaves the parameter out.
                if let Binding::Ref(Ref::Input(name)) = b {
                    if !scope.inputs.contains_key(name) {
                        continue;
                    }
                }
                resolved.insert(k.clone(), scope.resolve(b)?);
            }
            Ok(Inputs(resolved))
        };
        let Some(list) = &step.for_each else {
            return self.invoke(
                step,
                &resolve(&scope)?,
                step_seed(self.options.seed, &step.id, 0),
            );
        };
        let Value::List(items) = scope.get(list)? else {
            return Err(format!("for_each: {list} is not a list"));
        };
        if items.len() > self.options.max_fan_out {
            return Err(format!(
                "for_each: {} elements, over the limit of {}",
                items.len(),
                self.options.max_fan_out
            ));
        }
        let mut lists: BTreeMap<String, Vec<Value>> = step
            .spec
            .outputs
            .iter()
            .map(|p| (p.name.to_string(), Vec::new()))
            .collect();
        let mut all_cached = true;
        for (i, item) in items.iter().enumerate() {
            if self.options.cancel.is_cancelled() {
                return Err("cancelled".into());
            }
            let scope = Scope {
                inputs,
                results,
                item: Some((item, i)),
            };
            let (outputs, cached) = self.invoke(
                step,
                &resolve(&scope)?,
                step_seed(self.options.seed, &step.id, i),
            )?;
            all_cached &= cached;
            for (port, value) in outputs {
                lists.entry(port).or_default().push(value);
            }
            (self.on_event)(&Event::Progress {
                step: step.id.clone(),
                done: i as u64 + 1,
                total: items.len() as u64,
            });
        }
        Ok((
            lists
                .into_iter()
                .map(|(k, v)| (k, Value::List(v)))
                .collect(),
            all_cached,
        ))
    }
}

/// Runs a checked workflow on bound inputs (see [`bind_inputs`]).
pub fn run(
    wf: &Workflow,
    inputs: &BTreeMap<String, Value>,
    runner: Option<&Runner>,
    options: &RunOptions,
    on_event: &(dyn Fn(&Event) + Sync),
) -> Result<RunReport> {
    if wf.uses_pack() && runner.is_none() {
        return Err(WorkflowError::Input {
            name: "pack".into(),
            reason: "the workflow runs generation tasks and needs a model pack".into(),
        });
    }
    let pack_digest = match runner {
        Some(r) => {
            let path = r.pack().dir.join(pipelines::pack::MANIFEST);
            pipelines::pack::sha256_file(&path)
                .map_err(|error| WorkflowError::Io { path, error })?
        }
        None => String::new(),
    };
    let shared = Shared {
        runner,
        pack_digest,
        options,
        on_event,
    };
    let mut report = RunReport::default();
    let mut results: BTreeMap<String, Arc<Outputs>> = BTreeMap::new();
    // Per step: not started, running, or done (ok or failed).
    let n = wf.steps.len();
    let mut started = vec![false; n];
    let mut done: Vec<Option<bool>> = vec![None; n];
    for s in &wf.steps {
        on_event(&Event::Queued { step: s.id.clone() });
    }
    std::thread::scope(|scope| {
        let (tx, rx) =
            mpsc::channel::<(usize, std::result::Result<(Outputs, bool), String>, f64)>();
        let mut running = 0usize;
        loop {
            for &i in &wf.order {
                let step = &wf.steps[i];
                if started[i] || running >= options.max_concurrent.max(1) {
                    continue;
                }
                if step.deps.iter().any(|&d| done[d].is_none()) {
                    continue;
                }
                started[i] = true;
                let failed_input = step.deps.iter().find(|&&d| done[d] == Some(false));
                if options.cancel.is_cancelled() || failed_input.is_some() {
                    let reason = match failed_input {
                        _ if options.cancel.is_cancelled() => "cancelled".to_string(),
                        Some(&d) => format!("its input step {:?} failed", wf.steps[d].id),
                        None => unreachable!("checked above"),
                    };
                    on_event(&Event::Failed {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    });
                    report.failed.push((step.id.clone(), reason));
                    done[i] = Some(false);
                    continue;
                }
                on_event(&Event::Started {
                    step: step.id.clone(),
                });
                let tx = tx.clone();
                let snapshot: BTreeMap<String, Arc<Outputs>> = step
                    .deps
                    .iter()
                    .filter_map(|&d| {
                        let id = &wf.steps[d].id;
                        results.get(id).map(|o| (id.clone(), Arc::clone(o)))
                    })
                    .collect();
                let shared = &shared;
                running += 1;
                scope.spawn(move || {
                    let t = Instant::now();
                    let result = shared.run_step(step, inputs, &snapshot);
                    let _ = tx.send((i, result, t.elapsed().as_secs_f64()));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((i, result, seconds)) = rx.recv() else {
                break;
            };
            running -= 1;
            let id = wf.steps[i].id.clone();
            match result {
                Ok((outputs, cached)) => {
                    if cached {
                        on_event(&Event::Cached { step: id.clone() });
                        report.cached.push(id.clone());
                    } else {
                        report.executed.push(id.clone());
                    }
                    on_event(&Event::Finished {
                        step: id.clone(),
                        seconds,
                    });
                    results.insert(id, Arc::new(outputs));
                    done[i] = Some(true);
                }
                Err(reason) => {
                    on_event(&Event::Failed {
                        step: id.clone(),
                        reason: reason.clone(),
                    });
                    report.failed.push((id, reason));
                    done[i] = Some(false);
                }
            }
        }
    });
    let scope = Scope {
        inputs,
        results: &results,
        item: None,
    };
    for out in &wf.outputs {
        if let Ok(value) = scope.get(&out.value) {
            report.outputs.insert(out.file.clone(), value);
        }
    }
    report.cancelled = options.cancel.is_cancelled() && !report.failed.is_empty();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{load_str, WorkflowLimits};

    #[test]
    fn a_failed_step_fails_only_what_depends_on_it() {
        let wf = load_str(
            r##"name: partial
inputs:
  text: { type: text, default: "One. Two." }
steps:
  - id: bad
    uses: text.split
    with: { text: "${{ inputs.text }}", by: word }
  - id: after_bad
    uses: text.join
    with: { items: "${{ steps.bad.outputs.items }}" }
  - id: good
    uses: text.normalize
    with: { text: "${{ inputs.text }}" }
  - id: each
    uses: text.normalize
    for_each: "${{ steps.split.outputs.items }}"
    with: { text: "#${{ index }} ${{ item }}" }
  - id: split
    uses: text.split
    with: { text: "${{ inputs.text }}" }
outputs:
  good.txt: "${{ steps.good.outputs.text }}"
  lost.txt: "${{ steps.after_bad.outputs.text }}"
  each.txt: "${{ steps.each.outputs.text }}"
"##,
            &WorkflowLimits::default(),
        )
        .unwrap();
        let inputs = bind_inputs(&wf, BTreeMap::new()).unwrap();
        let events = std::sync::Mutex::new(Vec::new());
        let report = run(&wf, &inputs, None, &RunOptions::default(), &|e| {
            events.lock().unwrap().push(e.clone())
        })
        .unwrap();
        let failed: Vec<&str> = report.failed.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(failed, vec!["bad", "after_bad"]);
        assert!(report.failed[1].1.contains("\"bad\" failed"));
        assert_eq!(
            report.outputs.get("good.txt"),
            Some(&Value::Text("One. Two.".into()))
        );
        assert!(!report.outputs.contains_key("lost.txt"));
        assert_eq!(
            report.outputs.get("each.txt"),
            Some(&Value::List(vec![
                Value::Text("#0 One.".into()),
                Value::Text("#1 Two.".into())
            ])),
            "for_each over a later-defined step, with item and index"
        );
        let events = events.into_inner().unwrap();
        assert!(events.contains(&Event::Progress {
            step: "each".into(),
            done: 2,
            total: 2
        }));

        let tight = RunOptions {
            max_fan_out: 1,
            ..RunOptions::default()
        };
        let report = run(&wf, &inputs, None, &tight, &|_| {}).unwrap();
        assert!(report
            .failed
            .iter()
            .any(|(s, r)| s == "each" && r.contains("over the limit of 1")));

        let cancelled = RunOptions::default();
        cancelled.cancel.cancel();
        let report = run(&wf, &inputs, None, &cancelled, &|_| {}).unwrap();
        assert!(report.cancelled);
        assert!(report.outputs.is_empty());
        assert_eq!(report.failed.len(), wf.steps.len());
        assert!(report.failed.iter().all(|(_, r)| r == "cancelled"));
    }
}
