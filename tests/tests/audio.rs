#![allow(clippy::unwrap_used)]
//! Audio written by sox and FFmpeg, read by anyforge; audio written by
//! anyforge, read by FFmpeg's command line.

mod common;

use std::path::Path;

use common::{ffmpeg, ffmpeg_decode_audio, rms, tone_hz, tool, TempDir};
use modalities::{Audio, Limits};

fn read(path: &str) -> Audio {
    Audio::read(Path::new(path), &Limits::default()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A stereo test signal from sox: 440 Hz left, 660 Hz right, at half scale.
fn sox_tone(dir: &TempDir, name: &str, args: &[&str]) -> String {
    let out = dir.str(name);
    let mut all: Vec<&str> = vec!["-n", "-r", "22050", "-c", "2"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        &out, "synth", "0.5", "sine", "440", "sine", "660", "vol", "0.5",
    ]);
    tool("sox", &all);
    out
}

fn max_error(a: &Audio, b: &Audio) -> f32 {
    assert_eq!(
        (a.sample_rate, a.channels, a.frames()),
        (b.sample_rate, b.channels, b.frames()),
        "audio shapes differ"
    );
    a.samples
        .iter()
        .zip(&b.samples)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn wav_every_sample_format_and_flac_match_sox() {
    let dir = TempDir::new();
    let cases: [(&str, &[&str], f32); 6] = [
        (
            "u8.wav",
            &["-e", "unsigned-integer", "-b", "8"],
            1.0 / 128.0,
        ),
        (
            "s16.wav",
            &["-e", "signed-integer", "-b", "16"],
            1.0 / 32768.0,
        ),
        (
            "s24.wav",
            &["-e", "signed-integer", "-b", "24"],
            1.0 / 8_388_608.0,
        ),
        ("s32.wav", &["-e", "signed-integer", "-b", "32"], 1e-7),
        ("f32.wav", &["-e", "floating-point", "-b", "32"], 0.0),
        ("s16.flac", &["-b", "16"], 1.0 / 32768.0),
    ];
    for (name, args, tolerance) in cases {
        let file = sox_tone(&dir, name, args);
        // sox re-reads its own file and writes it as float: the exact values we must see.
        let truth = dir.str(&format!("{name}.f32.wav"));
        tool("sox", &[&file, "-e", "floating-point", "-b", "32", &truth]);
        let err = max_error(&read(&file), &read(&truth));
        assert!(
            err <= tolerance,
            "{name}: max error {err}, allowed {tolerance}"
        );
    }
}

#[test]
fn lossy_formats_from_ffmpeg_keep_rate_length_pitch_and_level() {
    let dir = TempDir::new();
    let src = dir.str("src.wav");
    tool(
        "sox",
        &[
            "-n", "-r", "48000", "-c", "1", "-b", "16", &src, "synth", "1.0", "sine", "440", "vol",
            "0.5",
        ],
    );
    let cases: [(&str, &[&str]); 6] = [
        ("tone.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"]),
        ("tone.ogg", &["-c:a", "libvorbis", "-q:a", "5"]),
        ("tone.opus", &["-c:a", "libopus", "-b:a", "96k"]),
        ("tone.aac", &["-c:a", "aac", "-b:a", "128k"]),
        ("tone.m4a", &["-c:a", "aac", "-b:a", "128k"]),
        ("tone.flac", &["-c:a", "flac"]),
    ];
    for (name, args) in cases {
        let out = dir.str(name);
        let mut all = vec!["-i", src.as_str()];
        all.extend_from_slice(args);
        all.push(&out);
        ffmpeg(&all);
        let audio = read(&out);
        assert_eq!((audio.sample_rate, audio.channels), (48_000, 1), "{name}");
        // ADTS carries no gapless information: allow its priming frames.
        let slack = if name.ends_with(".aac") { 0.05 } else { 0.03 };
        assert!(
            (audio.duration_s() - 1.0).abs() <= slack,
            "{name}: {:.4} s",
            audio.duration_s()
        );
        let pitch = tone_hz(&audio);
        assert!((pitch - 440.0).abs() < 5.0, "{name}: {pitch:.1} Hz");
        let level = rms(&audio.samples);
        assert!(
            (level - 0.5 / 2f32.sqrt()).abs() < 0.03,
            "{name}: rms {level}"
        );
    }
}

#[test]
fn our_writers_are_read_by_ffmpeg() {
    let dir = TempDir::new();
    let src = dir.str("src.wav");
    tool(
        "sox",
        &[
            "-n", "-r", "44100", "-c", "2", "-b", "16", &src, "synth", "1.0", "sine", "440",
            "sine", "440", "vol", "0.5",
        ],
    );
    let audio = read(&src);
    for ext in ["wav", "flac", "mp3", "opus", "ogg", "aac", "m4a"] {
        let out = dir.path(&format!("ours.{ext}"));
        audio.write(&out).unwrap_or_else(|e| panic!("{ext}: {e}"));
        let (rate, channels, samples) = ffmpeg_decode_audio(&out);
        let theirs = Audio::new(rate, channels, samples).unwrap();
        let expected_rate = if matches!(ext, "opus" | "ogg") {
            48_000
        } else {
            44_100
        };
        assert_eq!(
            (theirs.sample_rate, theirs.channels),
            (expected_rate, 2),
            "{ext}"
        );
        // FFmpeg's CLI does not trim MP3/AAC priming, so allow an encoder frame or two.
        assert!(
            (theirs.duration_s() - 1.0).abs() < 0.06,
            "{ext}: {:.4} s",
            theirs.duration_s()
        );
        let pitch = tone_hz(&theirs);
        assert!((pitch - 440.0).abs() < 5.0, "{ext}: {pitch:.1} Hz");
        if matches!(ext, "wav" | "flac") {
            assert!(
                max_error(&theirs, &audio) <= 1.0 / 32768.0,
                "{ext} is lossless"
            );
        }
        // And we read back what we wrote.
        let ours = Audio::read(&out, &Limits::default()).unwrap();
        assert!(
            (ours.duration_s() - 1.0).abs() < 0.06,
            "{ext}: we read {:.4} s",
            ours.duration_s()
        );
    }
}
