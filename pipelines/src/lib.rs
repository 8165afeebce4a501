//! The shared Mixture-of-Experts backbone, its generation engine, and (as
//! they arrive) the generation tasks built on it.

pub mod backbone;
mod error;
pub mod generate;
pub mod tokenizer;

pub use error::{PipelineError, Result};
