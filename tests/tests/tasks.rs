//! Every generation task end to end on the random-weight pack: outputs decode
//! with the requested properties, generated tokens lie in their modality's
//! range and structure, seeds reproduce outputs exactly, edits keep the
//! codes outside the mask, and packs that are wrong are refused.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use modalities::{Audio, Image, Media};
use pipelines::generate::{CancelToken, EngineConfig};
use pipelines::pack::{self, Pack};
use pipelines::tasks::{
    Message, Part, Runner, StreamWindow, TaskInputs, TaskName, TaskOptions, TaskOutput,
};

static RUNNER: LazyLock<Runner> = LazyLock::new(|| {
    let pack = Pack::load(&pack::random_dir()).unwrap();
    Runner::new(Arc::new(pack), EngineConfig::default())
});

fn options(prompt: &str, seed: u64) -> TaskOptions {
    TaskOptions {
        prompt: prompt.into(),
        seed: Some(seed),
        ..TaskOptions::default()
    }
}

fn media(output: &TaskOutput) -> &Media {
    match output {
        TaskOutput::Media(m) => m,
        TaskOutput::Text(t) => panic!("expected media, got text {t:?}"),
    }
}

fn test_image(width: u32, height: u32) -> Image {
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            pixels.extend([(x * 255 / width) as u8, (y * 255 / height) as u8, 90]);
        }
    }
    Image::new(width, height, 3, pixels).unwrap()
}

#[test]
fn text_to_image_makes_n_images_of_image_codes_and_a_seed_repeats_them() {
    let r = &*RUNNER;
    let layout = r.pack().image.as_ref().unwrap();
    let mut o = options("a red circle", 11);
    o.n = 2;
    o.size = Some([4, 6]);
    let result = r
        .run(TaskName::TextToImage, &o, &TaskInputs::default())
        .unwrap();
    assert_eq!((result.seed, result.outputs.len()), (11, 2));
    for (tokens, output) in result.tokens.iter().zip(&result.outputs) {
        assert_eq!(tokens.len(), 4 * 6 + 2);
        assert_eq!((tokens[0], tokens[25]), (layout.begin, layout.end));
        assert!(
            tokens[1..25].iter().all(|t| layout.range().contains(t)),
            "{tokens:?}"
        );
        let Media::Image(image) = media(output) else {
            panic!()
        };
        let d = layout.downsample as u32;
        assert_eq!((image.width, image.height), (6 * d, 4 * d));
    }
    assert_ne!(
        result.tokens[0], result.tokens[1],
        "outputs use seeds 11 and 12"
    );
    let again = r
        .run(TaskName::TextToImage, &o, &TaskInputs::default())
        .unwrap();
    assert_eq!(again.tokens, result.tokens);
    assert_eq!(again.outputs, result.outputs, "byte-identical images");
    let mut other = o.clone();
    other.seed = Some(12);
    other.n = 1;
    let shifted = r
        .run(TaskName::TextToImage, &other, &TaskInputs::default())
        .unwrap();
    assert_eq!(
        shifted.tokens[0], result.tokens[1],
        "output i uses seed + i"
    );
}

#[test]
fn image_edit_keeps_every_code_outside_the_mask() {
    let r = &*RUNNER;
    let layout = r.pack().image.as_ref().unwrap();
    let grid = r.pack().defaults().image_grid;
    let source = test_image(100, 60);
    // Regenerate the top half only.
    let mut mask = Image::filled(100, 60, [0, 0, 0]);
    for px in mask.pixels.chunks_mut(3).take(100 * 30) {
        px.copy_from_slice(&[255, 255, 255]);
    }
    let inputs = TaskInputs {
        image: Some(source.clone()),
        mask: Some(mask),
        ..TaskInputs::default()
    };
    let result = r
        .run(TaskName::ImageEdit, &options("make it green", 3), &inputs)
        .unwrap();
    let codes = layout.encode(&source, grid).unwrap();
    let generated = &result.tokens[0][1..result.tokens[0].len() - 1];
    let (h, w) = (grid[0], grid[1]);
    assert_eq!(generated.len(), h * w);
    let mut regenerated = 0;
    for r_ in 0..h {
        for c in 0..w {
            let token = generated[r_ * w + c];
            let source_token = layout.first + codes.codes[r_][c];
            if r_ >= h / 2 {
                assert_eq!(token, source_token, "kept cell ({r_}, {c}) changed");
            } else {
                assert!(layout.range().contains(&token));
                regenerated += usize::from(token != source_token);
            }
        }
    }
    assert!(regenerated > 0, "the masked half was regenerated");
    let Media::Image(image) = media(&result.outputs[0]) else {
        panic!()
    };
    assert_eq!(image.width as usize, w * layout.downsample);
}

