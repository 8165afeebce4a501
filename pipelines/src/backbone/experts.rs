//! The routed experts of one MoE layer, packed for the CPU at load: each
//! expert's gate and up projections as one `[2 * inter, hidden]` weight and
//! its down projection as `[hidden, inter]`, both in the GEMM's strip
//! layout ([`kernels::PackedWeight`]), so an expert's product over its few
//! tokens packs nothing.
//!
//! A step's tokens are grouped by expert; each hit expert runs once over its
//! group on one thread, and the experts of a step run in parallel over the
//! rayon pool (one expert per task needs no synchronisation and keeps each
//! expert's weights in one core's cache). The weighted results are then
//! added into one output buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use kernels::PackedWeight;
use rayon::prelude::*;

/// Outputs (tokens x hidden) from which the experts' results are added up
/// over the pool: a decode step's few rows are not worth a handoff.
const PARALLEL_COMBINE: usize = 1 << 14;

pub struct Experts {
    hidden: usize,
    inter: usize,
    /// Per expert: gate rows, then up rows.
    gate_up: Vec<PackedWeight>,
    /// Per expert: `[hidden, inter]`.
    down: Vec<PackedWeight>,
}

/// The tokens one expert serves in a step, with their routing weights.
struct Group {
    expert: usize,
    rows: Vec<usize>,
    weights: Vec<f32>,
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl Experts {
    /// `gate` and `up` are `[inter, hidden]`, `down` is `[hidden, inter]`,
    /// each flattened row-major, one triple per expert. `None` when a
    /// weight does not have its shape.
    pub fn new(hidden: usize, inter: usize, weights: Vec<[Vec<f32>; 3]>) -> Option<Experts> {
        let mut gate_up = Vec::with_capacity(weights.len());
        let mut down = Vec::with_capacity(weights.len());
        for [gate, up, d] in weights {
            if gate.len() != inter * hidden {
                return None;
            }
            let mut fused = gate;
            fused.extend_from_slice(&up);
            gate_up.push(PackedWeight::from_rows(&fused, 2 * inter, hidden)?);
            down.push(PackedWeight::from_rows(&d, hidden, inter)?);
        }
        Some(Experts {
            hidden,
            inter,
            gate_up,
            down,
        })
    }

    pub fn len(&self) -> usize {
        self.gate_up.len()
    }

    /// One expert over `n` gathered rows `[n, hidden]`; returns `[n, hidden]`.
    fn run(&self, expert: usize, x: &[f32], n: usize) -> Vec<f32> {
        let i = self.inter;
        let mut gate_up = self.gate_up[expert].product(x, n, false);
        let mut act = Vec::with_capacity(n * i);
        for gu in gate_up.chunks_exact_mut(2 * i) {
            let (g, u) = gu.split_at_mut(i);
            // Vectorised: libm's scalar expf was 5% of a prefill.
            kernels::activation::silu(g);
            act.extend(g.iter().zip(u.iter()).map(|(g, u)| g * u));
        }
        self.down[expert].product(&act, n, false)
    }

    /// `x` is `[tokens, hidden]`; `routes[t]` lists token `t`'s experts and
    /// weights. Returns the weighted sum of each token's experts.
    pub fn forward(&self, x: &[f32], tokens: usize, routes: &[Vec<(usize, f32)>]) -> Vec<f32> {
        let h = self.hidden;
        let mut by_expert: Vec<Group> = (0..self.len())
            .map(|expert| Group {
                expert,
                rows: Vec::new(),
                weights: Vec::new(),
            })
            .collect();
        for (t, chosen) in routes.iter().enumerate() {
            for &(e, w) in chosen {
                by_expert[e].rows.push(t);
                by_expert[e].weights.push(w);
            }
        }
        let mut groups: Vec<Group> = by_expert
            .into_iter()
            .filter(|g| !g.rows.is_empty())
            .collect();
        // Largest first, taken from one queue: a thread that finishes early
        // takes the next expert, and the last ones are the short ones.
        // (Split in halves, as a parallel iterator splits them, one thread
        // ran a tenth of the experts' time alone.)
        groups.sort_by_key(|g| std::cmp::Reverse(g.rows.len()));
        let run = |g: &Group| {
            let mut gathered = Vec::with_capacity(g.rows.len() * h);
            for &r in &g.rows {
                gathered.extend_from_slice(&x[r * h..(r + 1) * h]);
            }
            self.run(g.expert, &gathered, g.rows.len())
        };
        let threads = rayon::current_num_threads().min(groups.len());
        let outputs: Vec<Vec<f32>> = if threads > 1 {
            let next = AtomicUsize::new(0);
            let done: Vec<OnceLock<Vec<f32>>> = groups.iter().map(|_| OnceLock::new()).collect();
            (0..threads).into_par_iter().for_each(|_| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(g) = groups.get(i) else { break };
                    // Each index is taken once, so each cell is set once.
                    let _ = done[i].set(run(g));
                }
            });
            done.into_iter()
                .map(|d| d.into_inner().unwrap_or_default())
                .collect()
        } else {
            groups.iter().map(run).collect()
        };
        // Each token's row of the output: the weighted sum of its experts'
        // rows, row by row over the pool.
        let mut sources: Vec<Vec<(usize, usize, f32)>> = vec![Vec::new(); tokens];
        for (gi, g) in groups.iter().enumerate() {
            for (slot, (&r, &w)) in g.rows.iter().zip(&g.weights).enumerate() {
                sources[r].push((gi, slot, w));
            }
        }
        let mut out = vec![0f32; tokens * h];
        let combine = |(dst, from): (&mut [f32], &Vec<(usize, usize, f32)>)| {
            for &(gi, slot, w) in from {
                let values = &outputs[gi][slot * h..(slot + 1) * h];
                dst.iter_mut().zip(values).for_each(|(d, &v)| *d += w * v);
            }
        };
        if tokens * h >= PARALLEL_COMBINE && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(h).zip(&sources).for_each(combine);
        } else {
            out.chunks_mut(h).zip(&sources).for_each(combine);
        }
        out
    }

    /// The plain reference: every token, every chosen expert, scalar loops
    /// over the weights' rows (each expert's unpacked once).
    pub fn forward_reference(&self, x: &[f32], routes: &[Vec<(usize, f32)>]) -> Vec<f32> {
        let (h, i) = (self.hidden, self.inter);
        let mut unpacked: Vec<Option<[Vec<f32>; 2]>> = vec![None; self.len()];
        let mut out = vec![0f32; routes.len() * h];
        for (t, chosen) in routes.iter().enumerate() {
            let xt = &x[t * h..(t + 1) * h];
            for &(e, w) in chosen {
                let [gu, down] = unpacked[e]
                    .get_or_insert_with(|| [self.gate_up[e].to_rows(), self.down[e].to_rows()]);
                let dot =
                    |row: &[f32], v: &[f32]| -> f32 { row.iter().zip(v).map(|(a, b)| a * b).sum() };
                let act: Vec<f32> = (0..i)
                    .map(|j| {
                        let g = dot(&gu[j * h..(j + 1) * h], xt);
                        let u = dot(&gu[(i + j) * h..(i + j + 1) * h], xt);
                        silu(g) * u
                    })
                    .collect();
                for (o, d) in out[t * h..(t + 1) * h].iter_mut().enumerate() {
                    *d += w * dot(&down[o * i..(o + 1) * i], &act);
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Deterministic values in [-0.5, 0.5).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 2654435761 + seed * 40503) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    }

    #[test]
    fn grouped_path_agrees_with_the_reference() {
        let (h, i, e, tokens) = (24, 16, 6, 11);
        let experts = Experts::new(
            h,
            i,
            (0..e)
                .map(|k| {
                    [
                        values(i * h, 3 * k),
                        values(i * h, 3 * k + 1),
                        values(h * i, 3 * k + 2),
                    ]
                })
                .collect(),
        )
        .unwrap();
        let x = values(tokens * h, 99);
        // Expert 0 serves every token (a whole tile and a short one), the
        // others a few each (one short tile); expert 5 none.
        let routes: Vec<Vec<(usize, f32)>> = (0..tokens)
            .map(|t| vec![(0, 0.6), (1 + t % 4, 0.3 + t as f32 * 0.01)])
            .collect();
        let want = experts.forward_reference(&x, &routes);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for got in [
            experts.forward(&x, tokens, &routes),
            pool.install(|| experts.forward(&x, tokens, &routes)),
        ] {
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "element {k}: {a} vs {b}");
            }
        }
    }
}
