//! `anyforge run` and `anyforge workflow validate|schema|nodes`.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use pipelines::generate::EngineConfig;
use pipelines::pack::Pack;
use pipelines::tasks::Runner;
use serde_json::json;
use workflows::{Event, RunOptions, Workflow, WorkflowLimits};

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Check a workflow file; every problem is listed with its line and column.
    Validate { file: PathBuf },
    /// Print the JSON Schema of the workflow format (for editors).
    Schema,
    /// List every node with its ports, types and defaults.
    Nodes {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// An input: `name=value` (media inputs take a file path; lists take JSON).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Where outputs are written (and nowhere else).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    exec: ExecFlags,
}

/// How a workflow runs: shared by `run` and `render`.
#[derive(Args)]
pub struct ExecFlags {
    /// A model pack folder (default: $ANYFORGE_PACK, else the default pack).
    #[arg(long, env = "ANYFORGE_PACK")]
    pack: Option<PathBuf>,
    /// The run's seed; each step's seed mixes it with the step's id.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The step cache folder (default: ~/.cache/anyforge/steps).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Run every step, reading and writing no cache.
    #[arg(long)]
    no_cache: bool,
    /// Limits as a JSON file (see `workflows::WorkflowLimits`).
    #[arg(long)]
    limits: Option<PathBuf>,
}

impl ExecFlags {
    /// The limits and the checked workflow.
    fn load(&self, workflow: &Path) -> Result<(WorkflowLimits, Workflow)> {
        let limits = limits(self.limits.as_deref())?;
        let wf =
            workflows::load(workflow, &limits).with_context(|| workflow.display().to_string())?;
        Ok((limits, wf))
    }

    /// The run options and, when a step needs one, the pack's runner.
    fn start(
        &self,
        wf: &Workflow,
        limits: &WorkflowLimits,
    ) -> Result<(RunOptions, Option<Runner>)> {
        let runner = runner_for(wf, self.pack.as_deref())?;
        let options = RunOptions {
            seed: self.seed,
            cache_dir: (!self.no_cache).then(|| self.cache.clone().unwrap_or_else(default_cache)),
            max_concurrent: limits.max_concurrent,
            max_fan_out: limits.max_fan_out,
            cancel: pipelines::generate::CancelToken::new(),
        };
        Ok((options, runner))
    }
}

fn limits(path: Option<&Path>) -> Result<WorkflowLimits> {
    match path {
        None => Ok(WorkflowLimits::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            serde_json::from_str(&text).with_context(|| format!("{}: invalid limits", p.display()))
        }
    }
}

pub fn command(command: WorkflowCommand) -> Result<()> {
    match command {
        WorkflowCommand::Validate { file } => {
            let wf = workflows::load(&file, &WorkflowLimits::default())
                .with_context(|| file.display().to_string())?;
            println!("{}: ok, {} steps", file.display(), wf.steps.len());
            Ok(())
        }
        WorkflowCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&workflows::schema())?);
            Ok(())
        }
        WorkflowCommand::Nodes { json } => {
            let specs: Vec<_> = workflows::nodes::REGISTRY
                .iter()
                .map(|make| make().spec())
                .collect();
            if json {
                let list: Vec<_> = specs
                    .iter()
                    .map(|s| {
                        let ports = |ps: &[workflows::node::Port]| -> Vec<serde_json::Value> {
                            ps.iter()
                                .map(|p| json!({"name": p.name, "type": p.ty.to_string(), "default": p.default, "optional": p.optional, "doc": p.doc}))
                                .collect()
                        };
                        json!({"name": s.name, "doc": s.doc, "inputs": ports(&s.inputs), "outputs": ports(&s.outputs)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            for s in specs {
                println!("{}  {}", s.name, s.doc);
                for p in &s.inputs {
                    let default = match (&p.default, p.optional) {
                        (Some(d), _) => format!(" = {d}"),
                        (None, true) => " (optional)".into(),
                        (None, false) => String::new(),
                    };
                    println!("    in  {}: {}{default}  {}", p.name, p.ty, p.doc);
                }
                for p in &s.outputs {
                    println!("    out {}: {}  {}", p.name, p.ty, p.doc);
                }
            }
            Ok(())
        }
    }
}

fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("anyforge").join("steps")
}

fn print_event(event: &Event) {
    match event {
        Event::Queued { .. } => {}
        Event::Started { step } => eprintln!("[{step}] started"),
        Event::Progress { step, done, total } => eprintln!("[{step}] {done}/{total}"),
        Event::Cached { step } => eprintln!("[{step}] cached"),
        Event::Finished { step, seconds } => eprintln!("[{step}] done in {seconds:.2} s"),
        Event::Failed { step, reason } => eprintln!("[{step}] failed: {reason}"),
    }
}

/// A live bar per step on a terminal; plain lines otherwise (logs, pipes).
struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        Mutex<HashMap<String, indicatif::ProgressBar>>,
    )>,
}

