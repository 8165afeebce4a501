//! CPU compute kernels shared by the codecs and the backbone.
//!
//! - [`gemm::sgemm`]: `C = A B` in f32 over strided views (or any
//!   [`PackB`] operand, such as an im2col computed while packing), threaded,
//!   with AVX-512 and AVX2 micro-kernels.
//! - [`PackedWeight`]: a weight packed once, at load, for `x W^T`.
//! - [`activation::silu`]: swish over a slice, vectorised.
//! - [`keep_freed_memory`]: the allocator policy of the binary and the
//!   benchmarks.

pub mod activation;
pub mod gemm;
mod memory;
mod micro;
pub mod packed;

pub use memory::keep_freed_memory;

pub use gemm::{sgemm, sgemm_into, MatRef, PackB, NR_PACKED};
pub use packed::PackedWeight;

/// Deterministic test operands shared by the kernels' tests.
#[cfg(test)]
mod test_values {
    /// `n` values in [-0.5, 0.5), different for each `seed`.
    pub fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 2654435761 + seed * 97) % 1009) as f32 / 1009.0 - 0.5)
            .collect()
    }
}
