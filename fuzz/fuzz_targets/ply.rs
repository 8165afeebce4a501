#![no_main]
//! PLY mesh decoding.
mod limits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modalities::Mesh::decode(data, Some("ply"), &limits::small());
});
