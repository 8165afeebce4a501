//! The starter pack's world and training data.
//!
//! [`world`] is a seeded procedural world (shapes on backgrounds, edits,
//! motion, meshes) whose vocabulary is small enough to learn on a laptop
//! and rich enough that a person recognises what the model makes. It is
//! documented in `docs/world.md`.

pub mod batch;
pub mod checkpoint;
pub mod codecs;
pub mod data;
pub mod eval;
pub mod fused;
pub mod model;
pub mod optim;
pub mod pack;
pub mod recipe;
pub mod run;
pub mod speech;
#[cfg(test)]
mod testing;
pub mod train;
pub mod usage;
pub mod vocab;
pub mod world;
