//! Model packs: a folder with `pack.yaml` naming the backbone checkpoint,
//! the codecs, where each modality's codes sit in the backbone's sequence,
//! the prompt template of each task, defaults, the licence and a SHA-256
//! of every weight file (docs/packs.md). [`Pack::load`] checks all of it
//! before anything is served.

pub(crate) mod layout;
pub mod manifest;

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use encoders::{Codec, Structure};
use modalities::Kind;
use sha2::{Digest, Sha256};

pub use layout::{image_block_tokens, AudioLayout, ImageLayout, MeshLayout, VideoLayout};
pub use manifest::{Defaults, Layout, Manifest, Slots, TaskName, Voice};

use crate::error::{PipelineError, Result};
use crate::TextModel;

/// The file name of a pack's manifest.
pub const MANIFEST: &str = "pack.yaml";
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// File extensions that hold weights: each must have a hash in the manifest.
const WEIGHT_EXTENSIONS: &[&str] = &["safetensors", "bin", "pt", "pth", "gguf", "ckpt"];

/// The source tree's random-weight pack (`assets/packs/random`): small, with
/// every task, every codec kind and a voice, so tests exercise all of them
/// where the trained default pack (`assets/packs/default`, which the binary
/// carries: `server/src/assets.rs`) has only its world's tasks.
pub fn random_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/packs/random")
}

/// A loaded, checked model pack.
pub struct Pack {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub model: TextModel,
    pub image: Option<ImageLayout>,
    pub audio: Option<AudioLayout>,
    pub video: Option<VideoLayout>,
    pub mesh: Option<MeshLayout>,
    /// Text to phoneme tokens, for packs whose speech model reads phonemes.
    pub phonemizer: Option<encoders::speech_text::Phonemizer>,
    templates: minijinja::Environment<'static>,
}