impl Progress {
    fn new() -> Progress {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (indicatif::MultiProgress::new(), Mutex::new(HashMap::new())));
        Progress { bars }
    }

    fn on(&self, event: &Event) {
        let Some((multi, bars)) = &self.bars else {
            return print_event(event);
        };
        let Ok(mut bars) = bars.lock() else { return };
        let step = match event {
            Event::Queued { step }
            | Event::Started { step }
            | Event::Progress { step, .. }
            | Event::Cached { step }
            | Event::Finished { step, .. }
            | Event::Failed { step, .. } => step.clone(),
        };
        let bar = bars.entry(step.clone()).or_insert_with(|| {
            let bar = multi.add(indicatif::ProgressBar::new(1));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:24}] {pos}/{len} {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(step);
            bar.set_message("queued");
            bar
        });
        match event {
            Event::Queued { .. } => {}
            Event::Started { .. } => bar.set_message("running"),
            Event::Progress { done, total, .. } => {
                bar.set_length(*total);
                bar.set_position(*done);
            }
            Event::Cached { .. } => bar.set_message("cached"),
            Event::Finished { seconds, .. } => {
                bar.set_position(bar.length().unwrap_or(1));
                bar.finish_with_message(format!("done in {seconds:.2} s"));
            }
            Event::Failed { reason, .. } => bar.abandon_with_message(format!("failed: {reason}")),
        }
    }
}

#[derive(Args)]
pub struct RenderArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Rows of inputs: JSONL (one object per line) or CSV (a header of
    /// input names). Media paths are relative to this file's folder.
    #[arg(long)]
    batch: PathBuf,
    /// Rows rendered at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Outputs go to DIR/rows/NNNNN/, the manifest to DIR/manifest.jsonl.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    exec: ExecFlags,
}

fn runner_for(wf: &Workflow, pack_dir: Option<&Path>) -> Result<Option<Runner>> {
    if !wf.uses_pack() {
        return Ok(None);
    }
    let dir = match pack_dir {
        Some(dir) => dir.to_path_buf(),
        None => crate::assets::default_pack()?,
    };
    let pack = Pack::load(&dir).with_context(|| format!("pack {}", dir.display()))?;
    Ok(Some(Runner::new(Arc::new(pack), EngineConfig::default())))
}

pub fn render(args: RenderArgs) -> Result<()> {
    let (limits, wf) = args.exec.load(&args.workflow)?;
    let rows = workflows::batch::read_rows(&args.batch, limits.max_batch_rows)?;
    let (options, runner) = args.exec.start(&wf, &limits)?;
    // The first Ctrl-C lets rows in flight finish; a second one exits.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping after the rows in flight (Ctrl-C again to quit now)");
    });
    let rows_dir = args.batch.parent().unwrap_or(Path::new("."));
    let total = rows.len();
    let report = workflows::batch::render(
        &wf,
        &rows,
        rows_dir,
        &args.out,
        runner.as_ref(),
        &options,
        args.jobs,
        &stop,
        &|line| match &line.error {
            None => eprintln!("row {} of {total}: ok in {:.2} s", line.row, line.seconds),
            Some(e) => eprintln!("row {} of {total}: failed: {e}", line.row),
        },
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.failed > 0 {
        bail!(
            "{} row(s) failed (see {})",
            report.failed,
            args.out.join(workflows::batch::MANIFEST).display()
        );
    }
    if report.not_run > 0 {
        bail!(
            "stopped with {} row(s) left; run the same command to resume",
            report.not_run
        );
    }
    Ok(())
}

pub fn run(args: RunArgs) -> Result<()> {
    let (limits, wf) = args.exec.load(&args.workflow)?;
    let mut given = BTreeMap::new();
    for set in &args.set {
        let (name, raw) = set
            .split_once('=')
            .with_context(|| format!("--set {set:?} is not NAME=VALUE"))?;
        let Some(input) = wf.inputs.get(name) else {
            let known: Vec<&String> = wf.inputs.keys().collect();
            bail!("--set {name}: the workflow has no such input (inputs: {known:?})");
        };
        given.insert(
            name.to_string(),
            workflows::io::parse_input(name, raw, input.ty, Path::new("."))?,
        );
    }
    let inputs = workflows::run::bind_inputs(&wf, given)?;
    let (options, runner) = args.exec.start(&wf, &limits)?;
    let started = std::time::Instant::now();
    let progress = Progress::new();
    let report = workflows::run::run(&wf, &inputs, runner.as_ref(), &options, &|e| progress.on(e))?;
    let written = workflows::io::write_outputs(&args.out, &report.outputs)?;
    let summary = json!({
        "workflow": wf.name,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "executed": report.executed,
        "cached": report.cached,
        "failed": report.failed.iter().map(|(s, r)| json!({"step": s, "reason": r})).collect::<Vec<_>>(),
        "outputs": written,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if !report.failed.is_empty() {
        bail!("{} step(s) failed", report.failed.len());
    }
    Ok(())
}
