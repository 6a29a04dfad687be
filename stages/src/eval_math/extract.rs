//! Answer extraction as the standard harnesses do it (lm-evaluation-harness's GSM8K
//! filters): strict takes the number after `#### ` (or `The answer is `), flexible the
//! last number in the output; comparison is numeric, commas and `$` ignored.

use std::sync::LazyLock;

use regex::Regex;

static STRICT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid"));
static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"The answer is (\-?[0-9\.\,]+)").expect("valid"));
static FLEXIBLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid"));

/// The answer after `#### ` (GSM8K's strict match), else after `The answer is `.
pub fn strict(output: &str) -> Option<String> {
    let m = STRICT.captures(output).or_else(|| ANSWER_IS.captures(output))?;
    Some(normalize(&m[1]))
}

/// The last number in the output (GSM8K's flexible extraction).
pub fn flexible(output: &str) -> Option<String> {
    let last = FLEXIBLE.find_iter(output).last()?;
    let n = normalize(last.as_str());
    (!n.is_empty()).then_some(n)
}

/// Without `$`, commas and a trailing period.
pub fn normalize(number: &str) -> String {
    number.replace(['$', ','], "").trim_end_matches('.').to_string()
}

/// Numeric equality with a relative tolerance; text equality where either side is not a
/// number.
pub fn same_answer(extracted: &str, gold: &str) -> bool {
    let (a, b) = (normalize(extracted), normalize(gold));
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-6 * y.abs().max(1.0),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_flexible_follow_the_harness() {
        let out = "She has 3+4=<<3+4=7>>7 apples.\n#### 7";
        assert_eq!(strict(out).as_deref(), Some("7"));
        assert_eq!(flexible(out).as_deref(), Some("7"));
        assert_eq!(strict("so it costs $1,234.").as_deref(), None);
        assert_eq!(flexible("so it costs $1,234.").as_deref(), Some("1234"));
        assert_eq!(strict("#### -12.50").as_deref(), Some("-12.50"));
        assert_eq!(strict("The answer is 42.").as_deref(), Some("42"));
        assert_eq!(flexible("no number here"), None);
    }

    #[test]
    fn answers_compare_as_numbers() {
        assert!(same_answer("1,234", "1234"));
        assert!(same_answer("12.50", "12.5"));
        assert!(!same_answer("12", "13"));
        assert!(same_answer("x", "x"));
    }
}
