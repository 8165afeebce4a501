//! CPU compute kernels shared by the codecs and the backbone.
//!
//! - [`gemm::sgemm`]: `C = A B` in f32 over strided views (or any
//!   [`PackB`] operand, such as an im2col computed while packing), threaded,
//!   with an AVX-512 micro-kernel.

pub mod gemm;

pub use gemm::{sgemm, sgemm_into, MatRef, PackB, NR_PACKED};
