//! The numbers of a question, and the numbers its wording implies without writing them.
//!
//! A question states numbers in digits (`48`, `$1,200`, `25%`) and in words (`three`,
//! `twenty-five`). Some of them must never move: a number inside a fraction (`2/3 of`,
//! `two-thirds`), a clock time (`5:00 PM`), a year (`in 1998`). And the wording implies
//! numbers it never writes: `twice` is 2, `a week` is 7 days or 52 weeks a year, `per
//! minute` and `an hour` are 60, `%` is 100. A solution's chain may use such an implied
//! number with the same value as a stated one ("a 3-page letter to 2 friends twice a
//! week": `3*2=6`, `6*2=12`), so a stated number whose value the wording also implies
//! cannot be told apart from the implied one, and is left alone.

use std::sync::LazyLock;

use regex::Regex;

use crate::math::number::{Rational, Written, numbers_in};

/// Why a stated number is never perturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frozen {
    /// Part of a fraction: `2/3`, `3 1/2`, `two-thirds`.
    Fraction,
    /// A clock time or a ratio: `5:30`, `5 PM`, `3:2`.
    Clock,
    /// A year: `in 1998`.
    Year,
    /// The wording also implies this value (`twice`, `a week`, `per hour`, `%`).
    Implied,
    /// The chain uses the value more often than the question writes it, and the value is a
    /// common constant (7, 12, 60, ...) or is used twice in one expression: the extra uses
    /// may be implied ones.
    Reused,
    /// The chain never uses it (a count in words, a common constant): moving it would
    /// change the question and not the answer.
    Unused,
}

impl Frozen {
    pub fn reason(self) -> &'static str {
        match self {
            Frozen::Fraction => "part of a fraction",
            Frozen::Clock => "a clock time or ratio",
            Frozen::Year => "a year",
            Frozen::Implied => "the wording implies the same value",
            Frozen::Reused => "used more often than written (a common constant, or twice in one step)",
            Frozen::Unused => "not used by the chain",
        }
    }
}

/// A number the question states.
#[derive(Debug, Clone, PartialEq)]
pub struct Stated {
    pub written: Written,
    /// Followed by `%` or `percent`.
    pub percent: bool,
    /// Written as a word (`three`), not in digits.
    pub word: bool,
    /// Never perturbed, whatever the chain does.
    pub frozen: Option<Frozen>,
}

pub const WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

const TENS: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];

/// Words of fractions: `two-thirds`, `three quarters`, `one half`.
static FRACTION_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^[- ](halves|half|thirds?|quarters?|fourths?|fifths?|sixths?|sevenths?|eighths?|ninths?|tenths?)\b",
    )
    .expect("valid")
});

/// The value of a number word (`seven`, `Twenty-five`, `forty`), if it is one.
pub fn word_value(word: &str) -> Option<i128> {
    let lower = word.to_ascii_lowercase();
    if let Some(v) = WORDS.iter().position(|w| *w == lower) {
        return Some(v as i128);
    }
    if let Some(t) = TENS.iter().position(|w| *w == lower) {
        return Some(20 + 10 * t as i128);
    }
    let (tens, ones) = lower.split_once('-')?;
    let t = TENS.iter().position(|w| *w == tens)?;
    let o = WORDS[1..10].iter().position(|w| *w == ones)?;
    Some(20 + 10 * t as i128 + o as i128 + 1)
}

