//! Generation: sampling, output constraints and the continuous-batching engine.

mod cancel;
pub mod constraint;
mod engine;
pub mod sampling;

pub use cancel::{CancelOnDrop, CancelToken};
pub use constraint::{Allowed, TokenConstraint};
pub use engine::{
    Engine, EngineConfig, Event, FinishReason, GenerationRequest, Guidance, RequestHandle,
    TokenLogprob, Usage,
};
pub use sampling::{Sampled, Sampler, SamplingParams};
