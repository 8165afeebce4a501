//! espeak-ng through its library, loaded when a reading is first asked
//! for: the program can write a reading but not say when each phoneme
//! starts; the library reports phoneme events as it synthesises.
//! Debian's `libespeak-ng1` (a dependency of `espeak-ng`) ships it.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::sync::Mutex;

use modalities::Audio;

/// The library's file name, as the dynamic loader finds it.
pub const LIBRARY: &str = "libespeak-ng.so.1";

/// A reading: the samples and where each phoneme starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub audio: Audio,
    /// espeak-ng's phoneme mnemonic (`"s"`, `"3:"`, `"@L"`) and the sample
    /// it starts at, in order; pauses (`"_"`, `"_:"`) left out.
    pub phonemes: Vec<(String, usize)>,
    /// Each word's position in the text (in characters, the first 1) and
    /// the sample it starts at, in order.
    pub words: Vec<(usize, usize)>,
}

// speak_lib.h: the event record the callback receives, in the C layout.
#[repr(C)]
struct Event {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    /// Milliseconds from the start of the reading.
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: [u8; 8],
}

const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const EVENT_PHONEME: c_int = 7;
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_PHONEME_EVENTS: c_int = 1;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
const SSML: c_uint = 0x10;
/// A sentence's pause at the end, as the program reads.
const END_PAUSE: c_uint = 0x1000;

type Callback = extern "C" fn(*mut c_short, c_int, *mut Event) -> c_int;

struct Library {
    _lib: libloading::Library,
    sample_rate: u32,
    set_voice: unsafe extern "C" fn(*const c_char) -> c_int,
    synth: unsafe extern "C" fn(
        *const c_void,
        usize,
        c_uint,
        c_int,
        c_uint,
        c_uint,
        *mut c_uint,
        *mut c_void,
    ) -> c_int,
    synchronize: unsafe extern "C" fn() -> c_int,
    terminate: unsafe extern "C" fn() -> c_int,
}

impl Drop for Library {
    fn drop(&mut self) {
        // Stops the thread espeak_Initialize started before the library
        // is closed under it.
        #[allow(unsafe_code)]
        // SAFETY: the library is still open (`_lib` is dropped after this).
        unsafe {
            (self.terminate)();
        }
    }
}

/// The samples, phoneme events and word events (text position,
/// milliseconds) of the reading in progress.
#[derive(Default)]
struct InProgress {
    samples: Vec<i16>,
    phonemes: Vec<(String, usize)>,
    words: Vec<(usize, usize)>,
}

thread_local! {
    // The callback runs on the thread that called `espeak_Synth` (the
    // output is synchronous), so the reading in progress lives here.
    static READING: RefCell<InProgress> = RefCell::new(InProgress::default());
}

extern "C" fn collect(wav: *mut c_short, samples: c_int, events: *mut Event) -> c_int {
    READING.with(|r| {
        let reading = &mut *r.borrow_mut();
        #[allow(unsafe_code)]
        // SAFETY: the library hands `samples` valid samples at `wav` and a
        // list of events ended by EVENT_LIST_TERMINATED, both alive for
        // the call.
        unsafe {
            if !wav.is_null() && samples > 0 {
                let wav = std::slice::from_raw_parts(wav, samples as usize);
                reading.samples.extend_from_slice(wav);
            }
            let mut event = events;
            while !event.is_null() && (*event).kind != EVENT_LIST_TERMINATED {
                let ms = (*event).audio_position.max(0) as usize;
                if (*event).kind == EVENT_PHONEME {
                    let id = &(*event).id;
                    let end = id.iter().position(|&b| b == 0).unwrap_or(id.len());
                    let name = String::from_utf8_lossy(&id[..end]);
                    reading.phonemes.push((name.into_owned(), ms));
                } else if (*event).kind == EVENT_WORD {
                    let at = (*event).text_position.max(0) as usize;
                    reading.words.push((at, ms));
                }
                event = event.add(1);
            }
        }
    });
    0
}

/// Held from loading the library to closing it: while loaded, its state
/// (voice, callback, buffers) is global to the process.
static LOADED: Mutex<()> = Mutex::new(());

/// The library, freshly loaded and initialised. Fresh for each reading:
/// the synthesiser keeps state from one utterance to the next (a reading
/// came out up to 50 ms longer after another), so only a fresh instance
/// reads a text the same way every time, as the program does.
#[allow(unsafe_code)]
fn load() -> Result<Library, String> {
    // SAFETY: loading runs the library's initialisers, which have no
    // preconditions; each symbol is read with the signature speak_lib.h
    // declares for it, and the symbols are used only while `_lib` holds
    // the library open.
    unsafe {
        let lib = libloading::Library::new(LIBRARY).map_err(|e| e.to_string())?;
        let initialize: unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int =
            *lib.get(b"espeak_Initialize").map_err(|e| e.to_string())?;
        let set_callback: unsafe extern "C" fn(Callback) = *lib
            .get(b"espeak_SetSynthCallback")
            .map_err(|e| e.to_string())?;
        let mut library = Library {
            set_voice: *lib
                .get(b"espeak_SetVoiceByName")
                .map_err(|e| e.to_string())?,
            synth: *lib.get(b"espeak_Synth").map_err(|e| e.to_string())?,
            synchronize: *lib.get(b"espeak_Synchronize").map_err(|e| e.to_string())?,
            terminate: *lib.get(b"espeak_Terminate").map_err(|e| e.to_string())?,
            sample_rate: 0,
            _lib: lib,
        };
        let rate = initialize(
            AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            std::ptr::null(),
            INITIALIZE_PHONEME_EVENTS,
        );
        if rate <= 0 {
            // Dropping `library` terminates what the call started.
            return Err("espeak_Initialize failed (is espeak-ng-data installed?)".into());
        }
        set_callback(collect);
        library.sample_rate = rate as u32;
        Ok(library)
    }
}

