//! Text nodes: normalise, split, join.

use serde_json::json;

use crate::node::{output, Inputs, Node, NodeSpec, Outputs, Port, StepContext};
use crate::types::{Base, PortType, Value};

const TEXT: PortType = PortType::one(Base::Text);
const TEXTS: PortType = PortType::list_of(Base::Text);

/// `text.normalize`: typographic quotes and dashes to plain ones, runs of
/// whitespace to one space, trimmed (what a TTS front end wants).
pub struct Normalize;

pub fn normalize() -> Box<dyn Node> {
    Box::new(Normalize)
}

pub fn normalize_text(text: &str) -> String {
    let plain: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => '\'',
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => '"',
            '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
            '\u{2026}' => '.',
            c if c.is_whitespace() => ' ',
            c => c,
        })
        .collect();
    plain.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Node for Normalize {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "text.normalize",
            doc: "plain quotes and dashes, single spaces, trimmed",
            inputs: vec![Port::required("text", TEXT, "the text")],
            outputs: vec![Port::output("text", TEXT, "the normalised text")],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        Ok(output(
            "text",
            Value::Text(normalize_text(&inputs.text("text")?)),
        ))
    }
}

/// `text.split`: into sentences, lines or paragraphs (empty pieces dropped).
pub struct Split;

pub fn split() -> Box<dyn Node> {
    Box::new(Split)
}

pub fn split_text(text: &str, by: &str) -> Result<Vec<String>, String> {
    let pieces: Vec<String> = match by {
        "line" => text.lines().map(str::to_owned).collect(),
        "paragraph" => text.split("\n\n").map(str::to_owned).collect(),
        "sentence" => {
            let mut out = Vec::new();
            let mut current = String::new();
            let chars: Vec<char> = text.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                current.push(c);
                let next_is_space = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
                if matches!(c, '.' | '!' | '?') && next_is_space {
                    out.push(std::mem::take(&mut current));
                }
            }
            out.push(current);
            out
        }
        other => return Err(format!("by: {other:?} is not sentence, line or paragraph")),
    };
    Ok(pieces
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect())
}

impl Node for Split {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "text.split",
            doc: "splits text into sentences, lines or paragraphs",
            inputs: vec![
                Port::required("text", TEXT, "the text"),
                Port::with_default("by", TEXT, json!("sentence"), "sentence, line or paragraph"),
            ],
            outputs: vec![Port::output("items", TEXTS, "the pieces, in order")],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let pieces = split_text(&inputs.text("text")?, &inputs.text("by")?)?;
        Ok(output(
            "items",
            Value::List(pieces.into_iter().map(Value::Text).collect()),
        ))
    }
}

/// `text.join`: pieces joined with a separator.
pub struct Join;

pub fn join() -> Box<dyn Node> {
    Box::new(Join)
}

impl Node for Join {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "text.join",
            doc: "joins pieces of text with a separator",
            inputs: vec![
                Port::required("items", TEXTS, "the pieces"),
                Port::with_default("separator", TEXT, json!(" "), "put between pieces"),
            ],
            outputs: vec![Port::output("text", TEXT, "the joined text")],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let items: Vec<String> = inputs
            .list("items")?
            .iter()
            .filter_map(Value::as_text)
            .collect();
        Ok(output(
            "text",
            Value::Text(items.join(&inputs.text("separator")?)),
        ))
    }
}

/// `text.template`: a `minijinja` template over `text` and `items`.
pub struct Template;

pub fn template() -> Box<dyn Node> {
    Box::new(Template)
}

impl Node for Template {
    fn spec(&self) -> NodeSpec {
        NodeSpec {
            name: "text.template",
            doc: "renders a minijinja template with `text` and `items` (a list) in scope",
            inputs: vec![
                Port::required(
                    "template",
                    TEXT,
                    "e.g. \"A photo of {{ text }}\" or \"{{ items | join(', ') }}\"",
                ),
                Port::with_default("text", TEXT, json!(""), "available as `text`"),
                Port::with_default("items", TEXTS, json!([]), "available as `items`"),
            ],
            outputs: vec![Port::output("text", TEXT, "the rendered text")],
            uses_pack: false,
        }
    }
    fn run(&self, _: &StepContext, inputs: &Inputs) -> Result<Outputs, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let template = inputs.text("template")?;
        env.add_template("t", &template)
            .map_err(|e| format!("template: {e}"))?;
        let items: Vec<String> = inputs
            .list("items")?
            .iter()
            .filter_map(Value::as_text)
            .collect();
        let value = inputs.text("text")?;
        let text = env
            .get_template("t")
            .and_then(|t| t.render(minijinja::context! { text => value, items => items }))
            .map_err(|e| format!("template: {e}"))?;
        Ok(output("text", Value::Text(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_lines_and_normalised_text() {
        assert_eq!(
            split_text("One. Two!  Three? 3.5 is a number", "sentence"),
            Ok(vec![
                "One.".into(),
                "Two!".into(),
                "Three?".into(),
                "3.5 is a number".into()
            ])
        );
        assert_eq!(
            split_text("a\n\nb\n", "line"),
            Ok(vec!["a".into(), "b".into()])
        );
        assert!(split_text("a", "word").is_err());
        assert_eq!(
            normalize_text("  \u{201C}Hi\u{201D}\u{2014}there\n  you\u{2026} "),
            "\"Hi\"-there you."
        );
    }
}
