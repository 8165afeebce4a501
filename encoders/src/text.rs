//! Text: `tokenizer.json` through the `tokenizers` crate.

use std::path::Path;

use modalities::{Kind, Media, Text};

use crate::codes::{Codes, TextCodes};
use crate::error::{CodecError, Result};
use crate::{Codec, Structure};

pub struct TextCodec {
    tokenizer: tokenizers::Tokenizer,
}

impl TextCodec {
    /// Loads `DIR/tokenizer.json`.
    pub fn load(dir: &Path) -> Result<TextCodec> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(CodecError::config(&path, "missing"));
        }
        let tokenizer =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| CodecError::config(&path, e))?;
        Ok(TextCodec { tokenizer })
    }

    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// Ids of `text`, without the special tokens a model adds around a prompt.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| CodecError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode_ids(&self, ids: &[u32]) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some((at, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
            return Err(CodecError::Codes(format!(
                "id {id} at position {at} is outside the vocabulary of {vocab}"
            )));
        }
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| CodecError::Tokenizer(e.to_string()))
    }
}

impl Codec for TextCodec {
    fn kind(&self) -> Kind {
        Kind::Text
    }

    fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn structure(&self) -> Structure {
        Structure::Text
    }

    fn encode(&self, media: &Media) -> Result<Codes> {
        let Media::Text(Text(text)) = media else {
            return Err(CodecError::Input(format!(
                "a text codec encodes text, not {}",
                media.kind()
            )));
        };
        let ids = self.encode_text(text)?;
        if ids.is_empty() {
            return Err(CodecError::Input("the text is empty".into()));
        }
        Ok(Codes::Text(TextCodes { ids }))
    }

    fn decode(&self, codes: &Codes) -> Result<Media> {
        let Codes::Text(t) = codes else {
            return Err(CodecError::Codes(format!(
                "a text codec decodes text codes, not {}",
                codes.kind()
            )));
        };
        Ok(Media::Text(Text(self.decode_ids(&t.ids)?)))
    }
}
