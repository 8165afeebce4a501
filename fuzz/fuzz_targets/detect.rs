#![no_main]
//! Content-based format detection.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modalities::Format::detect(data, data.len() as u64, None);
    let _ = modalities::Format::detect(data, data.len() as u64, Some("stl"));
});
