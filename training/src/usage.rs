//! Which experts serve which modality: the router's choices counted per
//! layer over held-out sequences of every task, by the kind of token that
//! was routed (text, image code, mesh code, marker).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::Sequence;
use crate::model::MoeModel;
use crate::vocab::CodeIds;

/// The kind of a token id in the starter vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Text,
    Marker,
    Image,
    Audio,
    Mesh,
}

impl TokenKind {
    pub fn of(id: u32, ids: &CodeIds, markers: std::ops::Range<u32>) -> TokenKind {
        if id >= ids.mesh {
            TokenKind::Mesh
        } else if id >= ids.audio {
            TokenKind::Audio
        } else if id >= ids.image {
            TokenKind::Image
        } else if markers.contains(&id) {
            TokenKind::Marker
        } else {
            TokenKind::Text
        }
    }
}

/// Per token kind, per layer: the share of that kind's routes each expert took.
#[derive(Debug, Clone, Serialize)]
pub struct ExpertUsage {
    pub layers: usize,
    pub experts: usize,
    pub shares: BTreeMap<TokenKind, Vec<Vec<f32>>>,
}

/// Counts the routes of every token of `sequences` (each run on its own).
pub fn expert_usage(
    model: &MoeModel,
    sequences: &[Sequence],
    ids: &CodeIds,
    markers: std::ops::Range<u32>,
) -> candle_core::Result<ExpertUsage> {
    let (layers, experts) = (model.config.num_hidden_layers, model.config.num_experts);
    let mut counts: BTreeMap<TokenKind, Vec<Vec<f32>>> = BTreeMap::new();
    for s in sequences {
        let (_, routes) = model.forward_routed(&crate::run::ids_tensor(s)?)?;
        let tokens: Vec<u32> = s.prompt.iter().chain(&s.target).copied().collect();
        for (layer, chosen) in routes.iter().enumerate() {
            for (token, picks) in tokens.iter().zip(chosen) {
                let kind = TokenKind::of(*token, ids, markers.clone());
                let table = counts
                    .entry(kind)
                    .or_insert_with(|| vec![vec![0.0; experts]; layers]);
                for &e in picks {
                    table[layer][e as usize] += 1.0;
                }
            }
        }
    }
    for table in counts.values_mut() {
        for row in table.iter_mut() {
            let total: f32 = row.iter().sum();
            row.iter_mut().for_each(|c| *c /= total.max(1.0));
        }
    }
    Ok(ExpertUsage {
        layers,
        experts,
        shares: counts,
    })
}

impl ExpertUsage {
    /// A Markdown table: one row per token kind and layer, one column per
    /// expert, each cell the percentage of that kind's routes.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| tokens | layer |");
        for e in 0..self.experts {
            out.push_str(&format!(" e{e} |"));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---:|".repeat(self.experts));
        out.push('\n');
        for (kind, table) in &self.shares {
            for (layer, row) in table.iter().enumerate() {
                out.push_str(&format!("| {kind:?} | {layer} |"));
                for share in row {
                    out.push_str(&format!(" {:.0} |", share * 100.0));
                }
                out.push('\n');
            }
        }
        out
    }
}
