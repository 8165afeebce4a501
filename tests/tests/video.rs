#![allow(clippy::unwrap_used)]
//! Video made by FFmpeg's command line in every container and codec anyforge
//! reads; video written by anyforge, checked with ffprobe and FFmpeg.

mod common;

use std::path::Path;

use common::{ffmpeg, ffprobe, psnr, TempDir};
use modalities::video::{probe, Sampling};
use modalities::{Format, Image, Limits, Rational, Video};

const W: u32 = 64;
const H: u32 = 48;

/// 2 s of FFmpeg's test pattern at 10 fps, with a 440 Hz tone when `audio` is given.
fn make(dir: &TempDir, name: &str, video: &[&str], audio: Option<&[&str]>) -> String {
    let out = dir.str(name);
    let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10"];
    if audio.is_some() {
        args.extend_from_slice(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend_from_slice(&["-t", "2"]);
    args.extend_from_slice(video);
    args.extend_from_slice(audio.unwrap_or(&["-an"]));
    args.push(&out);
    ffmpeg(&args);
    out
}

/// Frame `n` as FFmpeg's command line decodes it.
fn ffmpeg_frame(dir: &TempDir, video: &str, n: u32) -> Image {
    let out = dir.str(&format!("frame{n}.png"));
    ffmpeg(&[
        "-i",
        video,
        "-vf",
        &format!("select=eq(n\\,{n})"),
        "-frames:v",
        "1",
        "-pix_fmt",
        "rgb24",
        &out,
    ]);
    Image::read(Path::new(&out), &Limits::default()).unwrap()
}

type Case = (
    &'static str,
    &'static [&'static str],
    Option<&'static [&'static str]>,
);

const CASES: [Case; 9] = [
    (
        "h264.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        Some(&["-c:a", "aac"]),
    ),
    (
        "h265.mp4",
        &[
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-tag:v",
            "hvc1",
            "-x265-params",
            "log-level=error",
        ],
        Some(&["-c:a", "aac"]),
    ),
    (
        "h264.mov",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        Some(&["-c:a", "pcm_s16le"]),
    ),
    (
        "vp8.webm",
        &["-c:v", "libvpx", "-b:v", "500k"],
        Some(&["-c:a", "libvorbis"]),
    ),
    (
        "vp9.webm",
        &[
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "500k",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ],
        Some(&["-c:a", "libopus"]),
    ),
    (
        "av1.mkv",
        &["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "30"],
        Some(&["-c:a", "flac"]),
    ),
    (
        "mjpeg.avi",
        &["-c:v", "mjpeg", "-q:v", "2"],
        Some(&["-c:a", "pcm_s16le"]),
    ),
    (
        "mpeg4.avi",
        &["-c:v", "mpeg4", "-q:v", "2"],
        Some(&["-c:a", "libmp3lame"]),
    ),
    ("anim.gif", &[], None),
];

#[test]
fn every_container_and_codec_probes_and_decodes_like_ffmpeg() {
    let dir = TempDir::new();
    let limits = Limits::default();
    for (name, video, audio) in CASES {
        let path = make(&dir, name, video, audio);
        let format = modalities::detect_file(Path::new(&path), &limits)
            .unwrap()
            .0;
        let info =
            probe(Path::new(&path), format, &limits).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((info.width, info.height, info.frames), (W, H, 20), "{name}");
        assert!((info.fps - 10.0).abs() < 1e-6, "{name}: fps {}", info.fps);
        // The container's duration covers its longest stream (MP3 pads a frame).
        assert!(
            (info.duration_s - 2.0).abs() < 0.15,
            "{name}: {} s",
            info.duration_s
        );
        assert_eq!(info.has_audio, audio.is_some(), "{name}");

        let all = Video::read(Path::new(&path), Sampling::All, &limits)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(all.frames.len(), 20, "{name}");
        assert_eq!(all.fps, Rational::new(10, 1).unwrap(), "{name}");
        for n in [0, 13] {
            // The same libavcodec decoder: only the RGB conversion may differ.
            let p = psnr(&all.frames[n as usize], &ffmpeg_frame(&dir, &path, n));
            assert!(p > 35.0, "{name} frame {n}: PSNR {p:.1} dB against FFmpeg");
        }
        if audio.is_some() {
            let track = all
                .audio
                .as_ref()
                .unwrap_or_else(|| panic!("{name}: audio track"));
            assert!(
                (track.duration_s() - 2.0).abs() < 0.1,
                "{name}: audio {:.3} s",
                track.duration_s()
            );
        }
    }
}

#[test]
fn sampling_by_frame_count_and_fps() {
    let dir = TempDir::new();
    let path = make(
        &dir,
        "s.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        None,
    );
    let limits = Limits::default();
    let five = Video::read(Path::new(&path), Sampling::Frames(5), &limits).unwrap();
    assert_eq!(five.frames.len(), 5);
    // Evenly spaced from first to last: frames 0, 4, 9, 14, 19.
    for (k, n) in [(0, 0), (2, 9), (4, 19)] {
        let p = psnr(&five.frames[k], &ffmpeg_frame(&dir, &path, n));
        assert!(p > 35.0, "sample {k} should be frame {n}: PSNR {p:.1} dB");
    }
    let half_rate = Video::read(
        Path::new(&path),
        Sampling::Fps(Rational::new(5, 1).unwrap()),
        &limits,
    )
    .unwrap();
    assert_eq!(half_rate.frames.len(), 10);
    assert_eq!(half_rate.fps, Rational::new(5, 1).unwrap());
    let p = psnr(&half_rate.frames[3], &ffmpeg_frame(&dir, &path, 6));
    assert!(p > 35.0, "5 fps sample 3 is frame 6: PSNR {p:.1} dB");
    // Holding every frame past the limit is refused, with advice.
    let tight = Limits {
        max_video_frames: 8,
        ..Limits::default()
    };
    let err = Video::read(Path::new(&path), Sampling::All, &tight)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample the video"), "{err}");
    assert!(Video::read(Path::new(&path), Sampling::Frames(8), &tight).is_ok());
}

#[test]
fn our_mp4_and_webm_are_what_ffprobe_expects() {
    let dir = TempDir::new();
    let source = make(
        &dir,
        "src.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10"],
        Some(&["-c:a", "aac"]),
    );
    let video = Video::read(Path::new(&source), Sampling::All, &Limits::default()).unwrap();
    for (name, vcodec, acodec) in [("ours.mp4", "h264", "aac"), ("ours.webm", "vp9", "opus")] {
        let out = dir.path(name);
        video.write(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ffprobe(&out, "v:0", "codec_name"), vcodec, "{name}");
        assert_eq!(ffprobe(&out, "v:0", "pix_fmt"), "yuv420p", "{name}");
        assert_eq!(ffprobe(&out, "v:0", "r_frame_rate"), "10/1", "{name}");
        assert_eq!(ffprobe(&out, "a:0", "codec_name"), acodec, "{name}");
        let back = Video::read(&out, Sampling::All, &Limits::default()).unwrap();
        assert_eq!(back.frames.len(), 20, "{name}");
        let p = psnr(&back.frames[10], &video.frames[10]);
        assert!(
            p > 28.0,
            "{name}: frame 10 PSNR {p:.1} dB after re-encoding"
        );
        let audio = back.audio.unwrap_or_else(|| panic!("{name}: audio track"));
        assert!(
            (audio.duration_s() - 2.0).abs() < 0.1,
            "{name}: audio {:.3} s",
            audio.duration_s()
        );
    }
}

