#![no_main]
//! WAV, FLAC, MP3, Ogg, Opus, AAC and M4A decoding (symphonia, then FFmpeg).
mod limits;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = modalities::Audio::decode(data, &limits::small());
});