impl Pack {
    /// Reads `pack.yaml` in `dir`, verifies every weight file's hash, loads
    /// the backbone and codecs, and checks the token layout against the
    /// vocabulary. Each refusal names the file or field and the reason.
    pub fn load(dir: &Path) -> Result<Pack> {
        let manifest_path = dir.join(MANIFEST);
        let manifest = read_manifest(&manifest_path)?;
        let bad = |why: String| PipelineError::bad_file(&manifest_path, why);
        verify_weights(dir, &manifest).map_err(&bad)?;
        let backbone_dir = inside(dir, &manifest.backbone, "backbone").map_err(&bad)?;
        let model = TextModel::load(&backbone_dir)?;
        let marker = |name: &str, field: &str| -> Result<u32> {
            model.tokenizer.token_to_id(name).ok_or_else(|| {
                bad(format!(
                    "{field}: {name:?} is not a token of the backbone's tokenizer"
                ))
            })
        };
        let codec = |path: &Path, field: &str, want: Kind| -> Result<Arc<dyn Codec>> {
            let folder = inside(dir, path, field).map_err(&bad)?;
            let codec = encoders::open(&folder.to_string_lossy())
                .map_err(|e| bad(format!("{field}: {e}")))?;
            if codec.kind() != want {
                return Err(bad(format!(
                    "{field}: {} is a {} codec, not {want}",
                    path.display(),
                    codec.kind()
                )));
            }
            Ok(Arc::from(codec))
        };
        let m = &manifest.modalities;
        let image = match &m.image {
            None => None,
            Some(spec) => {
                only_vocab(spec.layout, "modalities.image.layout").map_err(&bad)?;
                let codec = codec(&spec.codec, "modalities.image.codec", Kind::Image)?;
                let Structure::Image { downsample } = codec.structure() else {
                    return Err(bad("modalities.image.codec: not an image grid codec".into()));
                };
                Some(ImageLayout {
                    codes: codec.vocab_size() as u32,
                    codec,
                    first: spec.first_token,
                    begin: marker(&spec.begin, "modalities.image.begin")?,
                    end: marker(&spec.end, "modalities.image.end")?,
                    downsample,
                    fixed_grid: spec.grid,
                    row_markers: spec
                        .row_markers
                        .iter()
                        .map(|m| marker(m, "modalities.image.row_markers"))
                        .collect::<Result<_>>()?,
                })
            }
        };
        let audio = match &m.audio {
            None => None,
            Some(spec) => {
                only_vocab(spec.layout, "modalities.audio.layout").map_err(&bad)?;
                let codec = codec(&spec.codec, "modalities.audio.codec", Kind::Audio)?;
                let Structure::Audio {
                    sample_rate,
                    hop,
                    strides,
                } = codec.structure()
                else {
                    return Err(bad(
                        "modalities.audio.codec: not a multi-level audio codec".into()
                    ));
                };
                let markers = (
                    marker(&spec.begin, "modalities.audio.begin")?,
                    marker(&spec.end, "modalities.audio.end")?,
                );
                if !spec.word_markers.is_empty() && manifest.speech.is_none() {
                    return Err(bad("modalities.audio.word_markers: a model that opens words \
                         with markers needs the speech frontend (`speech`) to mark the prompt's words"
                        .into()));
                }
                let mut layout = AudioLayout::new(
                    codec,
                    spec.first_token,
                    spec.slots,
                    markers,
                    (sample_rate, hop, strides),
                );
                layout.word_markers = spec
                    .word_markers
                    .iter()
                    .map(|w| marker(w, "modalities.audio.word_markers"))
                    .collect::<Result<_>>()?;
                if spec.word_phonemes && spec.phoneme_frames {
                    return Err(bad("modalities.audio.phoneme_frames, \
                         modalities.audio.word_phonemes: the phonemes come once; set one"
                        .into()));
                }
                if spec.word_phonemes || spec.phoneme_frames {
                    if spec.word_markers.is_empty() {
                        return Err(bad("modalities.audio.word_phonemes, \
                             modalities.audio.phoneme_frames: the phonemes follow \
                             each word's marker; the pack names no word_markers"
                            .into()));
                    }
                    // In phone order: token i is phone i's.
                    let phonemes = encoders::speech_text::Sound::phoneme_tokens()
                        .iter()
                        .map(|p| marker(p, "modalities.audio.word_phonemes"))
                        .collect::<Result<Vec<u32>>>()?;
                    layout.interleave_phonemes(phonemes, spec.phoneme_frames);
                }
                if let Some(c) = spec.silent_codes.iter().find(|&&c| c >= layout.codes) {
                    return Err(bad(format!(
                        "modalities.audio.silent_codes: code {c} is not one of the codec's {}",
                        layout.codes
                    )));
                }
                if !spec.silent_codes.is_empty() && spec.word_markers.is_empty() {
                    return Err(bad("modalities.audio.silent_codes: silence is kept for \
                         where a phrase ends, which the model marks with word_markers; \
                         the pack names none"
                        .into()));
                }
                layout.silent = spec.silent_codes.iter().map(|c| layout.first + c).collect();
                Some(layout)
            }
        };
        let video = match &m.video {
            None => None,
            Some(_) if image.is_none() => return Err(bad(
                "modalities.video: video frames are image blocks; the pack has no image modality"
                    .into(),
            )),
            Some(spec) => Some(VideoLayout {
                begin: marker(&spec.begin, "modalities.video.begin")?,
                end: marker(&spec.end, "modalities.video.end")?,
            }),
        };
        let mesh = match &m.mesh {
            None => None,
            Some(spec) => {
                encoders::mesh::MeshCodec::new(spec.bins)?;
                let frame = encoders::mesh::MeshFrame::new(spec.extent, spec.stretch)
                    .map_err(|e| bad(format!("modalities.mesh.extent: {e}")))?;
                match spec.layout {
                    Layout::Text if spec.stretch => {
                        return Err(bad("modalities.mesh.stretch: the text layout writes \
                             OBJ lines, which have no place for the size tokens"
                            .into()))
                    }
                    Layout::Text => Some(MeshLayout::Text {
                        bins: spec.bins,
                        frame,
                    }),
                    Layout::Vocab => {
                        fn need<'a>(
                            v: &'a Option<String>,
                            field: &str,
                        ) -> std::result::Result<&'a str, String> {
                            v.as_deref()
                                .ok_or_else(|| format!("{field}: the vocab layout needs it"))
                        }
                        let first = spec.first_token.ok_or_else(|| {
                            bad("modalities.mesh.first_token: the vocab layout needs it".into())
                        })?;
                        Some(MeshLayout::Vocab {
                            bins: spec.bins,
                            frame,
                            first,
                            begin: marker(
                                need(&spec.begin, "modalities.mesh.begin").map_err(&bad)?,
                                "modalities.mesh.begin",
                            )?,
                            end: marker(
                                need(&spec.end, "modalities.mesh.end").map_err(&bad)?,
                                "modalities.mesh.end",
                            )?,
                        })
                    }
                }
            }
        };
        let phonemizer = match &manifest.speech {
            None => None,
            Some(frontend) => Some(load_phonemizer(dir, frontend).map_err(&bad)?),
        };
        let templates = compile_templates(&manifest).map_err(&bad)?;
        let pack = Pack {
            dir: dir.to_path_buf(),
            model,
            image,
            audio,
            video,
            mesh,
            phonemizer,
            templates,
            manifest,
        };
        pack.check_ranges().map_err(&bad)?;
        pack.check_tasks().map_err(&bad)?;
        for (name, voice) in &pack.manifest.voices {
            let Some(audio) = &voice.audio else { continue };
            let path = inside(dir, audio, &format!("voices.{name}.audio")).map_err(&bad)?;
            if !path.is_file() {
                return Err(bad(format!(
                    "voices.{name}.audio: {} is missing",
                    path.display()
                )));
            }
        }
        Ok(pack)
    }

    pub fn defaults(&self) -> &Defaults {
        &self.manifest.defaults
    }

    pub fn supports(&self, task: TaskName) -> bool {
        self.manifest.tasks.contains_key(&task)
    }

    /// A named voice and the path of its recording, if it has one.
    pub fn voice(&self, name: &str) -> Result<(&Voice, Option<PathBuf>)> {
        let voice = self.manifest.voices.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.manifest.voices.keys().map(String::as_str).collect();
            PipelineError::Request(format!(
                "voice: {name:?} is not in the pack (voices: {})",
                known.join(", ")
            ))
        })?;
        Ok((voice, voice.audio.as_ref().map(|a| self.dir.join(a))))
    }

    /// The task's template, rendered with `context`.
    pub(crate) fn render(&self, task: TaskName, context: minijinja::Value) -> Result<String> {
        let template = self
            .templates
            .get_template(task.as_str())
            .map_err(|_| PipelineError::Request(format!("the pack has no template for {task}")))?;
        template
            .render(context)
            .map_err(|e| PipelineError::Template(format!("{task}: {e}")))
    }

    pub(crate) fn has_template(&self, task: TaskName) -> bool {
        self.templates.get_template(task.as_str()).is_ok()
    }

    /// Every token range the layout names (codes and markers), by field.
    pub fn named_ranges(&self) -> Vec<(String, Range<u32>)> {
        let mut ranges: Vec<(String, Range<u32>)> = Vec::new();
        let one = |t: u32| t..t + 1;
        if let Some(l) = &self.image {
            ranges.push(("modalities.image codes".into(), l.range()));
            ranges.push(("modalities.image.begin".into(), one(l.begin)));
            ranges.push(("modalities.image.end".into(), one(l.end)));
        }
        if let Some(l) = &self.audio {
            ranges.push(("modalities.audio codes".into(), l.range()));
            ranges.push(("modalities.audio.begin".into(), one(l.begin)));
            ranges.push(("modalities.audio.end".into(), one(l.end)));
        }
        if let Some(l) = &self.video {
            ranges.push(("modalities.video.begin".into(), one(l.begin)));
            ranges.push(("modalities.video.end".into(), one(l.end)));
        }
        if let Some(MeshLayout::Vocab {
            bins,
            first,
            begin,
            end,
            ..
        }) = &self.mesh
        {
            ranges.push(("modalities.mesh codes".into(), *first..first + bins));
            ranges.push(("modalities.mesh.begin".into(), one(*begin)));
            ranges.push(("modalities.mesh.end".into(), one(*end)));
        }
        ranges
    }

    /// The tokens a text answer may use: everything but media codes and markers.
    pub fn text_ranges(&self) -> Vec<Range<u32>> {
        let vocab = self.model.backbone.config().vocab_size as u32;
        let mut taken: Vec<Range<u32>> = self.named_ranges().into_iter().map(|(_, r)| r).collect();
        taken.sort_by_key(|r| r.start);
        let mut free = Vec::new();
        let mut at = 0;
        for r in taken {
            if r.start > at {
                free.push(at..r.start.min(vocab));
            }
            at = at.max(r.end);
        }
        if at < vocab {
            free.push(at..vocab);
        }
        free
    }

    /// Every named range of the layout fits the vocabulary, and none overlaps another.
    fn check_ranges(&self) -> std::result::Result<(), String> {
        let vocab = self.model.backbone.config().vocab_size as u32;
        let ranges = self.named_ranges();
        for (name, r) in &ranges {
            if r.end > vocab {
                return Err(format!(
                    "{name}: tokens {}..{} reach past the vocabulary of {vocab}",
                    r.start, r.end
                ));
            }
        }
        for (i, (a, ra)) in ranges.iter().enumerate() {
            for (b, rb) in &ranges[i + 1..] {
                if ra.start < rb.end && rb.start < ra.end {
                    return Err(format!(
                        "{a} ({}..{}) overlaps {b} ({}..{})",
                        ra.start, ra.end, rb.start, rb.end
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each listed task has the modalities it needs and a template.
    fn check_tasks(&self) -> std::result::Result<(), String> {
        for &task in self.manifest.tasks.keys() {
            let needs: &[(&str, bool)] = match task {
                TaskName::Chat => &[],
                TaskName::Caption => &[("image", self.image.is_some())],
                TaskName::Transcribe | TaskName::TextToSpeech => &[("audio", self.audio.is_some())],
                TaskName::TextToImage | TaskName::ImageEdit => &[("image", self.image.is_some())],
                TaskName::TextToVideo | TaskName::ImageToVideo => {
                    &[("video", self.video.is_some())]
                }
                TaskName::TextToMesh => &[("mesh", self.mesh.is_some())],
            };
            if let Some((kind, _)) = needs.iter().find(|(_, present)| !present) {
                return Err(format!(
                    "tasks.{task}: needs the {kind} modality, which the pack does not define"
                ));
            }
            let spec = &self.manifest.tasks[&task];
            if let Some(t) = spec.temperature.filter(|t| !(t.is_finite() && *t >= 0.0)) {
                return Err(format!(
                    "tasks.{task}.temperature: {t} is not a finite value of 0 or more"
                ));
            }
            if let Some(p) = spec.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                return Err(format!("tasks.{task}.top_p: {p} is not in (0, 1]"));
            }
            let has_template = self.has_template(task);
            if !(has_template || task == TaskName::Chat && self.model.tokenizer.has_chat_template())
            {
                return Err(format!("tasks.{task}: needs a template"));
            }
        }
        Ok(())
    }
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let file = std::fs::File::open(path).map_err(|e| PipelineError::io(path, e))?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| PipelineError::io(path, e))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PipelineError::bad_file(
            path,
            format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        ));
    }
    serde_saphyr::from_str(&text).map_err(|e| PipelineError::bad_file(path, e))
}

/// `relative` resolved inside `dir`; absolute paths and `..` are refused,
/// so a pack cannot point at files outside its folder.
fn inside(dir: &Path, relative: &Path, field: &str) -> std::result::Result<PathBuf, String> {
    let escapes = relative.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes || relative.as_os_str().is_empty() {
        return Err(format!(
            "{field}: {:?} must be a path inside the pack folder",
            relative.display()
        ));
    }
    Ok(dir.join(relative))
}

/// The lexicon and rules of `speech`, each read within the pack's limits.
fn load_phonemizer(
    dir: &Path,
    speech: &manifest::SpeechFrontend,
) -> std::result::Result<encoders::speech_text::Phonemizer, String> {
    use encoders::speech_text::{lexicon::Lexicon, lts::LetterToSound, Phonemizer};
    // CMUdict is 3.5 MB; a lexicon ten times larger is not one.
    const MAX_BYTES: u64 = 64 << 20;
    let read = |path: &Path, field: &str| -> std::result::Result<String, String> {
        let file = inside(dir, path, field)?;
        let size = std::fs::metadata(&file)
            .map_err(|e| format!("{field}: {}: {e}", file.display()))?
            .len();
        if size > MAX_BYTES {
            return Err(format!(
                "{field}: {} is {size} bytes, over the limit of {MAX_BYTES}",
                file.display()
            ));
        }
        std::fs::read_to_string(&file).map_err(|e| format!("{field}: {}: {e}", file.display()))
    };
    let lexicon = Lexicon::parse(
        &read(&speech.lexicon, "speech.lexicon")?,
        &speech.lexicon.display().to_string(),
    )
    .map_err(|e| format!("speech.lexicon: {e}"))?;
    let rules: LetterToSound = serde_json::from_str(&read(&speech.rules, "speech.rules")?)
        .map_err(|e| format!("speech.rules: {}: {e}", speech.rules.display()))?;
    Ok(Phonemizer { lexicon, rules })
}

fn only_vocab(layout: Layout, field: &str) -> std::result::Result<(), String> {
    match layout {
        Layout::Vocab => Ok(()),
        Layout::Text => Err(format!(
            "{field}: only meshes can be written as text; use `vocab`"
        )),
    }
}

/// Every listed file matches its hash, and every weight file in the pack is listed.
fn verify_weights(dir: &Path, manifest: &Manifest) -> std::result::Result<(), String> {
    for (relative, expected) in &manifest.sha256 {
        let path = inside(dir, relative, "sha256")?;
        let actual = sha256_file(&path).map_err(|e| format!("sha256: {}: {e}", path.display()))?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(format!(
                "sha256: {} does not match: the file hashes to {actual}, pack.yaml says {expected}",
                relative.display()
            ));
        }
    }
    let listed: Vec<PathBuf> = manifest.sha256.keys().map(|p| dir.join(p)).collect();
    for file in weight_files(dir, 4) {
        if !listed.iter().any(|p| same_file(p, &file)) {
            return Err(format!(
                "sha256: weight file {} has no hash in pack.yaml",
                file.strip_prefix(dir).unwrap_or(&file).display()
            ));
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Weight files under `dir`, a few folders deep.
fn weight_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            found.extend(weight_files(&path, depth - 1));
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e))
        {
            found.push(path);
        }
    }
    found
}