/// What a request reads: the pack's template, text tokenized around the
/// media block spliced in where its placeholder stands.
#[test]
fn an_edits_prompt_is_its_template_with_the_image_block_in_its_place() {
    let r = &*RUNNER;
    let layout = r.pack().image.as_ref().unwrap();
    let source = test_image(64, 64);
    let inputs = TaskInputs {
        image: Some(source.clone()),
        ..TaskInputs::default()
    };
    let prompt = r
        .prompt(TaskName::ImageEdit, &options("make it green", 1), &inputs)
        .unwrap();
    let tokenizer = &r.pack().model.tokenizer;
    let mut expected = tokenizer.encode("<|im_start|>user\n", false).unwrap();
    let codes = layout
        .encode(&source, r.pack().defaults().image_grid)
        .unwrap();
    expected.extend(layout.tokens(&codes));
    expected.extend(
        tokenizer
            .encode(
                "Edit: make it green<|im_end|>\n<|im_start|>assistant\n",
                false,
            )
            .unwrap(),
    );
    assert_eq!(prompt, expected);
    let e = r
        .prompt(
            TaskName::ImageEdit,
            &options("make it green", 1),
            &TaskInputs::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("image"), "{e}");
}

#[test]
fn streamed_speech_comes_in_chunks_that_add_up_to_the_whole_utterance() {
    let r = &*RUNNER;
    let layout = r.pack().audio.as_ref().unwrap();
    let mut o = options("Hello there, this is streamed.", 3);
    o.seconds = Some(4.0);
    let whole = r
        .run(TaskName::TextToSpeech, &o, &TaskInputs::default())
        .unwrap();
    let frames = (whole.tokens[0].len() - 2) / layout.frame_len();
    assert!(
        frames >= 6,
        "{frames} frames: pick a seed that speaks longer"
    );
    let Media::Audio(whole) = media(&whole.outputs[0]) else {
        panic!()
    };
    let stream = |window| -> Vec<Audio> {
        r.speech_stream(&o, window, &CancelToken::new())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // One chunk holding every frame is exactly the whole decode.
    let one = stream(StreamWindow {
        chunk: frames + 1,
        context: 0,
    });
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].samples, whole.samples);
    // Chunks of two frames, each decoded with two frames of context on
    // either side: as many samples in total, close to the whole decode.
    let chunks = stream(StreamWindow {
        chunk: 2,
        context: 2,
    });
    // Full chunks while later frames give context; what is left at the end
    // comes as one.
    let per_frame = whole.samples.len() / frames;
    let (last, full) = chunks.split_last().unwrap();
    assert!(full.iter().all(|c| c.samples.len() == 2 * per_frame));
    assert!((1..=4).contains(&(last.samples.len() / per_frame)));
    assert_eq!(full.len(), (frames - 2 - 1) / 2);
    let joined: Vec<f32> = chunks.iter().flat_map(|c| c.samples.clone()).collect();
    assert_eq!(joined.len(), whole.samples.len());
    let power = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let error: Vec<f32> = joined
        .iter()
        .zip(&whole.samples)
        .map(|(a, b)| a - b)
        .collect();
    let ratio = (power(&error) / power(&whole.samples)).sqrt();
    assert!(
        ratio < 1e-3,
        "streamed audio is {ratio:.2e} (relative RMS) off the whole decode"
    );
    // Speed needs the whole utterance.
    o.speed = 1.5;
    let e = r
        .speech_stream(&o, StreamWindow::default(), &CancelToken::new())
        .err()
        .unwrap();
    assert!(e.to_string().contains("speed"), "{e}");
}

