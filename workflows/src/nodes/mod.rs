//! Every node, one line each. A new node is one file plus one line here.

mod media_ops;
mod task;
mod text_ops;

use crate::node::Node;

pub const REGISTRY: &[fn() -> Box<dyn Node>] = &[
    task::chat,
    task::caption,
    task::transcribe,
    task::text_to_image,
    task::image_edit,
    task::text_to_speech,
    task::text_to_video,
    task::image_to_video,
    task::text_to_mesh,
    text_ops::normalize,
    text_ops::split,
    text_ops::join,
    media_ops::loudness,
    media_ops::resize,
    media_ops::mesh_normalize,
    media_ops::concat,
    media_ops::mux,
    media_ops::from_frames,
];

/// The node named `name`.
pub fn find(name: &str) -> Option<Box<dyn Node>> {
    REGISTRY
        .iter()
        .map(|make| make())
        .find(|n| n.spec().name == name)
}

/// Every node's name.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|make| make().spec().name).collect()
}
