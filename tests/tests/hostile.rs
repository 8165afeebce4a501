#![allow(clippy::unwrap_used)]
//! Hostile and broken input: every decoder must answer with a typed error
//! that names the problem, never panic, never allocate what a header claims
//! before checking it, and never let FFmpeg open anything but the file given.

mod common;

use std::path::{Path, PathBuf};

use common::{ffmpeg, png_chunk, tool, TempDir};
use modalities::{Audio, Image, Limits, MediaError, Mesh, Sampling, Video};

fn png_with_size(width: u32, height: u32, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", idat));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

fn limit_error(e: &MediaError) -> bool {
    matches!(e, MediaError::LimitExceeded { .. })
}

#[test]
fn png_claiming_100000_by_100000_is_refused_by_its_header() {
    let e = Image::decode(&png_with_size(100_000, 100_000, b"x"), &Limits::default()).unwrap_err();
    assert!(limit_error(&e), "{e}");
    assert!(e.to_string().contains("width is 100000"), "{e}");
}

#[test]
fn png_zip_bomb_is_refused_before_inflating() {
    let dir = TempDir::new();
    // 3000x3000 black compresses to a few kilobytes and inflates to 9 MB.
    let bomb = dir.str("bomb.png");
    tool(
        "convert",
        &[
            "-size",
            "3000x3000",
            "xc:black",
            "-depth",
            "8",
            "-type",
            "Grayscale",
            &bomb,
        ],
    );
    let bytes = std::fs::read(&bomb).unwrap();
    assert!(
        bytes.len() < 64 * 1024,
        "the bomb is small: {} bytes",
        bytes.len()
    );
    let tight = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let e = Image::decode(&bytes, &tight).unwrap_err();
    assert!(e.to_string().contains("pixel count is 9000000"), "{e}");
    // With default limits, a header within the dimension limit but over the
    // pixel limit is refused too, whatever the IDAT holds.
    let e = Image::decode(
        &png_with_size(16_000, 16_000, &[0x78, 0x9c, 0x03, 0x00]),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("pixel count"), "{e}");
}

#[test]
fn other_image_headers_claiming_huge_sizes() {
    // BMP: 24-bit, 60000 x 60000.
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0; 12]);
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&60_000i32.to_le_bytes());
    bmp.extend_from_slice(&60_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    // GIF: a logical screen of 65535 x 65535.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
    gif.extend_from_slice(&[
        0x2c, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 2, 2, 0x4c, 0x01, 0, 0x3b,
    ]);
    for (name, bytes) in [("bmp", bmp), ("gif", gif)] {
        match Image::decode(&bytes, &Limits::default()) {
            Err(e) => assert!(
                e.to_string().contains("limit") || e.to_string().contains("invalid"),
                "{name}: {e}"
            ),
            Ok(img) => panic!("{name} decoded to {img:?}"),
        }
    }
}

