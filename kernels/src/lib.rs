//! CPU compute kernels shared by the codecs and the backbone.
//!
//! - [`gemm::sgemm`]: `C = A B` in f32 over strided views, threaded, with
//!   an AVX-512 micro-kernel (the `gemm` crate elsewhere).

pub mod gemm;

pub use gemm::{sgemm, sgemm_into, MatRef};
