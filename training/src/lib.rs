//! The starter pack's world and training data.
//!
//! [`world`] is a seeded procedural world (shapes on backgrounds, edits,
//! motion, meshes) whose vocabulary is small enough to learn on a laptop
//! and rich enough that a person recognises what the model makes. It is
//! documented in `docs/world.md`.

pub mod codecs;
pub mod data;
pub mod model;
pub mod train;
pub mod vocab;
pub mod world;
