//! From a parsed file to a checked graph: every node, parameter, type,
//! reference and edge is checked, and every problem is reported at once
//! with its line and column, before anything runs.

use std::collections::BTreeMap;

use petgraph::graphmap::DiGraphMap;

use crate::error::{Issue, Result, WorkflowError};
use crate::expr::{self, Piece, Ref};
use crate::node::{Node, NodeSpec};
use crate::nodes;
use crate::spec::{loc, Loc, WorkflowFile};
use crate::types::{Base, PortType, Value};

/// How a node input gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    Literal(Value),
    Ref(Ref),
    /// Text with references in it.
    Text(Vec<Piece>),
    List(Vec<Binding>),
}

pub struct Input {
    pub ty: PortType,
    pub default: Option<Value>,
    pub optional: bool,
}

pub struct Step {
    pub id: String,
    pub node: Box<dyn Node>,
    pub spec: NodeSpec,
    pub with: BTreeMap<String, Binding>,
    pub for_each: Option<Ref>,
    /// Steps this one reads from.
    pub deps: Vec<usize>,
    pub loc: Loc,
}

impl Step {
    /// The type of an output port, a list of it under `for_each`.
    pub fn output_type(&self, port: &str) -> Option<PortType> {
        let ty = self.spec.outputs.iter().find(|p| p.name == port)?.ty;
        Some(if self.for_each.is_some() {
            PortType::list_of(ty.base)
        } else {
            ty
        })
    }
}

pub struct Output {
    pub file: String,
    pub value: Ref,
    pub ty: PortType,
}

/// A checked workflow: steps in an order where each comes after what it reads.
pub struct Workflow {
    pub name: String,
    pub inputs: BTreeMap<String, Input>,
    pub steps: Vec<Step>,
    pub outputs: Vec<Output>,
    pub order: Vec<usize>,
}

impl Workflow {
    pub fn uses_pack(&self) -> bool {
        self.steps.iter().any(|s| s.spec.uses_pack)
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A plain file name inside the output folder: no folders, no `..`.
fn is_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']) && !s.starts_with('.')
}

struct Checker<'a> {
    issues: Vec<Issue>,
    inputs: &'a BTreeMap<String, Input>,
    /// Step id -> (index, node spec, has for_each).
    steps: BTreeMap<String, (usize, NodeSpec, bool)>,
}

impl Checker<'_> {
    fn issue(&mut self, loc: Loc, message: String) {
        self.issues.push(Issue { loc, message });
    }

    /// The type a reference yields, in a step with (or without) `for_each`
    /// over a list of `item` type.
    fn ref_type(&self, r: &Ref, item: Option<PortType>) -> Result<PortType, String> {
        match r {
            Ref::Input(name) => self.inputs.get(name).map(|i| i.ty).ok_or_else(|| {
                let known: Vec<&String> = self.inputs.keys().collect();
                format!("there is no input {name:?} (inputs: {known:?})")
            }),
            Ref::Step { step, port } => {
                let (_, spec, fan) = self
                    .steps
                    .get(step)
                    .ok_or_else(|| format!("there is no step {step:?}"))?;
                let out = spec
                    .outputs
                    .iter()
                    .find(|p| p.name == port)
                    .ok_or_else(|| {
                        let ports: Vec<&str> = spec.outputs.iter().map(|p| p.name).collect();
                        format!(
                            "step {step:?} ({}) has no output {port:?} (outputs: {ports:?})",
                            spec.name
                        )
                    })?;
                Ok(if *fan {
                    PortType::list_of(out.ty.base)
                } else {
                    out.ty
                })
            }
            Ref::Item => {
                item.ok_or_else(|| "`item` is only defined in a step with for_each".into())
            }
            Ref::Index => item
                .map(|_| PortType::one(Base::Integer))
                .ok_or_else(|| "`index` is only defined in a step with for_each".into()),
        }
    }

    /// A `with` value as a binding of type `ty`.
    fn binding(
        &self,
        v: &serde_json::Value,
        ty: PortType,
        item: Option<PortType>,
    ) -> Result<Binding, String> {
        match v {
            serde_json::Value::String(s) if s.contains("${{") => {
                let pieces = expr::parse(s)?;
                if let [Piece::Ref(r)] = pieces.as_slice() {
                    let from = self.ref_type(r, item)?;
                    if !ty.accepts(from) {
                        return Err(format!("takes {ty}, but {r} is {from}"));
                    }
                    return Ok(Binding::Ref(r.clone()));
                }
                if ty != PortType::one(Base::Text) {
                    return Err(format!("takes {ty}; text with references in it is text"));
                }
                for p in &pieces {
                    if let Piece::Ref(r) = p {
                        let from = self.ref_type(r, item)?;
                        if from.is_media() || from.list {
                            return Err(format!(
                                "{r} is {from}, which cannot be written into text"
                            ));
                        }
                    }
                }
                Ok(Binding::Text(pieces))
            }
            serde_json::Value::Array(items)
                if ty.list && items.iter().any(|i| i.to_string().contains("${{")) =>
            {
                items
                    .iter()
                    .map(|i| self.binding(i, ty.element(), item))
                    .collect::<Result<_, _>>()
                    .map(Binding::List)
            }
            literal => Value::from_literal(literal, ty).map(Binding::Literal),
        }
    }
}

