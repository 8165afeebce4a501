//! Every task's time on a model pack (default: the bundled default pack),
//! one JSON line per task: the median of RUNS runs of the whole task
//! (prompt encoding, constrained generation, decoding), with its tokens.
//!
//!   cargo bench -p pipelines --bench tasks [-- PACK_DIR [RUNS]]

use std::sync::Arc;
use std::time::Instant;

// As the `anyforge` binary: mimalloc, keeping freed buffers for reuse
// (`kernels::keep_freed_memory` in main).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use modalities::Image;
use pipelines::generate::EngineConfig;
use pipelines::pack::{self, Pack};
use pipelines::tasks::{Runner, TaskInputs, TaskName, TaskOptions};

fn picture(side: u32) -> Image {
    let mut pixels = Vec::new();
    for y in 0..side {
        for x in 0..side {
            pixels.extend([(x * 255 / side) as u8, (y * 255 / side) as u8, 128]);
        }
    }
    Image::new(side, side, 3, pixels).unwrap_or_else(|_| Image::filled(side, side, [0, 0, 0]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kernels::keep_freed_memory();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dir = args
        .first()
        .map(Into::into)
        .unwrap_or_else(pack::random_dir);
    let runs: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let t = Instant::now();
    let pack = Pack::load(&dir)?;
    eprintln!(
        "pack {} loaded and verified in {:.3} s",
        pack.manifest.name,
        t.elapsed().as_secs_f64()
    );
    let runner = Runner::new(Arc::new(pack), EngineConfig::default());
    let image = picture(128);
    let mut mask = Image::filled(128, 128, [0, 0, 0]);
    mask.pixels[..128 * 64 * 3].fill(255);
    let with = |f: &dyn Fn(&mut TaskOptions)| {
        let mut o = TaskOptions {
            prompt: "a red circle on a blue background".into(),
            seed: Some(1),
            ..TaskOptions::default()
        };
        f(&mut o);
        o
    };
    let image_inputs = TaskInputs {
        image: Some(image.clone()),
        ..TaskInputs::default()
    };
    let edit_inputs = TaskInputs {
        image: Some(image),
        mask: Some(mask),
        ..TaskInputs::default()
    };
    let none = TaskInputs::default();
    let cases: Vec<(&str, TaskName, TaskOptions, &TaskInputs)> = vec![
        (
            "chat, 32 tokens",
            TaskName::Chat,
            with(&|o| o.max_tokens = Some(32)),
            &none,
        ),
        (
            "caption, 32 tokens",
            TaskName::Caption,
            with(&|o| o.max_tokens = Some(32)),
            &image_inputs,
        ),
        ("text-to-image", TaskName::TextToImage, with(&|_| {}), &none),
        (
            "text-to-image, n=4",
            TaskName::TextToImage,
            with(&|o| o.n = 4),
            &none,
        ),
        (
            "image-edit, half masked",
            TaskName::ImageEdit,
            with(&|_| {}),
            &edit_inputs,
        ),
        (
            "text-to-speech, 2 s",
            TaskName::TextToSpeech,
            with(&|o| o.seconds = Some(2.0)),
            &none,
        ),
        (
            "text-to-video, 2 s",
            TaskName::TextToVideo,
            with(&|o| o.seconds = Some(2.0)),
            &none,
        ),
        (
            "image-to-video, 2 s",
            TaskName::ImageToVideo,
            with(&|o| o.seconds = Some(2.0)),
            &image_inputs,
        ),
        ("text-to-mesh", TaskName::TextToMesh, with(&|_| {}), &none),
    ];
    for (name, task, options, inputs) in cases {
        if !runner.pack().supports(task) {
            continue;
        }
        runner.run(task, &options, inputs)?; // warm-up
        let mut times = Vec::new();
        let mut tokens = 0;
        for _ in 0..runs {
            let result = runner.run(task, &options, inputs)?;
            times.push(result.seconds);
            tokens = result.generated_tokens();
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{}",
            serde_json::json!({
                "task": name,
                "seconds": (median * 1e4).round() / 1e4,
                "tokens": tokens,
                "tokens_per_s": (tokens as f64 / median).round(),
            })
        );
    }
    Ok(())
}