fn wav_header(channels: u16, rate: u32, data_len: u32) -> Vec<u8> {
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&36u32.wrapping_add(data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
    wav.extend_from_slice(&(2 * channels).to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav
}

#[test]
fn wav_data_chunk_claiming_4_gib() {
    let mut wav = wav_header(2, 44_100, 0xFFFF_FFF0);
    wav.extend_from_slice(&[0; 1000]);
    let e = Audio::decode(&wav, &Limits::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("data chunk claims 4294967280 bytes but only 1000 follow"),
        "{e}"
    );
}

#[test]
fn wav_with_zero_channels_or_zero_sample_rate() {
    for (channels, rate, needle) in [(0, 44_100, "0 channels"), (2, 0, "sample rate of 0")] {
        let mut wav = wav_header(channels, rate, 8);
        wav.extend_from_slice(&[0; 8]);
        let e = Audio::decode(&wav, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn id3_tag_with_a_huge_size() {
    // Syncsafe size 0x0FFFFFFF: a 256 MiB tag in a 30-byte file.
    let mut mp3 = b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f".to_vec();
    mp3.extend_from_slice(&[0xff, 0xfb, 0x90, 0x00]);
    mp3.extend_from_slice(&[0; 16]);
    let e = Audio::decode(&mp3, &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("ID3 tag claims 268435465 bytes"),
        "{e}"
    );
}

#[test]
fn audio_longer_than_the_limit_is_refused_while_decoding() {
    let dir = TempDir::new();
    let long = dir.str("long.flac");
    tool(
        "sox",
        &[
            "-n", "-r", "8000", "-c", "1", &long, "synth", "5", "sine", "440",
        ],
    );
    let tight = Limits {
        max_audio_seconds: 2.0,
        ..Limits::default()
    };
    let e = Audio::read(Path::new(&long), &tight).unwrap_err();
    assert!(limit_error(&e), "{e}");
}

/// A valid one-second H.264 MP4, index first (faststart), made by FFmpeg.
fn make_mp4(path: &str) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=32x32:rate=5",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        path,
    ]);
}

fn mp4(dir: &TempDir) -> Vec<u8> {
    let path = dir.str("ok.mp4");
    make_mp4(&path);
    std::fs::read(path).unwrap()
}

fn find_box(bytes: &[u8], name: &[u8; 4]) -> usize {
    bytes.windows(4).position(|w| w == name).expect("box") - 4
}

#[test]
fn mp4_boxes_with_impossible_sizes() {
    let dir = TempDir::new();
    let good = mp4(&dir);
    let moov = find_box(&good, b"moov");
    let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut huge = good.clone();
    huge[moov..moov + 4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    variants.push(("moov claims 4 GiB", huge));
    let mut large = good.clone();
    // size 1 means a 64-bit size follows; claim 2^63 by overwriting the start of the payload.
    large[moov..moov + 4].copy_from_slice(&1u32.to_be_bytes());
    large[moov + 8..moov + 16].copy_from_slice(&(1u64 << 63).to_be_bytes());
    variants.push(("moov claims 2^63", large));
    let mut tiny = good.clone();
    tiny[moov..moov + 4].copy_from_slice(&3u32.to_be_bytes());
    variants.push(("moov smaller than its header", tiny));
    for (what, bytes) in variants {
        let path = dir.path("bad.mp4");
        std::fs::write(&path, &bytes).unwrap();
        // FFmpeg may clamp a trailing box to the end of the file and read
        // what is really there; anything else must be an error.
        match modalities::info(&path, &Limits::default()) {
            Err(_) => {}
            Ok(modalities::MediaInfo::Video(v)) => {
                assert!(v.frames <= 5 && v.width == 32, "{what}: {v:?}")
            }
            Ok(other) => panic!("{what}: {other:?}"),
        }
        if let Ok(video) = Video::read(&path, Sampling::All, &Limits::default()) {
            assert!(video.frames.len() <= 5, "{what}");
        }
    }
}

#[test]
fn playlists_and_concat_scripts_posing_as_video_are_never_opened() {
    let dir = TempDir::new();
    let secret = dir.str("secret.mp4");
    make_mp4(&secret);
    let posers = [
        format!("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{secret}\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n"),
        format!("ffconcat version 1.0\nfile '{secret}'\n"),
        format!("[playlist]\nFile1={secret}\n"),
    ];
    for text in posers {
        let path = dir.path("poser.mp4");
        std::fs::write(&path, &text).unwrap();
        let info = modalities::info(&path, &Limits::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&info).unwrap()["kind"],
            "text",
            "detected as what it is"
        );
        let e = Video::read(&path, Sampling::All, &Limits::default()).unwrap_err();
        assert!(
            e.to_string().contains("expected a video, found text"),
            "{e}"
        );
        let e = modalities::convert(&path, &dir.path("out.webm"), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("cannot convert text"), "{e}");
    }
}

fn obj_error(text: &str) -> String {
    Mesh::decode(text.as_bytes(), Some("obj"), &Limits::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn obj_faces_indexing_missing_vertices_and_nan_coordinates() {
    let e = obj_error("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n");
    assert!(e.contains("obj"), "{e}");
    let e = obj_error("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -7 1 2\n");
    assert!(e.contains("obj"), "{e}");
    let e = obj_error("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n");
    assert!(e.contains("non-finite"), "{e}");
    let e = obj_error("v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n");
    assert!(e.contains("non-finite"), "{e}");
}

#[test]
fn obj_mtllib_pointing_outside_is_never_opened() {
    // The geometry loads; the material library is not read (the loader we
    // hand to tobj refuses every path without touching the file system).
    let obj = "mtllib ../../../../etc/shadow\nmtllib /proc/self/environ\nusemtl x\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n";
    let mesh = Mesh::decode(obj.as_bytes(), Some("obj"), &Limits::default()).unwrap();
    assert_eq!((mesh.positions.len(), mesh.triangles.len()), (3, 1));
}

#[test]
fn ply_and_stl_headers_claiming_billions() {
    let ply = "ply\nformat ascii 1.0\nelement vertex 3000000000\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n";
    let e = Mesh::decode(ply.as_bytes(), Some("ply"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("vertex count is 3000000000"), "{e}");
    let mut stl = vec![0u8; 80];
    stl.extend_from_slice(&2_000_000_000u32.to_le_bytes());
    stl.extend_from_slice(&[0; 50]);
    let e = Mesh::decode(&stl, Some("stl"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("claims 2000000000 triangles"), "{e}");
}

fn glb(json: &str, bin: &[u8]) -> Vec<u8> {
    let mut json = json.as_bytes().to_vec();
    while !json.len().is_multiple_of(4) {
        json.push(b' ');
    }
    let total = 12 + 8 + json.len() + if bin.is_empty() { 0 } else { 8 + bin.len() };
    let mut out = b"glTF".to_vec();
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(b"JSON");
    out.extend_from_slice(&json);
    if !bin.is_empty() {
        out.extend_from_slice(&(bin.len() as u32).to_le_bytes());
        out.extend_from_slice(b"BIN\0");
        out.extend_from_slice(bin);
    }
    out
}

const GLB_MESH: &str = r#""meshes":[{"primitives":[{"attributes":{"POSITION":0}}]}],"accessors":[{"bufferView":0,"componentType":5126,"count":3,"type":"VEC3","min":[0,0,0],"max":[1,1,0]}],"bufferViews":[{"buffer":0,"byteLength":36}],"scenes":[{"nodes":[0]}],"nodes":[{"mesh":0}],"scene":0,"asset":{"version":"2.0"}"#;

#[test]
fn glb_buffers_pointing_outside_or_claiming_2_pow_62_bytes() {
    let external = glb(
        &format!(r#"{{"buffers":[{{"byteLength":36,"uri":"../../../etc/passwd"}}],{GLB_MESH}}}"#),
        &[],
    );
    let e = Mesh::decode(&external, Some("glb"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("external file"), "{e}");
    let url = glb(
        &format!(
            r#"{{"buffers":[{{"byteLength":36,"uri":"http://127.0.0.1:9/x.bin"}}],{GLB_MESH}}}"#
        ),
        &[],
    );
    let e = Mesh::decode(&url, Some("glb"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("external file"), "{e}");
    let huge = glb(
        &format!(r#"{{"buffers":[{{"byteLength":4611686018427387904}}],{GLB_MESH}}}"#),
        &[0; 36],
    );
    let e = Mesh::decode(&huge, Some("glb"), &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("claims 4611686018427387904 bytes"),
        "{e}"
    );
    // The same file with honest sizes loads.
    let mut bin = Vec::new();
    for v in [0f32, 0., 0., 1., 0., 0., 0., 1., 0.] {
        bin.extend_from_slice(&v.to_le_bytes());
    }
    let ok = glb(
        &format!(r#"{{"buffers":[{{"byteLength":36}}],{GLB_MESH}}}"#),
        &bin,
    );
    let mesh = Mesh::decode(&ok, Some("glb"), &Limits::default()).unwrap();
    assert_eq!((mesh.positions.len(), mesh.triangles.len()), (3, 1));
}

/// Valid files of every format, made by the independent tools.
fn corpus(dir: &TempDir) -> Vec<PathBuf> {
    let src = dir.str("src.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=40x30",
        "-frames:v",
        "1",
        &src,
    ]);
    let wav = dir.str("src.wav");
    tool(
        "sox",
        &[
            "-n", "-r", "22050", "-c", "1", "-b", "16", &wav, "synth", "0.3", "sine", "440",
        ],
    );
    let mut files: Vec<PathBuf> = vec![src.clone().into(), wav.clone().into()];
    for (name, args) in [
        ("a.jpg", vec![]),
        ("a.gif", vec![]),
        ("a.bmp", vec![]),
        ("a.webp", vec!["-c:v", "libwebp"]),
    ] {
        let out = dir.str(name);
        let mut all = vec!["-i", src.as_str()];
        all.extend(args);
        all.push(&out);
        ffmpeg(&all);
        files.push(out.into());
    }
    for name in ["a.flac", "a.mp3", "a.ogg", "a.opus", "a.m4a", "a.aac"] {
        let out = dir.str(name);
        ffmpeg(&["-i", &wav, &out]);
        files.push(out.into());
    }
    for name in ["v.mp4", "v.webm", "v.avi"] {
        let out = dir.str(name);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=32x32:rate=5",
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            &out,
        ]);
        files.push(out.into());
    }
    for name in [
        "box.obj",
        "sphere_binary.ply",
        "sphere_ascii.ply",
        "cylinder.stl",
        "cylinder_ascii.stl",
        "cylinder.glb",
    ] {
        files.push(common::fixture(&format!("meshes/{name}")));
    }
    files
}

#[test]
fn truncated_files_of_every_format_fail_cleanly() {
    let dir = TempDir::new();
    let limits = Limits::default();
    for file in corpus(&dir) {
        let bytes = std::fs::read(&file).unwrap();
        modalities::info(&file, &limits)
            .unwrap_or_else(|e| panic!("{}: the intact file must read: {e}", file.display()));
        let ext = file.extension().unwrap().to_str().unwrap().to_owned();
        for cut in [
            1,
            4,
            12,
            40,
            bytes.len() / 4,
            bytes.len() / 2,
            bytes.len() * 3 / 4,
            bytes.len() - 1,
        ] {
            let cut = cut.min(bytes.len() - 1);
            let path = dir.path(&format!("cut.{ext}"));
            std::fs::write(&path, &bytes[..cut]).unwrap();
            // Ok (a decodable prefix) or a typed error; a panic fails the test.
            let result = modalities::info(&path, &limits);
            // A few bytes are either an error or, when they happen to be
            // UTF-8 ("RIFF"), text: never media of the original kind.
            if cut <= 12 {
                let kind = result
                    .as_ref()
                    .ok()
                    .map(|i| serde_json::to_value(i).unwrap()["kind"].clone());
                assert!(
                    kind.is_none() || kind == Some("text".into()),
                    "{} cut to {cut} bytes: {result:?}",
                    file.display()
                );
            }
            if let Err(e) = result {
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// A fuzz regression must fail for a reason the decoders found, not because
/// `guard` caught a panic (which would hide the bug coming back).
fn not_a_caught_panic<T: std::fmt::Debug>(result: modalities::Result<T>) -> modalities::Result<T> {
    if let Err(e) = &result {
        assert!(
            !e.to_string()
                .contains("the decoder failed on malformed input"),
            "a decoder panicked: {e}"
        );
    }
    result
}

/// Fuzzing (fuzz/, target `audio`): a Matroska EBML size byte of zero made
/// symphonia's demuxer overflow a shift. Matroska audio now goes to FFmpeg.
#[test]
fn fuzz_audio_mkv_vint_overflow() {
    let bytes = std::fs::read(common::fixture("fuzz/audio-mkv-vint-overflow.bin")).unwrap();
    assert!(not_a_caught_panic(Audio::decode(&bytes, &Limits::default())).is_err());
}

/// Fuzzing (fuzz/, target `obj`): a GLB header whose length is under 12
/// made the gltf crate subtract past zero. The header is now checked first.
#[test]
fn fuzz_glb_length_underflow() {
    let bytes = std::fs::read(common::fixture("fuzz/glb-length-underflow.bin")).unwrap();
    let e = not_a_caught_panic(Mesh::decode(&bytes, Some("obj"), &Limits::default())).unwrap_err();
    assert!(e.to_string().contains("glb"), "{e}");
}

/// Fuzzing (fuzz/, target `glb`): a primitive naming an accessor that does
/// not exist made gltf-json's validator index out of bounds. References are
/// now checked first.
#[test]
fn fuzz_glb_missing_accessor() {
    let bytes = std::fs::read(common::fixture("fuzz/glb-missing-accessor.bin")).unwrap();
    let e = Mesh::decode(&bytes, Some("glb"), &Limits::default()).unwrap_err();
    assert!(
        e.to_string().contains("accessors[1], which does not exist"),
        "{e}"
    );
}

/// Fuzzing (fuzz/, target `audio`): 57 bytes detected as MP4 made
/// symphonia's MP4 reader allocate what a bogus atom claimed (over 2 GiB).
/// MP4 audio now goes to FFmpeg.
#[test]
fn fuzz_audio_mp4_atom_oom() {
    let bytes = std::fs::read(common::fixture("fuzz/audio-mp4-atom-oom.bin")).unwrap();
    assert!(not_a_caught_panic(Audio::decode(&bytes, &Limits::default())).is_err());
}

/// Fuzzing (fuzz/, target `audio`): a FLAC PICTURE block claiming 4 GiB of
/// MIME type. FLAC metadata blocks are now checked against the file first.
#[test]
fn fuzz_audio_flac_picture_oom() {
    let bytes = std::fs::read(common::fixture("fuzz/audio-flac-picture-oom.bin")).unwrap();
    let e = not_a_caught_panic(Audio::decode(&bytes, &Limits::default())).unwrap_err();
    assert!(e.to_string().contains("flac"), "{e}");
}

/// Fuzzing (fuzz/, target `glb`): a POSITION accessor of the wrong element
/// type tripped an assertion inside the gltf crate's reader.
#[test]
fn fuzz_glb_accessor_type() {
    let bytes = std::fs::read(common::fixture("fuzz/glb-accessor-type.bin")).unwrap();
    assert!(not_a_caught_panic(Mesh::decode(&bytes, Some("glb"), &Limits::default())).is_err());
}

/// Fuzzing (fuzz/, target `audio`): a short ADTS stream made symphonia's
/// duration estimate call `step_by(0)`. ADTS now goes to FFmpeg.
#[test]
fn fuzz_audio_adts_step_zero() {
    let bytes = std::fs::read(common::fixture("fuzz/audio-adts-step-zero.bin")).unwrap();
    let _ = not_a_caught_panic(Audio::decode(&bytes, &Limits::default()));
}
