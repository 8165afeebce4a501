//! Text generation: sampling and the continuous-batching engine.

mod engine;
pub mod sampling;

pub use engine::{
    Engine, EngineConfig, Event, FinishReason, GenerationRequest, RequestHandle, TokenLogprob,
    Usage,
};
pub use sampling::{Sampled, Sampler, SamplingParams};
