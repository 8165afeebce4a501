#![no_main]
//! OBJ mesh decoding.
mod limits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modalities::Mesh::decode(data, Some("obj"), &limits::small());
});
