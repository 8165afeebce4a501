//! The node seam: typed ports, a parameter schema, and `run`.

use std::collections::BTreeMap;

use modalities::{Audio, Image, Media, Mesh, Video};
use pipelines::generate::CancelToken;
use pipelines::tasks::Runner;

use crate::types::{PortType, Value};

/// One input or output of a node.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: &'static str,
    pub ty: PortType,
    /// Inputs: the value when `with` leaves it out; none means required.
    pub default: Option<serde_json::Value>,
    /// Inputs that may be left out with no default.
    pub optional: bool,
    pub doc: &'static str,
}

impl Port {
    pub fn required(name: &'static str, ty: PortType, doc: &'static str) -> Port {
        Port {
            name,
            ty,
            default: None,
            optional: false,
            doc,
        }
    }
    pub fn optional(name: &'static str, ty: PortType, doc: &'static str) -> Port {
        Port {
            name,
            ty,
            default: None,
            optional: true,
            doc,
        }
    }
    pub fn with_default(
        name: &'static str,
        ty: PortType,
        default: serde_json::Value,
        doc: &'static str,
    ) -> Port {
        Port {
            name,
            ty,
            default: Some(default),
            optional: false,
            doc,
        }
    }
    /// An output port.
    pub fn output(name: &'static str, ty: PortType, doc: &'static str) -> Port {
        Port::required(name, ty, doc)
    }
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: &'static str,
    pub doc: &'static str,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    /// Runs a task of the model pack (so it needs one, and its digest keys the cache).
    pub uses_pack: bool,
}

/// What a running step can reach.
pub struct StepContext<'a> {
    pub runner: Option<&'a Runner>,
    /// The step's seed: the run's seed mixed with the step's id (and element).
    pub seed: u64,
    /// Reports progress: `k` of `n` done.
    pub progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Set when the run is cancelled; long steps stop early.
    pub cancel: &'a CancelToken,
}

/// A node: one file implements it, one line in `nodes::REGISTRY` lists it.
pub trait Node: Send + Sync {
    fn spec(&self) -> NodeSpec;
    fn run(&self, ctx: &StepContext, inputs: &Inputs) -> Result<Outputs, String>;
}

pub type Outputs = BTreeMap<String, Value>;

/// A step's resolved inputs, with typed getters (validation has checked
/// the types, so a mismatch here is a bug reported as an error).
#[derive(Debug, Clone, Default)]
pub struct Inputs(pub BTreeMap<String, Value>);

impl Inputs {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
    fn need(&self, name: &str) -> Result<&Value, String> {
        self.0
            .get(name)
            .ok_or_else(|| format!("input {name} is missing"))
    }
    pub fn text(&self, name: &str) -> Result<String, String> {
        match self.need(name)? {
            Value::Text(s) => Ok(s.clone()),
            other => other.as_text().ok_or_else(|| format!("{name}: not text")),
        }
    }
    pub fn opt_text(&self, name: &str) -> Result<Option<String>, String> {
        self.0.get(name).map(|_| self.text(name)).transpose()
    }
    pub fn number(&self, name: &str) -> Result<f64, String> {
        match self.need(name)? {
            Value::Number(n) => Ok(*n),
            Value::Integer(n) => Ok(*n as f64),
            _ => Err(format!("{name}: not a number")),
        }
    }
    pub fn opt_number(&self, name: &str) -> Result<Option<f64>, String> {
        self.0.get(name).map(|_| self.number(name)).transpose()
    }
    pub fn integer(&self, name: &str) -> Result<i64, String> {
        match self.need(name)? {
            Value::Integer(n) => Ok(*n),
            _ => Err(format!("{name}: not an integer")),
        }
    }
    pub fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.need(name)? {
            Value::Boolean(b) => Ok(*b),
            _ => Err(format!("{name}: not a boolean")),
        }
    }
    pub fn list(&self, name: &str) -> Result<&[Value], String> {
        match self.need(name)? {
            Value::List(items) => Ok(items),
            _ => Err(format!("{name}: not a list")),
        }
    }
    pub fn media(&self, name: &str) -> Result<&Media, String> {
        match self.need(name)? {
            Value::Media(m) => Ok(m),
            _ => Err(format!("{name}: not media")),
        }
    }
    pub fn image(&self, name: &str) -> Result<&Image, String> {
        as_image(self.media(name)?, name)
    }
    pub fn opt_image(&self, name: &str) -> Result<Option<&Image>, String> {
        self.0.get(name).map(|_| self.image(name)).transpose()
    }
    pub fn audio(&self, name: &str) -> Result<&Audio, String> {
        as_audio(self.media(name)?, name)
    }
    pub fn video(&self, name: &str) -> Result<&Video, String> {
        match self.media(name)? {
            Media::Video(v) => Ok(v),
            _ => Err(format!("{name}: not video")),
        }
    }
    pub fn mesh(&self, name: &str) -> Result<&Mesh, String> {
        match self.media(name)? {
            Media::Mesh(m) => Ok(m),
            _ => Err(format!("{name}: not a mesh")),
        }
    }
}

pub fn as_image<'a>(m: &'a Media, name: &str) -> Result<&'a Image, String> {
    match m {
        Media::Image(i) => Ok(i),
        _ => Err(format!("{name}: not an image")),
    }
}

pub fn as_audio<'a>(m: &'a Media, name: &str) -> Result<&'a Audio, String> {
    match m {
        Media::Audio(a) => Ok(a),
        _ => Err(format!("{name}: not audio")),
    }
}

/// A node spec (most nodes take inputs and give outputs and need no pack).
pub fn spec(
    name: &'static str,
    doc: &'static str,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
) -> NodeSpec {
    NodeSpec {
        name,
        doc,
        inputs,
        outputs,
        uses_pack: false,
    }
}

/// An optional integer input.
impl Inputs {
    pub fn opt_integer(&self, name: &str) -> Result<Option<i64>, String> {
        self.0.get(name).map(|_| self.integer(name)).transpose()
    }
}

/// One media output.
pub fn media_output(name: &str, media: Media) -> Outputs {
    output(name, Value::Media(media))
}

/// One output.
pub fn output(name: &str, value: Value) -> Outputs {
    BTreeMap::from([(name.to_string(), value)])
}

/// Runs a node on inputs, with its defaults filled in (for node tests).
#[cfg(test)]
pub fn run_node(node: &dyn Node, given: Vec<(&str, Value)>) -> Result<Outputs, String> {
    let progress = |_, _| {};
    let ctx = StepContext {
        runner: None,
        seed: 0,
        progress: &progress,
        cancel: &CancelToken::new(),
    };
    let mut map: BTreeMap<String, Value> =
        given.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for p in node.spec().inputs {
        if let (false, Some(d)) = (map.contains_key(p.name), &p.default) {
            map.insert(p.name.into(), Value::from_literal(d, p.ty)?);
        }
    }
    node.run(&ctx, &Inputs(map))
}
