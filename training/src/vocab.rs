//! The starter pack's vocabulary: a byte-level BPE trained on the world's
//! sentences (so any text still encodes, byte by byte at worst), then the
//! markers, then one special token per code of each modality, at fixed
//! ids that the pack's `pack.yaml` names — the layout the default pack's
//! Python builder makes with the same `tokenizers` library.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Markers around each modality's codes, and the chat turns.
pub const MARKERS: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|image_start|>",
    "<|image_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|video_start|>",
    "<|video_end|>",
    "<|mesh_start|>",
    "<|mesh_end|>",
];

/// How many tokens each part of the vocabulary holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabPlan {
    /// Most BPE tokens for text (bytes and merges).
    pub text: usize,
    pub image_codes: usize,
    pub audio_codes: usize,
    pub mesh_bins: usize,
    /// Row markers of image blocks (`<|row_0|>` ...); 0 for none.
    pub image_rows: usize,
    /// One token per phoneme (and word break and pause), after the
    /// markers: the input of text-to-speech.
    pub phonemes: bool,
    /// Word markers of speech (`<|word_0|>` ...); 0 for none.
    pub word_markers: usize,
}

/// The first id of each code range in a built tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeIds {
    pub image: u32,
    /// The first row marker, when the plan has them.
    pub rows: Option<u32>,
    pub audio: u32,
    pub mesh: u32,
    pub size: usize,
}

pub fn code_name(kind: &str, i: usize) -> String {
    format!("<|{kind}_{i}|>")
}

/// Trains the text part on `corpus` and appends markers and code tokens.
pub fn build_tokenizer<I>(corpus: I, plan: VocabPlan) -> tokenizers::Result<(Tokenizer, CodeIds)>
where
    I: Iterator<Item = String> + Send,
{
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(plan.text)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build()
        .into();
    tokenizer.train(&mut trainer, corpus)?;
    let special = |names: Vec<String>| -> Vec<AddedToken> {
        names
            .into_iter()
            .map(|n| AddedToken::from(n, true))
            .collect()
    };
    tokenizer.add_special_tokens(&special(MARKERS.iter().map(|s| s.to_string()).collect()));
    if plan.phonemes {
        tokenizer.add_special_tokens(&special(encoders::speech_text::Sound::all_tokens()));
    }
    tokenizer.add_special_tokens(&special(
        (0..plan.image_rows).map(|i| code_name("row", i)).collect(),
    ));
    tokenizer.add_special_tokens(&special(encoders::speech_text::word_marker_tokens(
        plan.word_markers,
    )));
    let mut codes = Vec::new();
    codes.extend((0..plan.image_codes).map(|i| code_name("img", i)));
    codes.extend((0..plan.audio_codes).map(|i| code_name("mel", i)));
    codes.extend((0..plan.mesh_bins).map(|i| code_name("mesh", i)));
    tokenizer.add_special_tokens(&special(codes));
    let id = |name: String| -> tokenizers::Result<u32> {
        tokenizer
            .token_to_id(&name)
            .ok_or_else(|| format!("{name} is missing from the vocabulary").into())
    };
    let ids = CodeIds {
        image: id(code_name("img", 0))?,
        rows: (plan.image_rows > 0)
            .then(|| id(code_name("row", 0)))
            .transpose()?,
        audio: id(code_name("mel", 0))?,
        mesh: id(code_name("mesh", 0))?,
        size: tokenizer.get_vocab_size(true),
    };
    Ok((tokenizer, ids))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::world::{Split, World};

    fn sentences() -> Vec<String> {
        let mut w = World::new(4);
        (0..300)
            .flat_map(|_| {
                let e = w.edit(Split::Train);
                [
                    e.before.prompt(),
                    e.instruction,
                    w.motion(Split::Train).prompt(),
                ]
            })
            .collect()
    }

    #[test]
    fn the_vocabulary_holds_text_markers_and_every_code_at_fixed_ids() {
        let plan = VocabPlan {
            text: 400,
            image_codes: 256,
            audio_codes: 512,
            mesh_bins: 64,
            image_rows: 0,
            phonemes: false,
            word_markers: 0,
        };
        let (tok, ids) = build_tokenizer(sentences().into_iter(), plan).unwrap();
        assert!(ids.image as usize <= plan.text + MARKERS.len());
        assert_eq!(ids.audio, ids.image + 256);
        assert_eq!(ids.mesh, ids.audio + 512);
        assert_eq!(ids.size, ids.mesh as usize + 64);
        // World sentences take few tokens; any other text still encodes.
        let s = "a large red circle at the top left on a blue background";
        let enc = tok.encode(s, false).unwrap();
        assert!(enc.get_ids().len() <= 14, "{:?}", enc.get_tokens());
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), s);
        let odd = "Zebra №7 ünïcode";
        let enc = tok.encode(odd, false).unwrap();
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), odd);
        assert!(
            enc.get_ids().iter().all(|&i| i < ids.image),
            "text never uses code ids"
        );
        // Saved, it loads where the pipelines read tokenizers.
        let dir = tempfile::tempdir().unwrap();
        tok.save(dir.path().join("tokenizer.json"), false).unwrap();
        let loaded = pipelines::tokenizer::TextTokenizer::load(dir.path()).unwrap();
        assert_eq!(loaded.token_text(ids.image + 3), "<|img_3|>");
        assert_eq!(loaded.encode(s, false).unwrap(), enc_ids(&tok, s));
    }

    fn enc_ids(tok: &Tokenizer, s: &str) -> Vec<u32> {
        tok.encode(s, false).unwrap().get_ids().to_vec()
    }
}
