//! Port types and the values that flow between steps.

use std::fmt;
use std::str::FromStr;

use modalities::Media;
use sha2::{Digest, Sha256};

/// What a port carries, before the list marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Base {
    Text,
    Number,
    Integer,
    Boolean,
    Image,
    Audio,
    Video,
    Mesh,
}

/// A port's type: a base type, or a list of it (`image[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortType {
    pub base: Base,
    pub list: bool,
}

impl PortType {
    pub const fn one(base: Base) -> PortType {
        PortType { base, list: false }
    }
    pub const fn list_of(base: Base) -> PortType {
        PortType { base, list: true }
    }
    pub fn element(self) -> PortType {
        PortType::one(self.base)
    }
    pub fn is_media(self) -> bool {
        matches!(
            self.base,
            Base::Image | Base::Audio | Base::Video | Base::Mesh
        )
    }
    /// Whether a value of type `from` may feed a port of this type.
    pub fn accepts(self, from: PortType) -> bool {
        self == from
            || (self.list == from.list && self.base == Base::Number && from.base == Base::Integer)
    }
    /// Every type name the format accepts, for the schema.
    pub fn names() -> Vec<String> {
        let bases = [
            "text", "string", "number", "integer", "boolean", "image", "audio", "video", "mesh",
        ];
        bases
            .iter()
            .flat_map(|b| [b.to_string(), format!("{b}[]")])
            .collect()
    }
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.base {
            Base::Text => "text",
            Base::Number => "number",
            Base::Integer => "integer",
            Base::Boolean => "boolean",
            Base::Image => "image",
            Base::Audio => "audio",
            Base::Video => "video",
            Base::Mesh => "mesh",
        };
        write!(f, "{name}{}", if self.list { "[]" } else { "" })
    }
}

impl FromStr for PortType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, list) = match s.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (s, false),
        };
        let base = match name {
            "text" | "string" => Base::Text,
            "number" => Base::Number,
            "integer" => Base::Integer,
            "boolean" | "bool" => Base::Boolean,
            "image" => Base::Image,
            "audio" => Base::Audio,
            "video" => Base::Video,
            "mesh" => Base::Mesh,
            _ => {
                return Err(format!(
                    "unknown type {s:?} (types: text, number, integer, boolean, image, audio, video, mesh, each also as a list: text[])"
                ))
            }
        };
        Ok(PortType { base, list })
    }
}

impl<'de> serde::Deserialize<'de> for PortType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for PortType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortType".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "enum": PortType::names() })
    }
}

/// A value on a port.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    Integer(i64),
    Boolean(bool),
    Media(Media),
    List(Vec<Value>),
}

impl Value {
    /// The value's type; an empty list is a list of text.
    pub fn port_type(&self) -> PortType {
        match self {
            Value::Text(_) => PortType::one(Base::Text),
            Value::Number(_) => PortType::one(Base::Number),
            Value::Integer(_) => PortType::one(Base::Integer),
            Value::Boolean(_) => PortType::one(Base::Boolean),
            Value::Media(m) => PortType::one(match m {
                Media::Text(_) => Base::Text,
                Media::Image(_) => Base::Image,
                Media::Audio(_) => Base::Audio,
                Media::Video(_) => Base::Video,
                Media::Mesh(_) => Base::Mesh,
            }),
            Value::List(items) => {
                PortType::list_of(items.first().map_or(Base::Text, |v| v.port_type().base))
            }
        }
    }

    /// A literal (from YAML, a default or `--set`) as a value of `ty`.
    /// Media come from files, never from literals.
    pub fn from_literal(v: &serde_json::Value, ty: PortType) -> Result<Value, String> {
        use serde_json::Value as J;
        if ty.list {
            let J::Array(items) = v else {
                return Err(format!("expected a list of {}, got {v}", ty.element()));
            };
            return items
                .iter()
                .map(|i| Value::from_literal(i, ty.element()))
                .collect::<Result<_, _>>()
                .map(Value::List);
        }
        match (ty.base, v) {
            (Base::Text, J::String(s)) => Ok(Value::Text(s.clone())),
            (Base::Number, J::Number(n)) => n
                .as_f64()
                .map(Value::Number)
                .ok_or_else(|| format!("{n} is not a number")),
            (Base::Integer, J::Number(n)) => n
                .as_i64()
                .map(Value::Integer)
                .ok_or_else(|| format!("{n} is not an integer")),
            (Base::Boolean, J::Bool(b)) => Ok(Value::Boolean(*b)),
            (base, _) if PortType::one(base).is_media() => Err(format!(
                "{} values come from a workflow input or a step, not a literal",
                PortType::one(base)
            )),
            _ => Err(format!("expected {ty}, got {v}")),
        }
    }

    /// Text for interpolation into a string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Text(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Integer(n) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A content digest: equal values, equal digests (the step cache's key).
    pub fn digest(&self, h: &mut Sha256) {
        match self {
            Value::Text(s) => {
                h.update(b"t");
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Number(n) => {
                h.update(b"n");
                h.update(n.to_le_bytes());
            }
            Value::Integer(n) => {
                h.update(b"i");
                h.update(n.to_le_bytes());
            }
            Value::Boolean(b) => h.update([b'b', u8::from(*b)]),
            Value::Media(m) => {
                h.update(b"m");
                crate::store::digest_media(m, h);
            }
            Value::List(items) => {
                h.update(b"l");
                h.update((items.len() as u64).to_le_bytes());
                items.iter().for_each(|i| i.digest(h));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_print() {
        for name in ["text", "image[]", "integer", "mesh"] {
            assert_eq!(
                name.parse::<PortType>().map(|t| t.to_string()),
                Ok(name.to_string())
            );
        }
        assert_eq!("string".parse::<PortType>(), Ok(PortType::one(Base::Text)));
        assert!("picture".parse::<PortType>().is_err());
        assert!(PortType::one(Base::Number).accepts(PortType::one(Base::Integer)));
        assert!(!PortType::one(Base::Image).accepts(PortType::one(Base::Video)));
    }

    #[test]
    fn literals_are_checked_against_the_port_type() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
        assert_eq!(
            Value::from_literal(
                &j("[\"a\", \"b\"]"),
                "text[]".parse().unwrap_or(PortType::one(Base::Text))
            ),
            Ok(Value::List(vec![
                Value::Text("a".into()),
                Value::Text("b".into())
            ]))
        );
        assert!(Value::from_literal(&j("2.5"), PortType::one(Base::Integer)).is_err());
        assert!(Value::from_literal(&j("\"x.png\""), PortType::one(Base::Image)).is_err());
    }
}
