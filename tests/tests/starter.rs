//! The default pack is the trained starter pack (issue 8): it loads with its
//! weights' hashes checked, and a small, fixed subset of its evaluation
//! (`anyforge eval`, docs/starter-pack.md) still passes. The subset is
//! seeded, so its results only move when the pack or the engine does; the
//! floors sit a little under what the committed pack scores, and a
//! random-weight pack scores nothing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use pipelines::generate::EngineConfig;
use pipelines::pack::{Pack, TaskName};
use pipelines::tasks::Runner;
use training::eval::{evaluate, EvalConfig};
use training::world::Split;

fn default_pack() -> Pack {
    // The source tree's, whatever ANYFORGE_PACK says.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/packs/default");
    Pack::load(&dir).unwrap()
}

#[test]
fn the_default_pack_is_the_trained_starter_and_passes_a_small_evaluation() {
    let pack = default_pack();
    assert_eq!(pack.manifest.name, "anyforge-starter");
    // The silent codes its pack.yaml names are those its codec decodes as
    // silence, as `anyforge train` writes them.
    let audio = pack.audio.as_ref().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/packs/default/audio");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let codec = encoders::mel::MelCodec::load(&dir, &serde_json::from_str(&config).unwrap());
    let silent: Vec<u32> = codec.unwrap().silent_codes();
    let named: Vec<u32> = audio.silent.iter().map(|t| t - audio.first).collect();
    assert_eq!(named, silent);
    let runner = Runner::new(Arc::new(pack), EngineConfig::default());
    let report = evaluate(
        &runner,
        &EvalConfig {
            per_task: 4,
            split: Split::HeldOut,
            seed: 2026,
            concurrency: 8,
            outside: 2,
            speech_seeds: 1,
        },
    )
    .unwrap();
    eprintln!("{}", report.markdown());
    let passed = |task: TaskName| {
        report
            .tasks
            .iter()
            .find(|t| t.task == task)
            .unwrap_or_else(|| panic!("{task} was not evaluated"))
            .passed
    };
    // Floors: (task, cases passed of 4).
    for (task, floor) in FLOORS {
        assert!(
            passed(task) >= floor,
            "{task}: {} passed, the floor is {floor}",
            passed(task)
        );
    }
    for (sentences, ceiling) in [("world", MAX_WORLD_WER), ("outside", MAX_OUTSIDE_WER)] {
        let wer = report
            .speech
            .iter()
            .find(|r| r.sentences == sentences)
            .unwrap()
            .pack_wer;
        assert!(
            wer <= ceiling,
            "{sentences} sentences: word error rate {:.1}%",
            100.0 * wer
        );
    }
}

/// The starter pack has no chat task: a chat request is refused, naming what
/// it serves, instead of answered with the world model's babble.
#[test]
fn a_chat_request_to_the_starter_pack_is_refused_naming_its_tasks() {
    let runner = Runner::new(Arc::new(default_pack()), EngineConfig::default());
    let options = pipelines::tasks::TaskOptions {
        prompt: "Hello".into(),
        ..Default::default()
    };
    let err = runner
        .chat_prompt(&options, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not serve chat") && err.contains("text-to-image"),
        "{err}"
    );
}

/// Cases each task must pass: the committed pack's own results on this
/// subset (2026-12-06, the twentieth run, as the seventeenth: caption 4/4,
/// transcribe 3/4, text-to-image 4/4, image-edit 4/4, text-to-video 4/4,
/// text-to-mesh 4/4, text-to-speech 6/6 heard exactly; the sixteenth's
/// speech was 4/6 before the recogniser searched in full and 6/6 once
/// silence waited for a phrase's end) less one, room for another CPU's
/// rounding.
const FLOORS: [(TaskName, usize); 7] = [
    (TaskName::TextToImage, 3),
    (TaskName::Caption, 3),
    (TaskName::ImageEdit, 3),
    (TaskName::TextToVideo, 3),
    (TaskName::TextToMesh, 3),
    (TaskName::Transcribe, 2),
    (TaskName::TextToSpeech, 5),
];
/// The pack's world sentences here are heard with no word wrong (8.8%
/// when the recogniser's live beams pruned short sentences). The grammar
/// forces noise onto some sentence, mostly its shortest (random mel codes
/// decoded were heard as "a tall cube" 4 times in 5), so a pack that says
/// nothing still gets most words of these long sentences wrong.
const MAX_WORLD_WER: f64 = 0.1;
/// Both outside sentences here are heard with no word wrong; before silence
/// waited for a phrase's end, the pack fell silent in a third of the
/// Harvard sentences and was heard saying nothing (issue 8).
const MAX_OUTSIDE_WER: f64 = 0.5;