#[test]
fn exact_ntsc_rate_survives_writing() {
    let dir = TempDir::new();
    let frames = (0..12)
        .map(|i| Image::filled(32, 16, [i * 20, 100, 200]))
        .collect();
    let video = Video::new(Rational::new(30_000, 1_001).unwrap(), frames, None).unwrap();
    let out = dir.path("ntsc.mp4");
    video.write(&out).unwrap();
    assert_eq!(ffprobe(&out, "v:0", "r_frame_rate"), "30000/1001");
    let info = probe(&out, Format::Mp4, &Limits::default()).unwrap();
    assert_eq!(info.frames, 12);
    assert!((info.fps - 30_000.0 / 1_001.0).abs() < 1e-6);
}

#[test]
fn convert_between_containers_streams_frames() {
    let dir = TempDir::new();
    let limits = Limits::default();
    let mp4 = make(
        &dir,
        "in.mp4",
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
        Some(&["-c:a", "aac"]),
    );
    let webm = dir.path("out.webm");
    modalities::convert(Path::new(&mp4), &webm, &limits).unwrap();
    let info = probe(&webm, Format::Matroska, &limits).unwrap();
    assert_eq!(
        (info.width, info.height, info.frames, info.has_audio),
        (W, H, 20, true)
    );
    // An animated GIF becomes a video; odd sizes are cropped to even for yuv420p.
    let gif = dir.str("odd.gif");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=33x21:rate=10",
        "-t",
        "1",
        &gif,
    ]);
    let mp4_out = dir.path("gif.mp4");
    modalities::convert(Path::new(&gif), &mp4_out, &limits).unwrap();
    let info = probe(&mp4_out, Format::Mp4, &limits).unwrap();
    assert_eq!(
        (info.width, info.height, info.frames, info.has_audio),
        (32, 20, 10, false)
    );
}
