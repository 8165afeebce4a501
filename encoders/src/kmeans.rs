//! k-means for fitting codebooks (the patch image codec; later the mel
//! audio codec): k-means++ starts and Lloyd iterations, with the distance
//! and centroid sums done as candle matrix products (its multi-threaded
//! GEMM), so fitting tens of thousands of vectors takes seconds.
//!
//! linfa-clustering 0.8 was tried first: 369 s for 3,840 48-dimensional
//! vectors and 256 centroids on this project's 2-core machine, too slow for
//! a recipe that fits hundreds of thousands.

use candle_core::{DType, Device, Tensor, D};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{CodecError, Result};

/// What a fit produced.
pub struct Clusters {
    /// `k` rows of `dim` values.
    pub centroids: Vec<f32>,
    pub dim: usize,
    /// Mean squared distance of a vector to its centroid.
    pub inertia: f32,
    pub iterations: usize,
}

/// Clusters `n` row-major vectors of `dim` values into `k` centroids,
/// seeded (the same data and seed give the same centroids), stopping after
/// `iterations` or when no vector changes cluster.
pub fn fit(data: &[f32], dim: usize, k: usize, iterations: usize, seed: u64) -> Result<Clusters> {
    let n = data.len() / dim.max(1);
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(CodecError::Input(format!(
            "{} values are not rows of {dim}",
            data.len()
        )));
    }
    if n < k || k == 0 {
        return Err(CodecError::Input(format!(
            "{n} vectors cannot make {k} clusters"
        )));
    }
    let x = Tensor::from_slice(data, (n, dim), &Device::Cpu)?;
    let x_sq = x.sqr()?.sum_keepdim(1)?; // [n, 1]
    let mut c = plus_plus(&x, k, seed)?;
    let mut assignment: Vec<u32> = Vec::new();
    let mut iterations_run = 0;
    for _ in 0..iterations.max(1) {
        iterations_run += 1;
        let (next, _) = assign(&x, &x_sq, &c)?;
        let changed = next != assignment;
        assignment = next;
        c = update(&x, &assignment, &c)?;
        if !changed {
            break;
        }
    }
    let (_, distances) = assign(&x, &x_sq, &c)?;
    Ok(Clusters {
        centroids: c.flatten_all()?.to_vec1()?,
        dim,
        inertia: distances.iter().sum::<f32>() / n as f32,
        iterations: iterations_run,
    })
}

/// The nearest of `centroids` (rows of `dim`) to each row of `data`,
/// lowest index on ties.
pub fn nearest(data: &[f32], dim: usize, centroids: &[f32]) -> Result<Vec<u32>> {
    if dim == 0 || !data.len().is_multiple_of(dim) || !centroids.len().is_multiple_of(dim) {
        return Err(CodecError::Input(format!("rows of {dim} values expected")));
    }
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let x = Tensor::from_slice(data, (data.len() / dim, dim), &Device::Cpu)?;
    let c = Tensor::from_slice(centroids, (centroids.len() / dim, dim), &Device::Cpu)?;
    Ok(assign(&x, &x.sqr()?.sum_keepdim(1)?, &c)?.0)
}

/// The nearest centroid of every row, and the squared distance to it.
fn assign(x: &Tensor, x_sq: &Tensor, c: &Tensor) -> Result<(Vec<u32>, Vec<f32>)> {
    let c_sq = c.sqr()?.sum_keepdim(1)?.t()?; // [1, k]
    let d = x_sq
        .broadcast_add(&c_sq)?
        .broadcast_sub(&(x.matmul(&c.t()?)? * 2.0)?)?;
    let nearest = d.argmin_keepdim(D::Minus1)?;
    let distances = d
        .gather(&nearest, D::Minus1)?
        .squeeze(1)?
        .to_vec1::<f32>()?;
    Ok((nearest.squeeze(1)?.to_vec1::<u32>()?, distances))
}

