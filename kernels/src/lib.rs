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