fn locked() -> Result<std::sync::MutexGuard<'static, ()>, String> {
    LOADED.lock().map_err(|_| "a reading panicked".to_string())
}

/// Whether the library loads: the reason when it does not.
pub fn check() -> Result<(), String> {
    let _held = locked()?;
    load().map(|_| ())
}

/// `input` read by `voice` (SSML when `ssml`).
pub fn read(voice: &str, input: &str, ssml: bool) -> Result<Reading, String> {
    let voice = CString::new(voice).map_err(|e| e.to_string())?;
    let text = CString::new(input).map_err(|e| format!("the text holds {e}"))?;
    let _held = locked()?;
    let lib = load()?;
    READING.with(|r| *r.borrow_mut() = InProgress::default());
    #[allow(unsafe_code)]
    // SAFETY: the strings outlive the calls; synchronous output returns
    // after the callback has seen the whole reading.
    let status = unsafe {
        match (lib.set_voice)(voice.as_ptr()) {
            0 => {}
            e => return Err(format!("no voice {voice:?} (error {e})")),
        }
        let flags = CHARS_UTF8 | END_PAUSE | if ssml { SSML } else { 0 };
        let bytes = text.as_bytes_with_nul();
        let status = (lib.synth)(
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            POS_CHARACTER,
            0,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        (lib.synchronize)();
        status
    };
    if status != 0 {
        return Err(format!("espeak_Synth failed (error {status})"));
    }
    let InProgress {
        samples,
        phonemes,
        words,
    } = READING.with(|r| std::mem::take(&mut *r.borrow_mut()));
    let per_ms = f64::from(lib.sample_rate) / 1000.0;
    let sample = |ms: usize| ((ms as f64 * per_ms) as usize).min(samples.len());
    Ok(Reading {
        phonemes: phonemes
            .into_iter()
            .filter(|(name, _)| !name.starts_with('_'))
            .map(|(name, ms)| (name, sample(ms)))
            .collect(),
        words: words.into_iter().map(|(at, ms)| (at, sample(ms))).collect(),
        audio: Audio {
            sample_rate: lib.sample_rate,
            channels: 1,
            samples: samples.iter().map(|&s| f32::from(s) / 32768.0).collect(),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Needs espeak-ng (`scripts/setup-debian.sh`).
    #[test]
    fn the_library_reads_what_the_program_reads_and_says_when_each_phoneme_starts() {
        let text = "a red circle moves left";
        let reading = read("en-us+klatt", text, false).unwrap();
        // Another reading between changes nothing: each reading is fresh.
        read(
            "en-us+klatt",
            "a large red circle at the top left on a blue background",
            false,
        )
        .unwrap();
        assert_eq!(read("en-us+klatt", text, false).unwrap(), reading);
        let file = tempfile::Builder::new().suffix(".wav").tempfile().unwrap();
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us+klatt", "-w"])
            .arg(file.path())
            .arg(text)
            .status()
            .unwrap();
        assert!(status.success());
        let written = Audio::read(file.path(), &modalities::Limits::default()).unwrap();
        assert_eq!(reading.audio.sample_rate, written.sample_rate);
        assert_eq!(reading.audio.samples.len(), written.samples.len());
        let differ = reading
            .audio
            .samples
            .iter()
            .zip(&written.samples)
            .filter(|(a, b)| (*a - *b).abs() > 1e-4)
            .count();
        assert_eq!(differ, 0, "samples differ");
        let names: Vec<&str> = reading.phonemes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 16, "{names:?}");
        assert_eq!(&names[..4], ["a#", "r", "E", "d"], "{names:?}");
        assert!(reading.phonemes.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(reading
            .phonemes
            .iter()
            .all(|p| p.1 < reading.audio.samples.len()));
        // A word event at each word's first character, in order, each at
        // or just before its first phoneme.
        let at: Vec<usize> = reading.words.iter().map(|w| w.0).collect();
        assert_eq!(at, [1, 3, 7, 14, 20]);
        assert!(reading.words.windows(2).all(|w| w[0].1 < w[1].1));
        let red = reading.phonemes[1].1;
        assert!(reading.words[1].1 <= red && red - reading.words[1].1 < 1000);
    }
}