#[test]
fn text_to_speech_writes_whole_snac_frames_and_speed_shortens_the_audio() {
    let r = &*RUNNER;
    let layout = r.pack().audio.as_ref().unwrap();
    let mut o = options("Hello there.", 5);
    o.seconds = Some(1.0);
    let result = r
        .run(TaskName::TextToSpeech, &o, &TaskInputs::default())
        .unwrap();
    let tokens = &result.tokens[0];
    assert_eq!(
        (tokens[0], *tokens.last().unwrap()),
        (layout.begin, layout.end)
    );
    let body = &tokens[1..tokens.len() - 1];
    let n = layout.frame_len();
    assert!(
        !body.is_empty() && body.len().is_multiple_of(n),
        "{} tokens",
        body.len()
    );
    for (i, t) in body.iter().enumerate() {
        assert!(layout.position_range(i % n).contains(t), "token {i} = {t}");
    }
    let frames = body.len() / n;
    let frame_s = layout.samples_per_frame() as f64 / f64::from(layout.sample_rate);
    assert!(
        frames as f64 * frame_s <= 1.0 + frame_s,
        "capped at one second"
    );
    let Media::Audio(audio) = media(&result.outputs[0]) else {
        panic!()
    };
    assert_eq!(audio.sample_rate, layout.sample_rate);
    assert!((audio.duration_s() - frames as f64 * frame_s).abs() <= frame_s);

    let again = r
        .run(TaskName::TextToSpeech, &o, &TaskInputs::default())
        .unwrap();
    assert_eq!(again.outputs, result.outputs, "byte-identical audio");
    o.speed = 1.5;
    let fast = r
        .run(TaskName::TextToSpeech, &o, &TaskInputs::default())
        .unwrap();
    let Media::Audio(fast_audio) = media(&fast.outputs[0]) else {
        panic!()
    };
    let fast_frames = (fast.tokens[0].len() - 2) / n;
    let want = fast_frames as f64 * frame_s / 1.5;
    assert!(
        (fast_audio.duration_s() - want).abs() <= frame_s,
        "{} s, want {want}",
        fast_audio.duration_s()
    );
}

#[test]
fn text_to_video_has_the_frames_and_fps_asked_for_and_image_to_video_starts_from_the_image() {
    let r = &*RUNNER;
    let pack = r.pack();
    let layout = pack.image.as_ref().unwrap();
    let mut o = options("a ball rolling", 8);
    o.seconds = Some(1.0);
    o.size = Some([4, 4]);
    let result = r
        .run(TaskName::TextToVideo, &o, &TaskInputs::default())
        .unwrap();
    let Media::Video(video) = media(&result.outputs[0]) else {
        panic!()
    };
    let fps = pack.defaults().video_fps.to_rational().unwrap();
    assert_eq!(video.fps, fps);
    assert_eq!(video.frames.len(), fps.as_f64().round() as usize);
    assert_eq!(video.width as usize, 4 * layout.downsample);
    let video_layout = pack.video.as_ref().unwrap();
    let tokens = &result.tokens[0];
    assert_eq!(
        (tokens[0], *tokens.last().unwrap()),
        (video_layout.begin, video_layout.end)
    );
    for frame in tokens[1..tokens.len() - 1].chunks(18) {
        assert_eq!((frame[0], frame[17]), (layout.begin, layout.end));
        assert!(frame[1..17].iter().all(|t| layout.range().contains(t)));
    }
    let again = r
        .run(TaskName::TextToVideo, &o, &TaskInputs::default())
        .unwrap();
    assert_eq!(again.outputs, result.outputs);

    let start = test_image(64, 64);
    let inputs = TaskInputs {
        image: Some(start.clone()),
        ..TaskInputs::default()
    };
    let animated = r.run(TaskName::ImageToVideo, &o, &inputs).unwrap();
    let codes = layout.encode(&start, [4, 4]).unwrap();
    let first: Vec<u32> = codes
        .codes
        .iter()
        .flatten()
        .map(|c| layout.first + c)
        .collect();
    assert_eq!(
        &animated.tokens[0][2..18],
        &first[..],
        "the first frame is the image's codes"
    );
}

