//! Text: UTF-8.

use std::path::Path;

use crate::{read_bounded, write_atomic, Format, Limits, MediaError, Result};

/// UTF-8 text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl Text {
    pub fn decode(bytes: &[u8]) -> Result<Text> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Text(s.to_owned())),
            Err(e) => Err(MediaError::malformed(
                Format::Text,
                format!("not UTF-8 at byte {}", e.valid_up_to()),
            )),
        }
    }

    pub fn read(path: &Path, limits: &Limits) -> Result<Text> {
        Text::decode(&read_bounded(path, limits)?)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.0.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_dropped_and_invalid_utf8_named() {
        assert_eq!(Text::decode(b"\xef\xbb\xbfhi").unwrap().0, "hi");
        let err = Text::decode(b"ok\xff").unwrap_err().to_string();
        assert!(err.contains("byte 2"), "{err}");
    }
}
