//! Multipart uploads: image edits, transcriptions, and what they refuse.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};

use super::{b64, json_of, send, STATE};

/// A multipart/form-data body: (name, file name, bytes) per field.
pub(super) fn form(fields: &[(&str, Option<&str>, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "anyforgeboundary7";
    let mut body = Vec::new();
    for (name, file, bytes) in fields {
        body.extend(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend(format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes()),
            None => body.extend(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(super) async fn post_form(
    uri: &str,
    fields: &[(&str, Option<&str>, Vec<u8>)],
) -> (StatusCode, Vec<u8>, String) {
    let (content_type, body) = form(fields);
    let request = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let reply = send(&STATE, request).await;
    (reply.status, reply.bytes, reply.content_type)
}

/// A PNG whose header claims `w` x `h` pixels (a decompression bomb's shape).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = modalities::Image::filled(2, 2, [0, 0, 0])
        .encode(modalities::Format::Png, None)
        .unwrap();
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = png[12..29].iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
        c
    });
    png[29..33].copy_from_slice(&(!crc).to_be_bytes());
    png
}

#[tokio::test]
async fn image_edits_and_transcriptions_take_uploads() {
    let png = modalities::Image::filled(48, 32, [10, 200, 10])
        .encode(modalities::Format::Png, None)
        .unwrap();
    let (status, bytes, _) = post_form(
        "/v1/images/edits",
        &[
            ("image", Some("in.png"), png.clone()),
            ("mask", Some("mask.png"), png.clone()),
            ("prompt", None, b"make it red".to_vec()),
            ("seed", None, b"3".to_vec()),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v = json_of(&bytes);
    let image = modalities::Image::decode(
        &b64(&v["data"][0]["b64_json"]),
        &modalities::Limits::default(),
    )
    .unwrap();
    let layout = STATE.runner.pack().image.as_ref().unwrap();
    assert_eq!(
        image.width as usize,
        STATE.runner.pack().defaults().image_grid[1] * layout.downsample
    );

    let voice = std::fs::read(pipelines::pack::random_dir().join("voices/default.wav")).unwrap();
    for (format, check) in [
        ("json", "\"text\""),
        ("text", ""),
        ("srt", "00:00:00,000 --> 00:00:00,500"),
        ("vtt", "WEBVTT"),
        ("verbose_json", "\"segments\""),
    ] {
        let (status, bytes, _) = post_form(
            "/v1/audio/transcriptions",
            &[
                ("file", Some("voice.wav"), voice.clone()),
                ("model", None, b"anyforge-random".to_vec()),
                ("response_format", None, format.as_bytes().to_vec()),
            ],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{format}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            String::from_utf8_lossy(&bytes).contains(check),
            "{format}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }

    type Fields<'a> = Vec<(&'a str, Option<&'a str>, Vec<u8>)>;
    let bad: [(&str, Fields, &str); 4] = [
        (
            "/v1/audio/transcriptions",
            vec![(
                "file",
                Some("x.wav"),
                b"RIFF\x10\0\0\0WAVEjunkjunk".to_vec(),
            )],
            "file",
        ),
        ("/v1/audio/transcriptions", vec![], "file"),
        (
            "/v1/images/edits",
            vec![
                ("image", Some("bomb.png"), png_claiming(100_000, 100_000)),
                ("prompt", None, b"x".to_vec()),
            ],
            "image",
        ),
        (
            "/v1/images/edits",
            vec![("image", Some("in.png"), png)],
            "prompt",
        ),
    ];
    for (uri, fields, param) in bad {
        let (status, bytes, _) = post_form(uri, &fields).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{uri} {param}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(json_of(&bytes)["error"]["param"], param);
    }
}