fn assert_valid_mesh(output: &TaskOutput) {
    let Media::Mesh(mesh) = media(output) else {
        panic!()
    };
    assert!(!mesh.triangles.is_empty());
    mesh.validate().unwrap();
    assert!(mesh
        .triangles
        .iter()
        .flatten()
        .all(|&i| (i as usize) < mesh.positions.len()));
}

#[test]
fn text_to_mesh_in_the_vocab_layout_makes_faces_of_mesh_tokens() {
    let r = &*RUNNER;
    let Some(pack::MeshLayout::Vocab {
        bins,
        first,
        begin,
        end,
        ..
    }) = r.pack().mesh
    else {
        panic!("the random pack writes meshes as tokens")
    };
    let result = r
        .run(
            TaskName::TextToMesh,
            &options("a cube", 2),
            &TaskInputs::default(),
        )
        .unwrap();
    let tokens = &result.tokens[0];
    assert_eq!((tokens[0], *tokens.last().unwrap()), (begin, end));
    let body = &tokens[1..tokens.len() - 1];
    assert!(!body.is_empty() && body.len().is_multiple_of(9));
    assert!(body.iter().all(|t| (first..first + bins).contains(t)));
    assert!(body.len() / 9 <= r.pack().defaults().max_mesh_faces);
    assert_valid_mesh(&result.outputs[0]);
    let again = r
        .run(
            TaskName::TextToMesh,
            &options("a cube", 2),
            &TaskInputs::default(),
        )
        .unwrap();
    assert_eq!(again.outputs, result.outputs);
}

/// A copy of the random pack whose pack.yaml is edited by `edit`.
fn pack_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&pack::random_dir(), dir.path());
    let manifest = dir.path().join("pack.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, edit(text)).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn text_to_mesh_in_the_text_layout_writes_obj_lines_that_decode() {
    let dir = pack_copy(|t| {
        let start = t.find("  mesh:\n").unwrap();
        let end = start + t[start..].find("\ndefaults:").unwrap();
        format!(
            "{}  mesh:\n    layout: text\n    bins: 16{}",
            &t[..start],
            &t[end..]
        )
    });
    let pack = Pack::load(dir.path()).unwrap();
    let mut tight = pack.manifest.defaults.clone();
    tight.max_mesh_faces = 6;
    let mut pack = pack;
    pack.manifest.defaults = tight;
    let r = Runner::new(Arc::new(pack), EngineConfig::default());
    let result = r
        .run(
            TaskName::TextToMesh,
            &options("a cube", 4),
            &TaskInputs::default(),
        )
        .unwrap();
    assert_valid_mesh(&result.outputs[0]);
    let text = r
        .pack()
        .model
        .tokenizer
        .decode(&result.tokens[0], true)
        .unwrap();
    assert!(text.starts_with("v "), "{text:?}");
    let q = encoders::mesh::from_obj_text(&text, 16).unwrap();
    assert!(!q.faces.is_empty() && q.faces.len() <= 6);
}