/// Number words with their places: `three`, `Twenty-five` (words glued by a hyphen
/// to a tens word are one number).
pub fn number_words(text: &str) -> Vec<Written> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        let part_of_word = c.is_alphabetic() || (c == '-' && start.is_some() && is_tens_hyphen(text, start, i));
        match (part_of_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if let Some(value) = word_value(&text[s..i]) {
                    out.push(Written { start: s, end: i, text: text[s..i].to_string(), value: Rational::int(value) });
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Whether the hyphen at `at` joins a tens word to a ones word (`twenty-five`).
fn is_tens_hyphen(text: &str, start: Option<usize>, at: usize) -> bool {
    let Some(s) = start else { return false };
    let before = text[s..at].to_ascii_lowercase();
    let after: String = text[at + 1..].chars().take_while(|c| c.is_alphabetic()).collect();
    TENS.contains(&before.as_str()) && WORDS[1..10].contains(&after.to_ascii_lowercase().as_str())
}

/// Every number the question states, digits and words, in order.
pub fn stated(question: &str) -> Vec<Stated> {
    let mut out: Vec<Stated> = Vec::new();
    for n in numbers_in(question) {
        let after = &question[n.end..];
        let before = &question[..n.start];
        let percent = after.starts_with('%') || after.starts_with(" %") || after.starts_with(" percent");
        let frozen = if is_fraction_part(before, after) {
            Some(Frozen::Fraction)
        } else if is_clock(before, after) {
            Some(Frozen::Clock)
        } else if is_year(&n) {
            Some(Frozen::Year)
        } else {
            None
        };
        out.push(Stated { written: n, percent, word: false, frozen });
    }
    for w in number_words(question) {
        let after = &question[w.end..];
        let frozen = FRACTION_WORD.is_match(after).then_some(Frozen::Fraction);
        let percent = after.starts_with(" percent");
        out.push(Stated { written: w, percent, word: true, frozen });
    }
    out.sort_by_key(|s| s.written.start);
    out
}

/// `2/3`, `3 1/2`, `1/4th`: a number beside a slash with a number on its other side.
fn is_fraction_part(before: &str, after: &str) -> bool {
    let slash_after = after.strip_prefix('/').is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let slash_before = before.strip_suffix('/').is_some_and(|r| r.ends_with(|c: char| c.is_ascii_digit()));
    // The whole part of a mixed number: `3 1/2`.
    let mixed = after.strip_prefix(' ').is_some_and(|r| {
        let digits = r.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && r[digits..].starts_with('/')
    });
    slash_after || slash_before || mixed
}

/// `5:30`, `3:2`, `5 PM`, `7 a.m.`, `9 o'clock`.
fn is_clock(before: &str, after: &str) -> bool {
    static MERIDIEM: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)^ ?(am|pm|a\.m\.|p\.m\.|o'clock)\b").expect("valid"));
    after.starts_with(':') || before.ends_with(':') || MERIDIEM.is_match(after)
}

/// A four-digit whole number from 1000 to 2100 written without a comma.
fn is_year(n: &Written) -> bool {
    n.text.len() == 4
        && !n.text.contains(['.', ','])
        && n.value.as_integer().is_some_and(|y| (1000..=2100).contains(&y))
}

/// The numbers the question's wording implies: each cue word, the values it may stand
/// for, and whether the word is itself the number (`twice`, `dozen`) or a unit whose
/// conversions a solution may use (`week`: 7 days, 52 weeks a year). A solution may use
/// any of them without the question writing it.
static CUES: &[(&str, &[f64], bool)] = &[
    (
        "twice|double|doubled|doubles|doubling|pair|pairs|couple|couples|both|twins|each way|round trip|round-trip|every other|second",
        &[2.0],
        true,
    ),
    ("half|halves|halved|halve", &[2.0, 0.5], true),
    ("triple|tripled|triples|thrice|third|thirds|triplets|triangle|triangles|tricycle|tricycles", &[3.0], true),
    ("quadruple|quadrupled|fourth|fourths|quarter|quarters", &[4.0, 0.25, 25.0], true),
    ("fifth|fifths|pentagon", &[5.0], true),
    ("sixth|sixths|hexagon|half a dozen", &[6.0], true),
    ("octagon|eighth|eighths", &[8.0], true),
    ("tenth|tenths|decade|decades|dime|dimes", &[10.0], true),
    ("nickel|nickels", &[5.0], true),
    ("dozen|dozens", &[12.0], true),
    ("score", &[20.0], true),
    ("gross", &[144.0], true),
    ("week|weeks|weekly", &[7.0, 52.0, 5.0], false),
    ("weekend|weekends", &[2.0], false),
    ("fortnight|fortnights", &[14.0], false),
    ("day|days|daily|overnight", &[24.0, 7.0, 365.0, 30.0], false),
    ("hour|hours|hourly|hr|hrs", &[60.0, 24.0, 3600.0], false),
    ("minute|minutes|min|mins|second|seconds|sec|secs", &[60.0], false),
    ("month|months|monthly", &[12.0, 30.0, 4.0, 31.0], false),
    ("year|years|yearly|annual|annually|birthday", &[12.0, 52.0, 365.0], false),
    ("century|centuries|percent|percentage|per cent|cent|cents|penny|pennies|dollar|dollars", &[100.0], false),
    ("foot|feet|ft", &[12.0, 3.0], false),
    ("inch|inches", &[12.0, 36.0], false),
    ("yard|yards", &[3.0, 36.0], false),
    ("mile|miles", &[5280.0, 1760.0], false),
    ("pound|pounds|lb|lbs", &[16.0], false),
    ("ounce|ounces|oz", &[16.0, 8.0, 128.0], false),
    ("gallon|gallons", &[4.0, 128.0, 8.0, 16.0], false),
    ("quart|quarts", &[4.0, 2.0, 32.0], false),
    ("pint|pints|cup|cups", &[2.0, 8.0, 16.0], false),
    ("ton|tons", &[2000.0, 1000.0], false),
    ("meter|meters|metre|metres|centimeter|centimeters|cm|millimeter|millimeters|mm", &[100.0, 1000.0, 10.0], false),
    (
        "kilometer|kilometers|km|gram|grams|kilogram|kilograms|kg|liter|liters|litre|litres|milliliter|milliliters|ml",
        &[1000.0],
        false,
    ),
    ("legs|leg|wheel|wheels", &[2.0, 3.0, 4.0], false),
    ("sides|square|squares|rectangle|rectangles|rectangular", &[2.0, 4.0], false),
    ("hand|hands|eye|eyes|ear|ears|shoe|shoes|sock|socks|bicycle|bicycles|bike|bikes|parents", &[2.0], false),
    ("finger|fingers|toe|toes", &[5.0, 10.0], false),
    ("deck|cards", &[52.0], false),
];

static CUE_WORDS: LazyLock<Vec<(Regex, Vec<Rational>, bool)>> = LazyLock::new(|| {
    CUES.iter()
        .map(|(words, values, direct)| {
            let re = Regex::new(&format!(r"(?i)\b(?:{words})\b")).expect("valid");
            let values = values.iter().map(|v| Rational::parse(&v.to_string()).expect("decimal")).collect();
            (re, values, *direct)
        })
        .collect()
});

const ORDINALS: [&str; 20] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
];

/// The ordinals of a text (`twelfth`, `12th`, `3rd`): a count the text implies.
fn ordinals(text: &str) -> Vec<i128> {
    static ORDINAL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(?:(\d+)(?:st|nd|rd|th)|([a-z]+))\b").expect("valid"));
    ORDINAL
        .captures_iter(text)
        .filter_map(|c| match (c.get(1), c.get(2)) {
            (Some(digits), _) => digits.as_str().parse().ok().filter(|n: &i128| *n < 1_000_000),
            (_, Some(word)) => {
                ORDINALS.iter().position(|o| word.as_str().eq_ignore_ascii_case(o)).map(|i| i as i128 + 1)
            }
            _ => None,
        })
        .collect()
}

/// A value the question's wording implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Implied {
    pub value: Rational,
    /// A word that is the number itself (`twice`, `half`, `dozen`, an ordinal), not a
    /// unit's conversion (`week`, `hour`, `%`).
    pub direct: bool,
}

