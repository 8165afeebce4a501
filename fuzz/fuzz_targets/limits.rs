// Shared by the targets: small limits so a fuzzer's input exercises the
// checks rather than spending its time decoding large, legal media.
pub fn small() -> modalities::Limits {
    modalities::Limits {
        max_file_bytes: 1 << 20,
        max_dimension: 2048,
        max_pixels: 1 << 20,
        max_image_frames: 16,
        max_audio_seconds: 30.0,
        max_video_seconds: 30.0,
        max_video_frames: 16,
        max_vertices: 100_000,
        max_faces: 200_000,
        ..modalities::Limits::default()
    }
}
