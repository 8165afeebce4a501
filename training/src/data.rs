//! Training sequences: world examples written the way the pack's task
//! templates write prompts at inference, followed by the output the model
//! must learn (codes between their markers, or text), then `<|im_end|>`.

use encoders::codes::ImageCodes;
use encoders::image::patch::PatchCodec;
use encoders::speech_text::{self, Sound};
use encoders::CodecError;
use tokenizers::Tokenizer;

use crate::vocab::CodeIds;
use crate::world::{Edit, Motion, Scene, SolidSpec};

/// One training sequence: the loss counts only the target's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub prompt: Vec<u32>,
    pub target: Vec<u32>,
    /// Target positions the model reads as another token: the loss still
    /// teaches the target token there, but later positions see the
    /// substitute (so they learn not to lean on it).
    pub fed_instead: Vec<(usize, u32)>,
}

impl Sequence {
    pub fn new(prompt: Vec<u32>, target: Vec<u32>) -> Sequence {
        Sequence {
            prompt,
            target,
            fed_instead: Vec::new(),
        }
    }

    /// The tokens the model reads: prompt, then target with its
    /// substitutes in place.
    pub fn inputs(&self) -> Vec<u32> {
        let mut tokens: Vec<u32> = self.prompt.iter().chain(&self.target).copied().collect();
        for &(at, token) in &self.fed_instead {
            tokens[self.prompt.len() + at] = token;
        }
        tokens
    }

