//! `${{ ... }}` references in step inputs and outputs.

/// What a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Input(String),
    Step {
        step: String,
        port: String,
    },
    /// The element of the step's `for_each` list.
    Item,
    /// Its position, from 0.
    Index,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Input(n) => write!(f, "inputs.{n}"),
            Ref::Step { step, port } => write!(f, "steps.{step}.outputs.{port}"),
            Ref::Item => f.write_str("item"),
            Ref::Index => f.write_str("index"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Ref(Ref),
}

fn parse_ref(body: &str) -> Result<Ref, String> {
    let parts: Vec<&str> = body.trim().split('.').collect();
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    match parts.as_slice() {
        ["item"] => Ok(Ref::Item),
        ["index"] => Ok(Ref::Index),
        ["inputs", name] if ident(name) => Ok(Ref::Input((*name).into())),
        ["steps", step, "outputs", port] if ident(step) && ident(port) => Ok(Ref::Step {
            step: (*step).into(),
            port: (*port).into(),
        }),
        _ => Err(format!(
            "`${{{{ {} }}}}` is not a reference (inputs.NAME, steps.ID.outputs.PORT, item or index)",
            body.trim()
        )),
    }
}

/// Splits a string into text and references.
pub fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].into()));
        }
        let after = &rest[start + 3..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("`${{{{` without a closing `}}}}` in {s:?}"))?;
        pieces.push(Piece::Ref(parse_ref(&after[..end])?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.into()));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_text_split_apart() {
        assert_eq!(
            parse("Say: ${{ inputs.text }}!"),
            Ok(vec![
                Piece::Text("Say: ".into()),
                Piece::Ref(Ref::Input("text".into())),
                Piece::Text("!".into())
            ])
        );
        assert_eq!(
            parse("${{steps.tts.outputs.audio}}"),
            Ok(vec![Piece::Ref(Ref::Step {
                step: "tts".into(),
                port: "audio".into()
            })])
        );
        assert!(parse("${{ inputs }}").is_err());
        assert!(parse("${{ steps.a.audio }}").is_err());
        assert!(parse("${{ inputs.a").is_err());
    }
}