/// Deps of a binding: the steps it reads.
fn refs<'b>(b: &'b Binding, out: &mut Vec<&'b Ref>) {
    match b {
        Binding::Literal(_) => {}
        Binding::Ref(r) => out.push(r),
        Binding::Text(pieces) => out.extend(pieces.iter().filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })),
        Binding::List(items) => items.iter().for_each(|i| refs(i, out)),
    }
}

pub fn validate(file: WorkflowFile) -> Result<Workflow> {
    let mut issues = Vec::new();
    let mut inputs = BTreeMap::new();
    for (name, spec) in &file.inputs {
        let at = spec.default.as_ref().map(loc).unwrap_or_default();
        if !is_ident(name) {
            issues.push(Issue {
                loc: at,
                message: format!("input {name:?}: names are letters, digits, - and _"),
            });
        }
        let default = match &spec.default {
            None => None,
            Some(d) => match Value::from_literal(&d.value, spec.ty) {
                Ok(v) => Some(v),
                Err(e) => {
                    issues.push(Issue {
                        loc: at,
                        message: format!("input {name}: default: {e}"),
                    });
                    None
                }
            },
        };
        inputs.insert(
            name.clone(),
            Input {
                ty: spec.ty,
                default,
                optional: spec.optional,
            },
        );
    }
    let mut checker = Checker {
        issues,
        inputs: &inputs,
        steps: BTreeMap::new(),
    };
    // First pass: ids and nodes, so references may point forward.
    let mut found: Vec<Option<Box<dyn Node>>> = Vec::new();
    for (i, s) in file.steps.iter().enumerate() {
        let id = &s.id.value;
        if !is_ident(id) {
            checker.issue(
                loc(&s.id),
                format!("step id {id:?}: ids are letters, digits, - and _"),
            );
        }
        let node = nodes::find(&s.uses.value);
        match &node {
            None => checker.issue(
                loc(&s.uses),
                format!(
                    "unknown node {:?} (nodes: {})",
                    s.uses.value,
                    nodes::names().join(", ")
                ),
            ),
            Some(n) => {
                if checker.steps.contains_key(id) {
                    checker.issue(loc(&s.id), format!("step id {id:?} is used twice"));
                } else {
                    checker
                        .steps
                        .insert(id.clone(), (i, n.spec(), s.for_each.is_some()));
                }
            }
        }
        found.push(node);
    }
    let mut steps = Vec::new();
    for (s, node) in file.steps.iter().zip(found) {
        let Some(node) = node else { continue };
        let spec = node.spec();
        let mut item = None;
        let mut for_each = None;
        if let Some(fe) = &s.for_each {
            match expr::parse(&fe.value) {
                Ok(pieces) => match pieces.as_slice() {
                    [Piece::Ref(r)] => match checker.ref_type(r, None) {
                        Ok(ty) if ty.list => {
                            item = Some(ty.element());
                            for_each = Some(r.clone());
                        }
                        Ok(ty) => {
                            checker.issue(loc(fe), format!("for_each: {r} is {ty}, not a list"))
                        }
                        Err(e) => checker.issue(loc(fe), format!("for_each: {e}")),
                    },
                    _ => checker.issue(
                        loc(fe),
                        "for_each: needs one `${{ ... }}` reference to a list".into(),
                    ),
                },
                Err(e) => checker.issue(loc(fe), format!("for_each: {e}")),
            }
        }
        let mut with = BTreeMap::new();
        for (param, value) in &s.with {
            let Some(port) = spec.inputs.iter().find(|p| p.name == param) else {
                let params: Vec<&str> = spec.inputs.iter().map(|p| p.name).collect();
                checker.issue(
                    loc(value),
                    format!(
                        "{} has no parameter {param:?} (parameters: {})",
                        spec.name,
                        params.join(", ")
                    ),
                );
                continue;
            };
            match checker.binding(&value.value, port.ty, item) {
                Ok(Binding::Ref(Ref::Input(name)))
                    if checker
                        .inputs
                        .get(&name)
                        .is_some_and(|i| i.optional && i.default.is_none())
                        && !port.optional =>
                {
                    checker.issue(
                        loc(value),
                        format!(
                            "{param}: input {name} is optional, but {} requires {param}",
                            spec.name
                        ),
                    );
                }
                Ok(b) => {
                    with.insert(param.clone(), b);
                }
                Err(e) => checker.issue(loc(value), format!("{param}: {e}")),
            }
        }
        for port in &spec.inputs {
            // A parameter given with an error was reported already.
            if !with.contains_key(port.name) && !s.with.contains_key(port.name) {
                match &port.default {
                    Some(d) => match Value::from_literal(d, port.ty) {
                        Ok(v) => {
                            with.insert(port.name.to_string(), Binding::Literal(v));
                        }
                        Err(e) => {
                            checker.issue(loc(&s.id), format!("{}: bad default: {e}", port.name))
                        }
                    },
                    None if port.optional => {}
                    None => checker.issue(
                        loc(&s.id),
                        format!(
                            "step {:?}: {} needs {} ({})",
                            s.id.value, spec.name, port.name, port.ty
                        ),
                    ),
                }
            }
        }
        steps.push(Step {
            id: s.id.value.clone(),
            node,
            spec,
            with,
            for_each,
            deps: Vec::new(),
            loc: loc(&s.id),
        });
    }
    let mut outputs = Vec::new();
    for (file_name, value) in &file.outputs {
        if !is_file_name(file_name) {
            checker.issue(
                loc(value),
                format!("output {file_name:?}: must be a plain file name inside the output folder"),
            );
            continue;
        }
        match expr::parse(&value.value) {
            Ok(pieces) => match pieces.as_slice() {
                [Piece::Ref(r)] => match checker.ref_type(r, None) {
                    Ok(ty) => outputs.push(Output {
                        file: file_name.clone(),
                        value: r.clone(),
                        ty,
                    }),
                    Err(e) => checker.issue(loc(value), format!("output {file_name}: {e}")),
                },
                _ => checker.issue(
                    loc(value),
                    format!("output {file_name}: needs one `${{{{ ... }}}}` reference"),
                ),
            },
            Err(e) => checker.issue(loc(value), format!("output {file_name}: {e}")),
        }
    }
    // Edges, as indices of `steps` (which skips unknown nodes); a cycle is
    // reported at a step on it.
    let index_of: BTreeMap<String, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    for s in &mut steps {
        let mut read = Vec::new();
        s.with.values().for_each(|b| refs(b, &mut read));
        read.extend(s.for_each.iter());
        let mut deps: Vec<usize> = read
            .iter()
            .filter_map(|r| match r {
                Ref::Step { step, .. } => index_of.get(step).copied(),
                _ => None,
            })
            .collect();
        deps.sort_unstable();
        deps.dedup();
        s.deps = deps;
    }
    let mut graph = DiGraphMap::<usize, ()>::new();
    for (i, s) in steps.iter().enumerate() {
        graph.add_node(i);
        for &j in &s.deps {
            graph.add_edge(j, i, ());
        }
    }
    let order = match petgraph::algo::toposort(&graph, None) {
        Ok(order) => order,
        Err(cycle) => {
            let s = &steps[cycle.node_id()];
            checker.issue(
                s.loc,
                format!(
                    "step {:?} depends on itself through a cycle of references",
                    s.id
                ),
            );
            Vec::new()
        }
    };
    let mut issues = checker.issues;
    if !issues.is_empty() {
        issues.sort_by_key(|i| (i.loc.line, i.loc.column));
        return Err(WorkflowError::Invalid(issues));
    }
    Ok(Workflow {
        name: file.name,
        inputs,
        steps,
        outputs,
        order,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::{load_str, WorkflowError, WorkflowLimits};

    fn issues(yaml: &str) -> Vec<String> {
        match load_str(yaml, &WorkflowLimits::default()) {
            Err(WorkflowError::Invalid(issues)) => issues.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_line_and_column() {
        let yaml = r#"name: broken
inputs:
  text: { type: text }
  picture: { type: image }
steps:
  - id: a
    uses: text.shout
  - id: b
    uses: text.split
    with: { text: "${{ inputs.text }}", by: 3, loudness: 7 }
  - id: c
    uses: audio.loudness
    with: { audio: "${{ inputs.picture }}" }
  - id: d
    uses: image.resize
    with: { image: "${{ steps.nowhere.outputs.image }}", width: 4 }
  - id: e
    uses: text.join
    with: { items: "${{ steps.b.outputs.pieces }}" }
  - id: f
    uses: text.normalize
    with: { text: "${{ steps.g.outputs.text }}" }
  - id: g
    uses: text.normalize
    with: { text: "${{ steps.f.outputs.text }}" }
  - id: h
    uses: mesh.normalize
  - id: i
    uses: text.normalize
    for_each: "${{ inputs.text }}"
    with: { text: "${{ item }}" }
outputs:
  ../escape.png: "${{ steps.d.outputs.image }}"
"#;
        let found = issues(yaml);
        let want = [
            ("7:11", "unknown node \"text.shout\""),
            ("10:45", "by: expected text, got 3"),
            ("10:58", "has no parameter \"loudness\""),
            ("13:20", "audio: takes audio, but inputs.picture is image"),
            ("16:20", "there is no step \"nowhere\""),
            ("19:20", "has no output \"pieces\""),
            ("26:9", "mesh.normalize needs mesh (mesh)"),
            ("30:15", "for_each: inputs.text is text, not a list"),
            ("33:18", "must be a plain file name"),
        ];
        for (at, message) in want {
            assert!(
                found
                    .iter()
                    .any(|f| f.starts_with(at) && f.contains(message)),
                "no {at} {message:?} in:\n{}",
                found.join("\n")
            );
        }
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("23:9") && f.contains("through a cycle")),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|f| f.contains("needs audio")),
            "no second report for a bad parameter"
        );
    }

    #[test]
    fn hostile_files_are_refused_within_the_limits() {
        // A billion laughs: nine levels of nine aliases.
        let mut bomb = String::from("name: bomb\nsteps: []\ndescription: &a0 \"lol\"\n");
        for i in 1..9 {
            let refs: Vec<String> = (0..9).map(|_| format!("*a{}", i - 1)).collect();
            bomb.push_str(&format!("x{i}: &a{i} [{}]\n", refs.join(", ")));
        }
        let e = issues(&bomb).join(" ");
        assert!(!e.is_empty(), "the alias bomb was accepted");
        let mut many = String::from("name: many\nsteps:\n");
        for i in 0..10_000 {
            many.push_str(&format!(
                "  - {{ id: s{i}, uses: text.normalize, with: {{ text: hi }} }}\n"
            ));
        }
        let e = issues(&many).join(" ");
        assert!(e.contains("over the limit"), "{e}");
        let huge = "#".repeat(2 << 20);
        assert!(issues(&huge).join(" ").contains("over the limit"));
    }
}
