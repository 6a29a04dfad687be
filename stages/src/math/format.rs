//! The math benchmarks' formats: the record fields each is distributed with, how the
//! gold answer is read from a record, and how an answer is taken from a model's output and
//! compared, as each benchmark's own harness does it.

use serde::{Deserialize, Serialize};

use super::{answer, latex};

/// Math23K's harnesses (GTS, Graph2Tree) count an answer right within 1e-4, absolute.
pub const MATH23K_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// GSM8K: `question`, `answer` (steps with `<<a*b=c>>` annotations and a last line
    /// `#### N`); strict match after `#### `, exact numbers.
    #[default]
    Gsm8k,
    /// MATH (Hendrycks et al.): `problem`, `solution` (ending in `\boxed{...}`), `level`,
    /// `type`; the last `\boxed{}`, LaTeX normalized and compared as their harness does.
    Math,
    /// Math401: `query` (an expression ending in `=`), `response`; the last number,
    /// relative tolerance 1e-3.
    Math401,
    /// Math23K: `original_text`, `equation` (`x=...`), `ans` (a number, a fraction or a
    /// percentage); the answer after `####` or the last number, within 1e-4.
    Math23k,
}

impl Format {
    /// The record columns the format is made of, in the order the format lists them.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Format::Gsm8k => &["question", "answer"],
            Format::Math => &["problem", "solution", "level", "type"],
            Format::Math401 => &["query", "response"],
            Format::Math23k => &["original_text", "equation", "ans"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Gsm8k => "gsm8k",
            Format::Math => "math",
            Format::Math401 => "math401",
            Format::Math23k => "math23k",
        }
    }

    /// The answer of an output as the benchmark's harness takes it (GSM8K's strict
    /// `#### N`, MATH's last `\boxed{}`, Math401's and Math23K's marked or last number).
    pub fn extract(self, output: &str) -> Option<String> {
        match self {
            Format::Gsm8k => gsm8k_strict(output),
            Format::Math => latex::last_boxed(output),
            Format::Math401 | Format::Math23k => answer::after_marker(output).or_else(|| answer::last(output)),
        }
    }

    /// A second, more lenient extraction: GSM8K's flexible (the last number), MATH's
    /// `The answer is` / `#### ` when nothing is boxed, the last number otherwise.
    pub fn extract_flexible(self, output: &str) -> Option<String> {
        match self {
            Format::Gsm8k => gsm8k_flexible(output),
            Format::Math => latex::last_boxed(output).or_else(|| answer::after_marker(output)),
            Format::Math401 | Format::Math23k => answer::last(output),
        }
    }

    /// Whether an extracted answer is the gold one.
    pub fn same(self, extracted: &str, gold: &str) -> bool {
        match self {
            Format::Gsm8k => {
                let (a, b) = (gsm8k_normalize(extracted), gsm8k_normalize(gold));
                match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                    _ => a == b,
                }
            }
            Format::Math => latex::equivalent(extracted, gold),
            // The responses are rounded to four places: half a unit of the fourth is the
            // floor of the tolerance.
            Format::Math401 => answer::same(extracted, gold, 1e-3, 5e-5),
            Format::Math23k => answer::same(extracted, gold, 0.0, MATH23K_TOLERANCE),
        }
    }
}

/// lm-evaluation-harness's GSM8K filters: strict takes the number after `#### ` (or `The
/// answer is `), flexible the last number in the output; `$`, commas and a trailing
/// period do not count.
fn gsm8k_strict(output: &str) -> Option<String> {
    use std::sync::LazyLock;
    static STRICT: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid"));
    static ANSWER_IS: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"The answer is (\-?[0-9\.\,]+)").expect("valid"));
    let m = STRICT.captures(output).or_else(|| ANSWER_IS.captures(output))?;
    Some(gsm8k_normalize(&m[1]))
}

fn gsm8k_flexible(output: &str) -> Option<String> {
    use std::sync::LazyLock;
    static FLEXIBLE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid"));
    let last = FLEXIBLE.find_iter(output).last()?;
    let n = gsm8k_normalize(last.as_str());
    (!n.is_empty()).then_some(n)
}

fn gsm8k_normalize(number: &str) -> String {
    number.replace(['$', ','], "").trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_strict_and_flexible_follow_the_harness() {
        let f = Format::Gsm8k;
        let out = "She has 3+4=<<3+4=7>>7 apples.\n#### 7";
        assert_eq!(f.extract(out).as_deref(), Some("7"));
        assert_eq!(f.extract_flexible(out).as_deref(), Some("7"));
        assert_eq!(f.extract("so it costs $1,234.").as_deref(), None);
        assert_eq!(f.extract_flexible("so it costs $1,234.").as_deref(), Some("1234"));
        assert_eq!(f.extract("#### -12.50").as_deref(), Some("-12.50"));
        assert_eq!(f.extract("The answer is 42.").as_deref(), Some("42"));
        assert_eq!(f.extract_flexible("no number here"), None);
        assert!(f.same("1,234", "1234") && f.same("12.50", "12.5") && !f.same("12", "13"));
    }

    #[test]
    fn each_format_reads_its_own_answers() {
        assert_eq!(Format::Math.extract("so $\\boxed{\\dfrac12}$").as_deref(), Some("\\dfrac12"));
        assert!(Format::Math.same("\\dfrac12", "\\frac{1}{2}"));
        assert_eq!(Format::Math401.extract("62×42= 2604").as_deref(), Some("2604"));
        assert!(Format::Math401.same("1.1475", "1.1475") && Format::Math401.same("1.148", "1.1475"));
        assert!(!Format::Math401.same("1.15", "1.1475"));
        assert_eq!(Format::Math23k.extract("x=1-20%=80%\n#### 80%").as_deref(), Some("80%"));
        assert!(Format::Math23k.same("0.8", "80%") && !Format::Math23k.same("0.81", "80%"));
        assert!(!Format::Math23k.same("20001", "20000"));
    }
}
