//! `anyforge run` and `anyforge workflow validate|schema|nodes`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use modalities::{Kind, Sampling};
use pipelines::generate::EngineConfig;
use pipelines::pack::{self, Pack};
use pipelines::tasks::Runner;
use serde_json::json;
use workflows::types::Base;
use workflows::{Event, PortType, RunOptions, Value, Workflow, WorkflowLimits};

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
    /// A model pack folder (default: $ANYFORGE_PACK, else the default pack).
    #[arg(long)]
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

/// A `--set` value as the input's type.
fn parse_input(name: &str, raw: &str, ty: PortType) -> Result<Value> {
    if ty.is_media() && !ty.list {
        let media = modalities::read_media(
            Path::new(raw),
            Sampling::All,
            &modalities::Limits::default(),
        )
        .with_context(|| format!("--set {name}: {raw}"))?;
        return Ok(Value::Media(media));
    }
    let literal = match ty.base {
        Base::Text if !ty.list => serde_json::Value::String(raw.into()),
        _ => serde_json::from_str(raw)
            .with_context(|| format!("--set {name}: {raw:?} is not {ty}"))?,
    };
    Value::from_literal(&literal, ty).map_err(|e| anyhow::anyhow!("--set {name}: {e}"))
}

fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("anyforge").join("steps")
}

fn extension(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "txt",
        Kind::Image => "png",
        Kind::Audio => "wav",
        Kind::Video => "mp4",
        Kind::Mesh => "glb",
    }
}

/// Writes one output value under `dir` (file names were checked at
/// validation: no folders, no `..`).
fn write_output(
    dir: &Path,
    file: &str,
    value: &Value,
    written: &mut Vec<serde_json::Value>,
) -> Result<()> {
    match value {
        Value::List(items) => {
            let (stem, ext) = file
                .rsplit_once('.')
                .map_or((file, None), |(s, e)| (s, Some(e)));
            for (i, item) in items.iter().enumerate() {
                let name = match ext {
                    Some(e) => format!("{stem}-{i}.{e}"),
                    None => format!("{stem}-{i}"),
                };
                write_output(dir, &name, item, written)?;
            }
            Ok(())
        }
        Value::Media(m) => {
            let name = if Path::new(file).extension().is_some() {
                file.to_string()
            } else {
                format!("{file}.{}", extension(m.kind()))
            };
            let path = dir.join(&name);
            m.write(&path).with_context(|| path.display().to_string())?;
            written.push(json!({"path": path, "sha256": pack::sha256_file(&path)?}));
            Ok(())
        }
        other => {
            let text = other.as_text().unwrap_or_default();
            let name = if Path::new(file).extension().is_some() {
                file.to_string()
            } else {
                format!("{file}.txt")
            };
            let path = dir.join(&name);
            modalities::write_atomic(&path, text.as_bytes())?;
            written.push(json!({"path": path, "sha256": pack::sha256_file(&path)?}));
            Ok(())
        }
    }
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

pub fn run(args: RunArgs) -> Result<()> {
    let limits = limits(args.limits.as_deref())?;
    let wf: Workflow = workflows::load(&args.workflow, &limits)
        .with_context(|| args.workflow.display().to_string())?;
    let mut given = BTreeMap::new();
    for set in &args.set {
        let (name, raw) = set
            .split_once('=')
            .with_context(|| format!("--set {set:?} is not NAME=VALUE"))?;
        let Some(input) = wf.inputs.get(name) else {
            let known: Vec<&String> = wf.inputs.keys().collect();
            bail!("--set {name}: the workflow has no such input (inputs: {known:?})");
        };
        given.insert(name.to_string(), parse_input(name, raw, input.ty)?);
    }
    let inputs = workflows::run::bind_inputs(&wf, given)?;
    let runner = if wf.uses_pack() {
        let dir = args.pack.clone().unwrap_or_else(pack::default_dir);
        let pack = Pack::load(&dir).with_context(|| format!("pack {}", dir.display()))?;
        Some(Runner::new(Arc::new(pack), EngineConfig::default()))
    } else {
        None
    };
    let options = RunOptions {
        seed: args.seed,
        cache_dir: (!args.no_cache).then(|| args.cache.clone().unwrap_or_else(default_cache)),
        max_concurrent: limits.max_concurrent,
        max_fan_out: limits.max_fan_out,
    };
    let started = std::time::Instant::now();
    let report = workflows::run::run(&wf, &inputs, runner.as_ref(), &options, &print_event)?;
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let mut written = Vec::new();
    for (file, value) in &report.outputs {
        write_output(&args.out, file, value, &mut written)?;
    }
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