#[test]
fn chat_caption_and_transcribe_read_media_and_answer_in_text() {
    let r = &*RUNNER;
    let image = test_image(40, 40);
    let voice = Audio::read(
        &pack::random_dir().join("voices/default.wav"),
        &modalities::Limits::default(),
    )
    .unwrap();
    let mut o = options("", 1);
    o.max_tokens = Some(5);
    let inputs = TaskInputs {
        messages: vec![Message {
            role: "user".into(),
            parts: vec![
                Part::Media(Media::Image(image.clone())),
                Part::Text("What is this?".into()),
            ],
        }],
        ..TaskInputs::default()
    };
    let chat = r.run(TaskName::Chat, &o, &inputs).unwrap();
    let text_only = r
        .run(
            TaskName::Chat,
            &options("What is this?", 1),
            &TaskInputs::default(),
        )
        .unwrap();
    assert!(
        chat.prompt_tokens > text_only.prompt_tokens + 64,
        "the image block is in the prompt"
    );
    assert!(matches!(chat.outputs[0], TaskOutput::Text(_)));
    assert!(chat.tokens[0].len() <= 5);
    let text = r.pack().text_ranges();
    assert!(
        chat.tokens[0]
            .iter()
            .all(|t| text.iter().any(|r| r.contains(t))),
        "a text answer holds no media codes: {:?}",
        chat.tokens[0]
    );

    let with_image = TaskInputs {
        image: Some(image.clone()),
        ..TaskInputs::default()
    };
    let mut asked = options("What is this?", 1);
    asked.max_tokens = Some(5);
    let first = r.run(TaskName::Chat, &asked, &with_image).unwrap();
    assert_eq!(
        first.prompt_tokens, chat.prompt_tokens,
        "--image joins the prompt's user turn"
    );
    assert_eq!(
        r.run(TaskName::Chat, &asked, &with_image).unwrap().outputs,
        first.outputs
    );

    let caption = r
        .run(
            TaskName::Caption,
            &o,
            &TaskInputs {
                image: Some(image),
                ..TaskInputs::default()
            },
        )
        .unwrap();
    assert!(matches!(caption.outputs[0], TaskOutput::Text(_)));
    let transcript = r
        .run(
            TaskName::Transcribe,
            &o,
            &TaskInputs {
                audio: Some(voice),
                ..TaskInputs::default()
            },
        )
        .unwrap();
    assert!(matches!(transcript.outputs[0], TaskOutput::Text(_)));
    let missing = r
        .run(TaskName::Transcribe, &o, &TaskInputs::default())
        .unwrap_err();
    assert!(missing.to_string().contains("needs audio"), "{missing}");
}

#[test]
fn a_corrupted_weight_file_is_caught_by_its_hash() {
    let dir = pack_copy(|t| t);
    let weights = dir.path().join("image/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let e = Pack::load(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("image/model.safetensors") && e.contains("does not match"),
        "{e}"
    );
}

