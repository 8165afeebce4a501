#![no_main]
//! PNG, JPEG, WebP, GIF and BMP decoding and probing.
mod limits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = limits::small();
    let _ = modalities::Image::decode(data, &limits);
    let _ = modalities::image::probe(data, &limits);
});
