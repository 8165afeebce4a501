//! The built-in workflows end to end on the random-weight pack, and the step
//! cache: a re-run executes nothing, a changed input re-runs only what
//! depends on it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use modalities::Media;
use pipelines::generate::EngineConfig;
use pipelines::pack::{self, Pack};
use pipelines::tasks::Runner;
use workflows::{Event, RunOptions, RunReport, Value, WorkflowLimits};

static RUNNER: LazyLock<Runner> = LazyLock::new(|| {
    Runner::new(
        Arc::new(Pack::load(&pack::random_dir()).unwrap()),
        EngineConfig::default(),
    )
});

fn builtin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets/workflows")
        .join(name)
}

fn run(name: &str, given: Vec<(&str, Value)>, cache: &Path) -> (RunReport, Vec<Event>) {
    let wf = workflows::load(&builtin(name), &WorkflowLimits::default()).unwrap();
    let given: BTreeMap<String, Value> =
        given.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let inputs = workflows::run::bind_inputs(&wf, given).unwrap();
    let options = RunOptions {
        cache_dir: Some(cache.to_path_buf()),
        ..RunOptions::default()
    };
    let events = Mutex::new(Vec::new());
    let report = workflows::run::run(&wf, &inputs, Some(&RUNNER), &options, &|e| {
        events.lock().unwrap().push(e.clone())
    })
    .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (report, events.into_inner().unwrap())
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn media<'a>(report: &'a RunReport, file: &str) -> &'a Media {
    match report.outputs.get(file) {
        Some(Value::Media(m)) => m,
        other => panic!("{file}: {other:?}"),
    }
}

#[test]
fn tts_runs_then_reruns_from_the_cache_and_a_changed_input_reruns_its_dependants() {
    let cache = tempfile::tempdir().unwrap();
    let (first, events) = run(
        "tts.yaml",
        vec![("text", text("Hello there."))],
        cache.path(),
    );
    assert_eq!(first.executed.len(), 3);
    let Media::Audio(audio) = media(&first, "speech.mp3") else {
        panic!()
    };
    assert!(audio.duration_s() > 0.0);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Started { step } if step == "speech")));

    let (again, events) = run(
        "tts.yaml",
        vec![("text", text("Hello there."))],
        cache.path(),
    );
    assert!(
        again.executed.is_empty(),
        "a re-run executes no step: {:?}",
        again.executed
    );
    assert_eq!(again.cached.len(), 3);
    assert!(events.iter().any(|e| matches!(e, Event::Cached { .. })));
    assert_eq!(
        again.outputs, first.outputs,
        "the cache returns the same values"
    );

    let (faster, _) = run(
        "tts.yaml",
        vec![
            ("text", text("Hello there.")),
            ("speed", Value::Number(1.5)),
        ],
        cache.path(),
    );
    assert_eq!(faster.cached, vec!["clean".to_string()]);
    let mut executed = faster.executed.clone();
    executed.sort();
    assert_eq!(executed, vec!["loud".to_string(), "speech".to_string()]);
}

#[test]
fn text_to_video_narrates_one_clip_per_scene() {
    let cache = tempfile::tempdir().unwrap();
    let script = "A red ball. A blue box.";
    let (report, events) = run(
        "text-to-video.yaml",
        vec![
            ("script", text(script)),
            ("seconds_per_scene", Value::Number(0.25)),
        ],
        cache.path(),
    );
    let Media::Video(video) = media(&report, "film.mp4") else {
        panic!()
    };
    let audio = video.audio.as_ref().expect("narrated");
    assert!(
        (video.duration_s() - audio.duration_s()).abs() <= 1.0 / video.fps.as_f64(),
        "picture held to the narration"
    );
    let clip_progress = events
        .iter()
        .filter(|e| matches!(e, Event::Progress { step, total: 2, .. } if step == "clips"))
        .count();
    assert_eq!(clip_progress, 2, "one clip per scene");
}

#[test]
fn image_edit_and_text_to_3d_run_as_shipped() {
    let cache = tempfile::tempdir().unwrap();
    let image = modalities::Image::filled(64, 48, [200, 30, 30]);
    let (report, _) = run(
        "image-edit.yaml",
        vec![
            ("image", Value::Media(Media::Image(image))),
            ("instruction", text("make it green")),
            ("width", Value::Integer(96)),
        ],
        cache.path(),
    );
    let Media::Image(edited) = media(&report, "edited.png") else {
        panic!()
    };
    assert_eq!(
        edited.width, 96,
        "the optional mask was left out and the edit resized"
    );

    let (report, _) = run(
        "text-to-3d.yaml",
        vec![("prompt", text("a cube"))],
        cache.path(),
    );
    let Media::Mesh(mesh) = media(&report, "model.glb") else {
        panic!()
    };
    let [lo, hi] = mesh.bbox().unwrap();
    let extent = (0..3).map(|i| hi[i] - lo[i]).fold(0f32, f32::max);
    assert!(
        (extent - 1.0).abs() < 1e-4,
        "normalised into the unit cube: {extent}"
    );
    assert!((0..3).all(|i| (lo[i] + hi[i]).abs() < 1e-4), "centred");
}
