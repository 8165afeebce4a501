//! Every node, one line each. A new node is one file (or one struct in its
//! modality's file) plus one line here.

mod audio_ops;
mod image_ops;
mod mesh_ops;
mod task;
mod text_ops;
mod video_ops;

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
    text_ops::template,
    image_ops::resize,
    image_ops::crop,
    image_ops::pad,
    image_ops::composite,
    image_ops::text,
    audio_ops::loudness,
    audio_ops::gain,
    audio_ops::resample,
    audio_ops::trim,
    audio_ops::concat,
    audio_ops::mix,
    audio_ops::silence,
    video_ops::from_frames,
    video_ops::concat,
    video_ops::mux,
    video_ops::trim,
    video_ops::set_fps,
    video_ops::thumbnail,
    mesh_ops::normalize_node,
    mesh_ops::transform,
    mesh_ops::merge,
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
