//! Text normalisation for speech: written English turned into the words a
//! reader says, with the pauses its punctuation marks. Numbers, ordinals,
//! years, money and percentages are spelled out (`num2words`), common
//! abbreviations and symbols expanded, and capitalised acronyms that the
//! lexicon does not know are spelled letter by letter.

use num2words::{Currency, Num2Words};

/// One spoken unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spoken {
    /// A lowercase word (letters and inner apostrophes).
    Word(String),
    /// A pause: a comma, colon, semicolon or the end of a sentence.
    Pause,
}

const ABBREVIATIONS: &[(&str, &str)] = &[
    ("mr", "mister"),
    ("mrs", "missus"),
    ("ms", "miz"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("jr", "junior"),
    ("sr", "senior"),
    ("prof", "professor"),
    ("vs", "versus"),
    ("etc", "et cetera"),
    ("e.g", "for example"),
    ("i.e", "that is"),
    ("approx", "approximately"),
];

const SYMBOLS: &[(char, &str)] = &[
    ('&', "and"),
    ('+', "plus"),
    ('@', "at"),
    ('%', "percent"),
    ('=', "equals"),
    ('#', "number"),
];

/// Words of `text` as spoken; `known` says whether the lexicon has a word
/// (capitalised words it lacks are read as letters when short).
pub fn normalize(text: &str, known: impl Fn(&str) -> bool) -> Vec<Spoken> {
    let mut out = Vec::new();
    for raw in text.split_whitespace() {
        let trimmed = raw.trim_end_matches(|c: char| ".,;:!?)]}\"'".contains(c));
        let mut trailing = &raw[trimmed.len()..];
        let core = trimmed.trim_start_matches(|c: char| "([{\"'".contains(c));
        // "Dr." and "e.g." keep their period: an abbreviation, not a pause.
        let dotless = core.replace('.', "");
        let expansion = ABBREVIATIONS
            .iter()
            .find(|(a, _)| a.replace('.', "").eq_ignore_ascii_case(&dotless))
            .filter(|_| trailing.starts_with('.'));
        match expansion {
            Some((_, said)) => {
                push_words(said, &mut out);
                trailing = &trailing[1..];
            }
            None => word(core, &known, &mut out),
        }
        if trailing.chars().any(|c| ".,;:!?".contains(c)) {
            push_pause(&mut out);
        }
    }
    while out.last() == Some(&Spoken::Pause) {
        out.pop();
    }
    out
}

fn push_pause(out: &mut Vec<Spoken>) {
    if !out.is_empty() && out.last() != Some(&Spoken::Pause) {
        out.push(Spoken::Pause);
    }
}

fn push_words(text: &str, out: &mut Vec<Spoken>) {
    for w in text.split(|c: char| c.is_whitespace() || c == '-' || c == ',') {
        let w: String = w
            .chars()
            .filter(|c| c.is_alphabetic() || *c == '\'')
            .collect::<String>()
            .to_lowercase();
        let w = w.trim_matches('\'');
        if !w.is_empty() {
            out.push(Spoken::Word(w.to_string()));
        }
    }
}

fn word(token: &str, known: &impl Fn(&str) -> bool, out: &mut Vec<Spoken>) {
    if token.is_empty() {
        return;
    }
    if let Some(spoken) = number(token) {
        push_words(&spoken, out);
        return;
    }
    // Words joined by hyphens or slashes.
    if token.contains(['-', '/']) && token.chars().any(char::is_alphanumeric) {
        for part in token.split(['-', '/']) {
            word(part, known, out);
        }
        return;
    }
    if let Some((c, said)) = SYMBOLS.iter().find(|(s, _)| token.contains(*s)).copied() {
        let (before, after) = token.split_once(c).unwrap_or((token, ""));
        word(before, known, out);
        push_words(said, out);
        word(after, known, out);
        return;
    }
    let letters: String = token
        .chars()
        .filter(|c| c.is_alphabetic() || *c == '\'')
        .collect();
    if letters.is_empty() {
        return;
    }
    let lower = letters.to_lowercase();
    // An acronym the lexicon lacks ("FBI", "USB") is read letter by letter.
    let upper = letters
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(char::is_uppercase);
    if upper && (2..=5).contains(&letters.chars().count()) && !known(&lower) {
        for c in lower.chars().filter(|c| c.is_alphabetic()) {
            out.push(Spoken::Word(c.to_string()));
        }
        return;
    }
    push_words(&lower, out);
}

/// A number-like token spelled out, or `None` when it is not one.
fn number(token: &str) -> Option<String> {
    let words = |n: Num2Words| n.to_words().ok().map(|w| w.replace('-', " "));
    if let Some(rest) = token.strip_prefix('$') {
        let amount: f64 = rest.replace(',', "").parse().ok()?;
        return words(Num2Words::new(amount).currency(Currency::DOLLAR));
    }
    if let Some(rest) = token.strip_suffix('%') {
        let n = spell_decimal(rest)?;
        return Some(format!("{n} percent"));
    }
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(digits) = token.strip_suffix(suffix) {
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                let n: i64 = digits.parse().ok()?;
                return words(Num2Words::new(n).ordinal());
            }
        }
    }
    if let Some(digits) = token.strip_suffix('s') {
        // "1990s": the decade.
        if digits.len() == 4 && digits.ends_with('0') && digits.chars().all(|c| c.is_ascii_digit())
        {
            let year = words(Num2Words::new(digits.parse::<i64>().ok()?).year())?;
            return Some(match year.strip_suffix('y') {
                Some(stem) => format!("{stem}ies"),
                None => format!("{year}s"),
            });
        }
    }
    if token.len() == 4 && token.chars().all(|c| c.is_ascii_digit()) {
        let n: i64 = token.parse().ok()?;
        if (1100..=2099).contains(&n) && n % 1000 != 0 {
            return words(Num2Words::new(n).year());
        }
    }
    spell_decimal(token)
}