    pub fn len(&self) -> usize {
        self.prompt.len() + self.target.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Speech(#[from] crate::speech::SpeechError),
    #[error("speech tasks need the recipe's speech section")]
    NoSpeech,
}

/// Turns world examples into sequences with one tokenizer and image codec.
pub struct Writer<'a> {
    pub tokenizer: &'a Tokenizer,
    pub ids: CodeIds,
    pub image_codec: &'a PatchCodec,
    /// The mesh tokenizer (its bins are the vocabulary's mesh range).
    pub mesh_codec: encoders::mesh::MeshCodec,
    /// The teacher, phonemizer and mel codec, for the speech tasks.
    pub speech: Option<&'a crate::speech::SpeechKit>,
}

/// A user turn, as the pack's chat template renders it, then the
/// assistant's opening.
fn user_turn(body: &str) -> String {
    format!("<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n")
}

impl Writer<'_> {
    fn text(&self, text: &str) -> Result<Vec<u32>, DataError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| DataError::Tokenizer(e.to_string()))
    }

    fn marker(&self, name: &str) -> Result<u32, DataError> {
        self.tokenizer
            .token_to_id(name)
            .ok_or_else(|| DataError::Tokenizer(format!("{name} is not in the vocabulary")))
    }

    /// `<|image_start|>` codes `<|image_end|>`, each row opened by its
    /// marker when the vocabulary has them (as the pack's image layout
    /// writes blocks).
    fn image_block(&self, codes: &ImageCodes) -> Result<Vec<u32>, DataError> {
        let markers: Vec<u32> = match self.ids.rows {
            Some(first) => (0..codes.codes.len() as u32).map(|r| first + r).collect(),
            None => Vec::new(),
        };
        Ok(pipelines::pack::image_block_tokens(
            self.marker("<|image_start|>")?,
            self.ids.image,
            self.marker("<|image_end|>")?,
            &markers,
            codes,
        ))
    }

    fn scene_block(&self, scene: &Scene) -> Result<Vec<u32>, DataError> {
        self.image_block(&self.image_codec.encode_image(&scene.render())?)
    }

    fn end(&self) -> Result<u32, DataError> {
        self.marker("<|im_end|>")
    }

    /// text-to-image: "Draw: PROMPT" then the image.
    pub fn text_to_image(&self, scene: &Scene) -> Result<Sequence, DataError> {
        self.draw(scene, &scene.prompt())
    }

    /// text-to-image with the prompt left empty ("Draw: "): what the
    /// pack's unconditional branch reads under classifier-free guidance
    /// (the pipeline renders the same template with no prompt).
    pub fn text_to_image_unprompted(&self, scene: &Scene) -> Result<Sequence, DataError> {
        self.draw(scene, "")
    }

    fn draw(&self, scene: &Scene, prompt: &str) -> Result<Sequence, DataError> {
        let mut target = self.scene_block(scene)?;
        target.push(self.end()?);
        Ok(Sequence::new(
            self.text(&user_turn(&format!("Draw: {prompt}")))?,
            target,
        ))
    }

    /// caption: the image, "Describe this.", then its sentence.
    pub fn caption(&self, scene: &Scene) -> Result<Sequence, DataError> {
        let mut prompt = self.text("<|im_start|>user\n")?;
        prompt.extend(self.scene_block(scene)?);
        prompt.extend(self.text("Describe this.<|im_end|>\n<|im_start|>assistant\n")?);
        let mut target = self.text(&scene.prompt())?;
        target.push(self.end()?);
        Ok(Sequence::new(prompt, target))
    }

    /// image-edit: "Edit: INSTRUCTION", the image, then the edited image.
    pub fn image_edit(&self, edit: &Edit) -> Result<Sequence, DataError> {
        self.edit(edit, &edit.instruction)
    }

    /// image-edit with the instruction left empty ("Edit: "), the edited
    /// image still the target: the unconditional branch of guidance.
    pub fn image_edit_unprompted(&self, edit: &Edit) -> Result<Sequence, DataError> {
        self.edit(edit, "")
    }

    /// The instruction comes before the image, so each code of the image
    /// sits a fixed distance before the same code of the edited one,
    /// whatever the instruction's length: copying is one relative offset.
    fn edit(&self, edit: &Edit, instruction: &str) -> Result<Sequence, DataError> {
        let mut prompt = self.text(&format!("<|im_start|>user\nEdit: {instruction}\n"))?;
        prompt.extend(self.scene_block(&edit.before)?);
        prompt.extend(self.text("<|im_end|>\n<|im_start|>assistant\n")?);
        let mut target = self.scene_block(&edit.after)?;
        target.push(self.end()?);
        Ok(Sequence::new(prompt, target))
    }

    /// text-to-mesh: "Model: PROMPT" then the solid's faces as coordinate
    /// tokens (PolyGen order, on the mesh codec's grid); the solid at the
    /// size `seed` draws (`SolidSpec::varied_mesh`).
    pub fn text_to_mesh(&self, solid: &SolidSpec, seed: u64) -> Result<Sequence, DataError> {
        let mut target = vec![self.marker("<|mesh_start|>")?];
        target.extend(self.mesh_tokens(solid, seed)?);
        target.push(self.marker("<|mesh_end|>")?);
        target.push(self.end()?);
        Ok(Sequence::new(
            self.text(&user_turn(&format!("Model: {}", solid.prompt())))?,
            target,
        ))
    }

    /// [`Writer::text_to_mesh`], the model reading the size tokens of
    /// `other` (drawn with `other_seed`) in place of the solid's own, while
    /// still taught the solid's: in a stretched frame the faces are the
    /// same for every size, and a model that never saw a solid's faces
    /// after another size's tokens wrote a held-out flat cone's faces
    /// broken. Without size tokens (other frames) the sequence is plain.
    pub fn text_to_mesh_fed_sizes(
        &self,
        solid: &SolidSpec,
        seed: u64,
        other: &SolidSpec,
        other_seed: u64,
    ) -> Result<Sequence, DataError> {
        let mut s = self.text_to_mesh(solid, seed)?;
        let header = self.mesh_codec.frame().header_len();
        let sizes = self.mesh_tokens(other, other_seed)?;
        // Target position 0 is <|mesh_start|>; the sizes follow it.
        s.fed_instead = (0..header).map(|i| (1 + i, sizes[i])).collect();
        Ok(s)
    }

    /// The solid's mesh codes as vocabulary ids.
    fn mesh_tokens(&self, solid: &SolidSpec, seed: u64) -> Result<Vec<u32>, DataError> {
        use encoders::Codec;
        let encoders::Codes::Mesh(mesh) = self
            .mesh_codec
            .encode(&modalities::Media::Mesh(solid.varied_mesh(seed)))?
        else {
            return Err(DataError::Tokenizer(
                "the mesh codec made no mesh codes".into(),
            ));
        };
        Ok(mesh.tokens.iter().map(|&t| self.ids.mesh + t).collect())
    }

    fn speech(&self) -> Result<&crate::speech::SpeechKit, DataError> {
        self.speech.ok_or(DataError::NoSpeech)
    }

    /// `<|audio_start|>` the teacher's mel codes of `sentence` `<|audio_end|>`.
    fn speech_block(&self, sentence: &str) -> Result<Vec<u32>, DataError> {
        let mut block = vec![self.marker("<|audio_start|>")?];
        block.extend(
            self.speech()?
                .codes(sentence)?
                .iter()
                .map(|&c| self.ids.audio + c),
        );
        block.push(self.marker("<|audio_end|>")?);
        Ok(block)
    }

    /// text-to-speech: "Say: " and the sentence's phonemes, then the
    /// teacher's reading as mel codes.
    /// With word markers, marker `k` opens word `k`'s phonemes in the
    /// prompt and its codes in the audio (after the word's phonemes again
    /// with `word_phonemes`; with `phoneme_frames`, each phoneme before
    /// its own frames).
    pub fn text_to_speech(&self, sentence: &str) -> Result<Sequence, DataError> {
        let kit = self.speech()?;
        let said = kit.phonemizer.words(sentence);
        let phonemes = speech_text::marked(&said, &kit.word_markers);
        let mut target = if kit.word_markers.is_empty() {
            self.speech_block(sentence)?
        } else {
            let mut block = vec![self.marker("<|audio_start|>")?];
            for (k, word) in kit.word_codes(said)?.into_iter().enumerate() {
                block.push(self.marker(&kit.word_markers[k % kit.word_markers.len()])?);
                let code = |c: &u32| self.ids.audio + c;
                match &word.phone_frames {
                    Some(starts) if kit.phoneme_frames => {
                        let ends = starts.iter().skip(1).copied().chain([word.codes.len()]);
                        for ((p, &from), to) in word.phones.iter().zip(starts).zip(ends) {
                            block.push(self.marker(&Sound::Phone(*p).token())?);
                            block.extend(word.codes[from..to].iter().map(code));
                        }
                        continue;
                    }
                    // Fewer frames than phones (never seen in the
                    // teacher's readings): the word's phonemes, then its frames.
                    _ if kit.phoneme_frames || kit.word_phonemes => {
                        for p in &word.phones {
                            block.push(self.marker(&Sound::Phone(*p).token())?);
                        }
                    }
                    _ => {}
                }
                block.extend(word.codes.iter().map(code));
            }
            block.push(self.marker("<|audio_end|>")?);
            block
        };
        target.push(self.end()?);
        Ok(Sequence::new(
            self.text(&user_turn(&format!("Say: {phonemes}")))?,
            target,
        ))
    }

    /// transcribe: the teacher's reading, "Transcribe this audio.", then
    /// the sentence.
    pub fn transcribe(&self, sentence: &str) -> Result<Sequence, DataError> {
        let mut prompt = self.text("<|im_start|>user\n")?;
        prompt.extend(self.speech_block(sentence)?);
        prompt.extend(self.text("Transcribe this audio.<|im_end|>\n<|im_start|>assistant\n")?);
        let mut target = self.text(sentence)?;
        target.push(self.end()?);
        Ok(Sequence::new(prompt, target))
    }

    /// text-to-video: "Film S seconds: PROMPT" then the frames.
    pub fn text_to_video(&self, motion: &Motion) -> Result<Sequence, DataError> {
        let video = motion.render();
        let seconds = video.frames.len() as f64 / f64::from(video.fps.num);
        let mut target = vec![self.marker("<|video_start|>")?];
        for frame in &video.frames {
            target.extend(self.image_block(&self.image_codec.encode_image(frame)?)?);
        }
        target.push(self.marker("<|video_end|>")?);
        target.push(self.end()?);
        Ok(Sequence::new(
            self.text(&user_turn(&format!(
                "Film {seconds} seconds: {}",
                motion.prompt()
            )))?,
            target,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::testing::SceneWriting;
    use crate::world::{Split, World};

    #[test]
    fn sequences_put_codes_in_their_ranges_between_markers() {
        let mut w = World::new(2);
        let parts = SceneWriting::new(&mut w, 256, 0);
        let (writer, ids, tok) = (parts.writer(), parts.ids, &parts.tokenizer);
        let scene = w.scene(Split::Train);
        let s = writer.text_to_image(&scene).unwrap();
        assert_eq!(s.target.len(), 64 + 3, "start, 8x8 codes, end, im_end");
        assert!(s.target[1..65]
            .iter()
            .all(|&t| (ids.image..ids.image + 256).contains(&t)));
        let text = tok.decode(&s.prompt, false).unwrap();
        assert!(
            text.ends_with("assistant\n") && text.contains(&scene.prompt()),
            "{text}"
        );
        let c = writer.caption(&scene).unwrap();
        assert_eq!(
            tok.decode(&c.target[..c.target.len() - 1], false).unwrap(),
            scene.prompt()
        );
        let e = writer.image_edit(&w.edit(Split::Train)).unwrap();
        assert_eq!(e.target.len(), 67);
        let v = writer.text_to_video(&w.motion(Split::Train)).unwrap();
        assert_eq!(v.target.len(), 6 * 66 + 3);
        let m = writer.text_to_mesh(&w.solid(Split::Train), 1).unwrap();
        let faces = &m.target[1..m.target.len() - 2];
        assert!(
            !faces.is_empty() && faces.len().is_multiple_of(9),
            "{}",
            faces.len()
        );
        assert!(faces
            .iter()
            .all(|&t| (ids.mesh..ids.mesh + 64).contains(&t)));
        assert!(m.len() < 1000, "{} tokens", m.len());
    }

    #[test]
    fn image_blocks_open_each_row_with_its_marker_when_the_vocabulary_has_them() {
        let mut w = World::new(3);
        let parts = SceneWriting::new(&mut w, 256, 8);
        let (writer, ids, tok) = (parts.writer(), parts.ids, &parts.tokenizer);
        let first = ids.rows.unwrap();
        assert_eq!(tok.id_to_token(first + 7).unwrap(), "<|row_7|>");
        let s = writer.text_to_image(&w.scene(Split::Train)).unwrap();
        assert_eq!(
            s.target.len(),
            8 * 9 + 3,
            "start, 8 rows of marker and 8 codes, end, im_end"
        );
        for (r, row) in s.target[1..73].chunks(9).enumerate() {
            assert_eq!(row[0], first + r as u32);
            assert!(row[1..]
                .iter()
                .all(|&t| (ids.image..ids.image + 256).contains(&t)));
        }
    }
}
