#![no_main]
//! Video containers through FFmpeg (which reads from a path): probe, then
//! decode a few sampled frames.
mod limits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("input");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let limits = limits::small();
    let _ = modalities::info(&path, &limits);
    let _ = modalities::Video::read(&path, modalities::Sampling::Frames(4), &limits);
});