/// Each centroid becomes the mean of its vectors; one left without any
/// keeps its place.
fn update(x: &Tensor, assignment: &[u32], c: &Tensor) -> Result<Tensor> {
    let (k, n) = (c.dim(0)?, assignment.len());
    let mut one_hot = vec![0f32; k * n];
    let mut counts = vec![0f32; k];
    for (i, &a) in assignment.iter().enumerate() {
        one_hot[a as usize * n + i] = 1.0;
        counts[a as usize] += 1.0;
    }
    let one_hot = Tensor::from_vec(one_hot, (k, n), x.device())?;
    let sums = one_hot.matmul(x)?;
    let counts_t = Tensor::from_vec(counts.clone(), (k, 1), x.device())?;
    let means = sums.broadcast_div(&counts_t.maximum(1f32)?)?;
    let keep: Vec<f32> = counts.iter().map(|&m| f32::from(m == 0.0)).collect();
    let keep = Tensor::from_vec(keep, (k, 1), x.device())?;
    Ok((means.broadcast_mul(&(1.0 - &keep)?)? + c.broadcast_mul(&keep)?)?)
}

/// k-means++ starts: each next centroid is a vector drawn with probability
/// proportional to its squared distance from the nearest chosen one.
fn plus_plus(x: &Tensor, k: usize, seed: u64) -> Result<Tensor> {
    let n = x.dim(0)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let uniform = |rng: &mut ChaCha8Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let mut chosen = vec![(uniform(&mut rng) * n as f64) as usize % n];
    let mut nearest: Vec<f32> = distances_to(x, chosen[0])?;
    while chosen.len() < k {
        let total: f64 = nearest.iter().map(|&d| f64::from(d.max(0.0))).sum();
        let next = if total <= 0.0 {
            // Every vector sits on a centroid already: take the next unused row.
            (0..n).find(|i| !chosen.contains(i)).unwrap_or(0)
        } else {
            let mut target = uniform(&mut rng) * total;
            let mut pick = n - 1;
            for (i, &d) in nearest.iter().enumerate() {
                target -= f64::from(d.max(0.0));
                if target <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        };
        chosen.push(next);
        for (m, d) in nearest.iter_mut().zip(distances_to(x, next)?) {
            *m = m.min(d);
        }
    }
    let index = Tensor::from_vec(
        chosen.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        k,
        x.device(),
    )?;
    Ok(x.index_select(&index, 0)?.to_dtype(DType::F32)?)
}

fn distances_to(x: &Tensor, row: usize) -> Result<Vec<f32>> {
    let r = x.narrow(0, row, 1)?;
    Ok(x.broadcast_sub(&r)?.sqr()?.sum(1)?.to_vec1::<f32>()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn separated_blobs_are_found_and_the_seed_repeats_the_fit() {
        // Four tight blobs in 3-D.
        let centres = [[0f32, 0., 0.], [10., 0., 0.], [0., 10., 0.], [0., 0., 10.]];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut data = Vec::new();
        for i in 0..400 {
            for v in centres[i % 4] {
                data.push(v + (rng.next_u32() % 100) as f32 / 100.0 - 0.5);
            }
        }
        let fit_once = || fit(&data, 3, 4, 50, 9).unwrap();
        let a = fit_once();
        assert_eq!(a.centroids, fit_once().centroids);
        assert!(a.inertia < 0.3, "inertia {}", a.inertia);
        for c in centres {
            let near = a
                .centroids
                .chunks(3)
                .any(|row| row.iter().zip(c).map(|(x, y)| (x - y).powi(2)).sum::<f32>() < 0.1);
            assert!(near, "no centroid near {c:?}: {:?}", a.centroids);
        }
        assert!(
            fit(&data, 3, 500, 5, 1).is_err(),
            "more clusters than vectors"
        );
        assert!(fit(&data[..7], 3, 1, 5, 1).is_err(), "ragged rows");
    }
}