/// "12", "1,234", "3.14", "-2" spelled out.
fn spell_decimal(token: &str) -> Option<String> {
    let (sign, digits) = match token.strip_prefix('-') {
        Some(rest) => ("minus ", rest),
        None => ("", token),
    };
    let digits = digits.replace(',', "");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole_words = if whole.is_empty() {
        "zero".to_string()
    } else if whole.len() > 15 {
        // Too long to say as one number: digit by digit.
        whole.chars().map(digit).collect::<Vec<_>>().join(" ")
    } else {
        Num2Words::new(whole.parse::<i64>().ok()?)
            .to_words()
            .ok()?
            .replace('-', " ")
    };
    let mut out = format!("{sign}{whole_words}");
    if !fraction.is_empty() {
        out.push_str(" point ");
        out.push_str(&fraction.chars().map(digit).collect::<Vec<_>>().join(" "));
    }
    Some(out)
}

fn digit(c: char) -> &'static str {
    match c {
        '0' => "zero",
        '1' => "one",
        '2' => "two",
        '3' => "three",
        '4' => "four",
        '5' => "five",
        '6' => "six",
        '7' => "seven",
        '8' => "eight",
        _ => "nine",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(text: &str) -> String {
        let known = |w: &str| ["nasa", "hello", "no", "it's"].contains(&w);
        normalize(text, known)
            .iter()
            .map(|s| match s {
                Spoken::Word(w) => w.clone(),
                Spoken::Pause => "|".into(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn numbers_money_and_dates_are_spelled_out() {
        assert_eq!(said("I have 42 cats."), "i have forty two cats");
        assert_eq!(
            said("It costs $3.50"),
            "it costs three dollars and fifty cents"
        );
        assert_eq!(said("the 21st time"), "the twenty first time");
        assert_eq!(
            said("in 1999, and 2024"),
            "in nineteen ninety nine | and twenty twenty four"
        );
        assert_eq!(said("pi is 3.14"), "pi is three point one four");
        assert_eq!(said("1,200 people"), "one thousand two hundred people");
        assert_eq!(said("50% off"), "fifty percent off");
        assert_eq!(said("the 1980s"), "the nineteen eighties");
    }

    #[test]
    fn abbreviations_symbols_and_acronyms_are_read_as_said() {
        assert_eq!(
            said("Dr. Smith met Mr. Jones."),
            "doctor smith met mister jones"
        );
        assert_eq!(said("salt & pepper"), "salt and pepper");
        assert_eq!(said("The FBI and NASA"), "the f b i and nasa");
        assert_eq!(said("well-known, no doubt"), "well known | no doubt");
        assert_eq!(
            said("cats, dogs, etc. are pets"),
            "cats | dogs | et cetera are pets"
        );
        assert_eq!(
            said("\"Hello,\" she said; it's late!"),
            "hello | she said | it's late"
        );
    }

    #[test]
    fn odd_input_gives_words_or_nothing_never_a_panic() {
        assert_eq!(said(""), "");
        assert_eq!(said("... !!! ???"), "");
        assert_eq!(said("99999999999999999999999"), "nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine");
        assert_eq!(said("ünïcode café"), "ünïcode café");
        assert_eq!(said("-5"), "minus five");
    }
}