/// The values the question's wording implies (`%` implies 100; an ordinal from `fifth`
/// on implies its neighbours too: `twelfth` is 11, 12 and 13, "for 11 months ... on the
/// twelfth month"), each once, a direct cue winning over a unit.
pub fn implied(question: &str) -> Vec<Implied> {
    let mut values: Vec<Implied> = Vec::new();
    for (re, vs, direct) in CUE_WORDS.iter() {
        if re.is_match(question) {
            values.extend(vs.iter().map(|&value| Implied { value, direct: *direct }));
        }
    }
    if question.contains('%') {
        values.push(Implied { value: Rational::int(100), direct: false });
    }
    for n in ordinals(question) {
        // `first` to `fourth` are cue words already; their neighbours are too common
        // (`first` would freeze every 2) to be worth the yield.
        let around = if n >= 5 { vec![n - 1, n, n + 1] } else { vec![n] };
        values.extend(around.into_iter().map(|v| Implied { value: Rational::int(v), direct: true }));
    }
    // Direct first, so the one kept of a value is direct when any is.
    values.sort_by_key(|i| (i.value, !i.direct));
    values.dedup_by_key(|i| i.value);
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(q: &str) -> Vec<(String, Option<Frozen>)> {
        stated(q).into_iter().map(|s| (s.written.text, s.frozen)).collect()
    }

    #[test]
    fn words_digits_fractions_clocks_and_years() {
        let q = "She eats three eggs and bakes with Twenty-five more; two-thirds are brown, 1/4 are white. \
                 From 1:00 PM to 5 PM in 1998 she sold 40% of 2,400.";
        assert_eq!(
            values(q),
            [
                ("three".into(), None),
                ("Twenty-five".into(), None),
                ("two".into(), Some(Frozen::Fraction)),
                ("1".into(), Some(Frozen::Fraction)),
                ("4".into(), Some(Frozen::Fraction)),
                ("1".into(), Some(Frozen::Clock)),
                ("00".into(), Some(Frozen::Clock)),
                ("5".into(), Some(Frozen::Clock)),
                ("1998".into(), Some(Frozen::Year)),
                ("40".into(), None),
                ("2,400".into(), None),
            ]
        );
        assert!(stated(q).iter().find(|s| s.written.text == "40").unwrap().percent);
        assert_eq!(word_value("forty-two"), Some(42));
        assert_eq!(word_value("someone"), None);
        assert!(number_words("someone and nobody").is_empty());
    }

    #[test]
    fn wording_implies_constants() {
        let has = |q: &str, v: i128| implied(q).iter().any(|i| i.value == Rational::int(v));
        let james =
            "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?";
        assert!(has(james, 2) && has(james, 52) && !has(james, 3));
        assert!(has("Emily can type 60 words per minute. How many in 2 hours?", 60));
        assert!(has("It is 25% off.", 100));
        assert!(!has("Tom has 48 apples.", 2));
        assert!(!has("A seconds-free secondary school", 2), "only whole words cue");
        let stephen = "For 11 months Stephen will give his sister $25 per month and the rest on the twelfth month.";
        assert!(has(stephen, 11) && has(stephen, 12) && !has(stephen, 25));
        assert!(has("She finished 3rd in the race.", 3) && !has("She finished 3rd in the race.", 2));
        assert!(has("It was his 40th birthday.", 39));
        let direct = |q: &str, v: i128| implied(q).iter().any(|i| i.value == Rational::int(v) && i.direct);
        assert!(direct(james, 2) && !direct(james, 52) && !direct(james, 12));
    }
}