#[test]
fn packs_with_a_wrong_layout_are_refused_with_the_reason() {
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|t: String| t.replacen("first_token: 523", "first_token: 700", 1)),
            "overlaps",
        ),
        (
            Box::new(|t: String| t.replacen("first_token: 2571", "first_token: 2600", 1)),
            "past the vocabulary",
        ),
        (
            Box::new(|t: String| t.replace("begin: <|image_start|>", "begin: <|picture|>")),
            "<|picture|>",
        ),
        (
            Box::new(|t: String| t.replace("codec: image", "codec: voices")),
            "modalities.image.codec",
        ),
        (
            Box::new(|t: String| t.replace("codec: audio", "codec: ../audio")),
            "inside the pack",
        ),
        (
            Box::new(|t: String| t.replace("  text-to-mesh:", "  text-to-hologram:")),
            "text-to-hologram",
        ),
        (
            Box::new(|t: String| t.replace("licence: Apache-2.0\n", "")),
            "licence",
        ),
        (
            Box::new(|t: String| {
                t.replace(
                    "end: <|audio_end|>\n",
                    "end: <|audio_end|>\n    silent_codes: [256]\n",
                )
            }),
            "code 256 is not one of the codec's 256",
        ),
        (
            Box::new(|t: String| {
                t.replace(
                    "end: <|audio_end|>\n",
                    "end: <|audio_end|>\n    silent_codes: [1]\n",
                )
            }),
            "the pack names none",
        ),
        (
            Box::new(|t: String| {
                t.replace("  text-to-mesh:\n", "  text-to-mesh:\n    top_p: 1.5\n")
            }),
            "tasks.text-to-mesh.top_p",
        ),
        (
            Box::new(|t: String| {
                let at = t.find("  image/model.safetensors").unwrap();
                t[..at].to_string()
            }),
            "image/model.safetensors has no hash",
        ),
    ];
    for (edit, want) in cases {
        let dir = pack_copy(edit);
        let e = Pack::load(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn requests_that_cannot_be_met_are_refused_before_generating() {
    let r = &*RUNNER;
    let mut o = options("a long film", 1);
    o.size = Some([32, 32]);
    o.seconds = Some(10.0);
    let e = r
        .run(TaskName::TextToVideo, &o, &TaskInputs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit the context"), "{e}");
    for (edit, field) in [
        (
            Box::new(|o: &mut TaskOptions| o.n = 0) as Box<dyn Fn(&mut TaskOptions)>,
            "n:",
        ),
        (Box::new(|o: &mut TaskOptions| o.speed = 3.0), "speed:"),
        (
            Box::new(|o: &mut TaskOptions| o.size = Some([0, 4])),
            "size:",
        ),
        (
            Box::new(|o: &mut TaskOptions| o.seconds = Some(f64::NAN)),
            "seconds:",
        ),
        (Box::new(|o: &mut TaskOptions| o.prompt.clear()), "prompt:"),
    ] {
        let mut o = options("hello", 1);
        edit(&mut o);
        let e = r
            .run(TaskName::TextToSpeech, &o, &TaskInputs::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "want {field} in {e}");
    }
}

#[test]
fn a_pack_trained_on_one_grid_makes_that_grid_scaled_to_the_pixels_asked_without_smoothing() {
    let dir = pack_copy(|t| {
        t.replace(
            "    end: <|image_end|>\n",
            "    end: <|image_end|>\n    grid: [4, 4]\n",
        )
    });
    let r = Runner::new(
        Arc::new(Pack::load(dir.path()).unwrap()),
        EngineConfig::default(),
    );
    let layout = r.pack().image.clone().unwrap();
    let mut o = options("a red circle", 5);
    o.pixels = Some([64, 48]);
    let result = r
        .run(TaskName::TextToImage, &o, &TaskInputs::default())
        .unwrap();
    assert_eq!(result.tokens[0].len(), 4 * 4 + 2, "the pack's one grid");
    let Media::Image(image) = media(&result.outputs[0]) else {
        panic!("not an image")
    };
    assert_eq!((image.width, image.height), (64, 48));
    let codes = layout.grid(&result.tokens[0][1..17], [4, 4]).unwrap();
    let native = layout.decode(&codes).unwrap();
    assert_eq!(
        *image,
        native.resized_nearest(64, 48).unwrap(),
        "pixels repeated, not smoothed"
    );

    o.size = Some([8, 8]);
    let e = r
        .run(TaskName::TextToImage, &o, &TaskInputs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("size") && e.contains("4 x 4"), "{e}");
    o.size = None;
    o.pixels = Some([0, 10]);
    let e = r
        .run(TaskName::TextToImage, &o, &TaskInputs::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("pixels"), "{e}");
}

#[test]
fn a_packs_task_sampling_applies_unless_the_request_sets_its_own() {
    let greedy_images = pack_copy(|t| {
        t.replace(
            "  text-to-image:\n",
            "  text-to-image:\n    temperature: 0\n",
        )
    });
    let runner = Runner::new(
        Arc::new(Pack::load(greedy_images.path()).unwrap()),
        EngineConfig::default(),
    );
    let tokens = |r: &Runner, seed: u64, temperature: Option<f32>| {
        let mut o = options("a red circle", seed);
        o.size = Some([3, 3]);
        o.temperature = temperature;
        r.run(TaskName::TextToImage, &o, &TaskInputs::default())
            .unwrap()
            .tokens
            .remove(0)
    };
    // The pack's temperature 0: greedy, whatever the seed.
    assert_eq!(tokens(&runner, 1, None), tokens(&runner, 2, None));
    // The request's own temperature wins; the random pack samples.
    assert_ne!(tokens(&runner, 1, Some(1.0)), tokens(&runner, 2, Some(1.0)));
    assert_ne!(tokens(&RUNNER, 1, None), tokens(&RUNNER, 2, None));
}