/// Streams a file through SHA-256 (weights can be many gigabytes).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn compile_templates(
    manifest: &Manifest,
) -> std::result::Result<minijinja::Environment<'static>, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // A task template ends where the output begins: its last newline
    // ("<|im_start|>assistant\n") is part of the prompt the model was
    // trained on, which Jinja's default would drop.
    env.set_keep_trailing_newline(true);
    let sources: BTreeMap<TaskName, String> = manifest
        .tasks
        .iter()
        .filter_map(|(task, spec)| spec.template.clone().map(|t| (*task, t)))
        .collect();
    for (task, source) in sources {
        env.add_template_owned(task.as_str().to_owned(), source)
            .map_err(|e| format!("tasks.{task}.template: {e}"))?;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_pack() {
        let dir = Path::new("/packs/p");
        assert!(inside(dir, Path::new("backbone"), "backbone").is_ok());
        for bad in ["../other", "/etc", "a/../../b", ""] {
            let e = inside(dir, Path::new(bad), "backbone").unwrap_err();
            assert!(e.starts_with("backbone:"), "{e}");
        }
    }

    /// Regression (issue 8): the starter pack was trained on prompts that
    /// end "<|im_start|>assistant\n"; Jinja's default dropped that last
    /// newline, and the model, asked without it, drew the wrong pictures.
    #[test]
    fn task_templates_keep_their_trailing_newline() {
        let yaml =
            "name: t\nlicence: MIT\nbackbone: b\nsha256: {}\ntasks:\n  caption:\n    template: |\n      \
                    <|im_start|>assistant\n";
        let manifest: Manifest = serde_saphyr::from_str(yaml).unwrap();
        let env = compile_templates(&manifest).unwrap();
        let text = env
            .get_template("caption")
            .unwrap()
            .render(minijinja::context! {})
            .unwrap();
        assert_eq!(text, "<|im_start|>assistant\n");
    }
}
