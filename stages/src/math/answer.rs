//! Numeric answers as benchmarks write them: `12`, `-3.5`, `$1,200`, `80%` (four
//! fifths), `3/4`, `(3/4)`, `\frac{3}{4}`, and Math23K's `((13)/(120))` and mixed
//! numbers `5((7)/(10))` (five and seven tenths), read exactly; and the last such answer
//! in a model's output.

use std::sync::LazyLock;

use regex::Regex;

use super::number::Rational;

/// One answer: a decimal (sign, `$`, thousands groups), a fraction, a mixed number, or a
/// percentage of any of them; `None` if the text is anything else.
pub fn value(text: &str) -> Option<Rational> {
    let mut s = text.trim().trim_end_matches('.').replace(['$', ' '], "");
    let percent = s.ends_with('%');
    if percent {
        s.pop();
    }
    let v = if let Some(plain) = super::latex::plain_number(&s) {
        plain
    } else if let Some(mixed) = mixed_number(&s) {
        mixed
    } else if s.chars().all(|c| c.is_ascii_digit() || "./()-".contains(c)) && s.contains('(') {
        // A fraction in parentheses, as Math23K writes them: `(3/4)`, `((13)/(120))`.
        super::expr::Expr::parse(&s)?.eval()?
    } else {
        return None;
    };
    if percent { v.checked_div(Rational::int(100)) } else { Some(v) }
}

/// `5((7)/(10))`: a whole number and a fraction (Math23K's mixed numbers; also `5(7/10)`).
fn mixed_number(s: &str) -> Option<Rational> {
    let (whole, rest) = s.split_once('(')?;
    let fraction = rest.strip_suffix(')')?;
    let whole = Rational::parse(whole)?;
    if !fraction.contains('/') || !fraction.chars().all(|c| c.is_ascii_digit() || "./()".contains(c)) {
        return None;
    }
    let part = super::expr::Expr::parse(fraction)?.eval()?;
    if whole.is_negative() { whole.checked_sub(part) } else { whole.checked_add(part) }
}

/// The answer written plainly, for a solution's last line: `((13)/(120))` as `13/120`,
/// `5((7)/(10))` as `57/10`; anything else as it is.
pub fn plain(text: &str) -> String {
    let trimmed = text.trim();
    match value(trimmed) {
        Some(v) if trimmed.contains('(') && !trimmed.ends_with('%') => match v.as_integer() {
            Some(n) => n.to_string(),
            None => format!("{}/{}", v.numerator(), v.denominator()),
        },
        _ => trimmed.to_string(),
    }
}

/// An answer-like token: a mixed number, a fraction, a decimal, each perhaps signed and
/// a percentage.
const NUMBER: &str = r"-?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\(\d+/\d+\)|/\d+(?:\.\d+)?)?%?";

static LAST: LazyLock<Regex> = LazyLock::new(|| Regex::new(NUMBER).expect("valid"));

/// The last answer-like number written in `output`, as written.
pub fn last(output: &str) -> Option<String> {
    LAST.find_iter(output).filter(|m| value(m.as_str()).is_some()).last().map(|m| m.as_str().to_string())
}

/// The answer after a marker (`#### `, `The answer is `, `答案是`), as written.
pub fn after_marker(output: &str) -> Option<String> {
    static MARKED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(r"(?:####|[Tt]he answer is:?|答案[是为：:]+)\s*({NUMBER})")).expect("valid")
    });
    MARKED.captures(output).map(|c| c[1].to_string())
}

/// Whether two values are equal within a relative tolerance or an absolute one.
pub fn close(a: Rational, b: Rational, relative: f64, absolute: f64) -> bool {
    let (x, y) = (a.to_f64(), b.to_f64());
    (x - y).abs() <= (relative * y.abs()).max(absolute)
}

/// Whether two answers are equal within a relative tolerance (and an absolute one, for
/// answers near zero); text equality where either is not a number.
pub fn same(a: &str, b: &str, relative: f64, absolute: f64) -> bool {
    match (value(a), value(b)) {
        (Some(x), Some(y)) => close(x, y, relative, absolute),
        _ => a.trim() == b.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Option<f64> {
        value(text).map(|r| r.to_f64())
    }

    #[test]
    fn every_written_form_is_read() {
        assert_eq!(v("12"), Some(12.0));
        assert_eq!(v("-3.5"), Some(-3.5));
        assert_eq!(v("$1,200"), Some(1200.0));
        assert_eq!(v("80%"), Some(0.8));
        assert_eq!(v("12.5%"), Some(0.125));
        assert_eq!(v("3/4"), Some(0.75));
        assert_eq!(v("(3/4)"), Some(0.75));
        assert_eq!(v("\\frac{3}{4}"), Some(0.75));
        assert_eq!(v("2(1/3)").map(|x| (x * 3.0).round()), Some(7.0));
        assert_eq!(v("5((7)/(10))"), Some(5.7), "Math23K's mixed numbers");
        assert_eq!(v("-2(1/2)"), Some(-2.5));
        assert_eq!(v("((2)/(3))").map(|x| (x * 3.0).round()), Some(2.0), "Math23K's fractions");
        assert_eq!(v("((13)/(120))"), Some(13.0 / 120.0));
        assert_eq!(v("(3+4)"), None);
        assert_eq!(plain("((13)/(120))"), "13/120");
        assert_eq!(plain("(3/4)"), "3/4");
        assert_eq!(plain("5((7)/(10))"), "57/10");
        assert_eq!(plain("80%"), "80%");
        assert_eq!(v("0.7400"), Some(0.74));
        assert_eq!(v("42."), Some(42.0));
        assert_eq!(v("x+1"), None);
        assert_eq!(v("1,2"), None);
    }

    #[test]
    fn the_last_answer_and_a_marked_one_are_found() {
        assert_eq!(last("so 3 + 4 = 7 apples").as_deref(), Some("7"));
        assert_eq!(last("the rest is 40% of them").as_deref(), Some("40%"));
        assert_eq!(last("he ate 2(1/3) pies").as_deref(), Some("2(1/3)"));
        assert_eq!(last("nothing"), None);
        assert_eq!(after_marker("x=5\n#### 3/4").as_deref(), Some("3/4"));
        assert_eq!(after_marker("The answer is 12.").as_deref(), Some("12"));
        assert_eq!(after_marker("所以答案是80%。").as_deref(), Some("80%"));
        assert_eq!(after_marker("The answer is 12, so we stop.").as_deref(), Some("12"), "a comma after it");
        assert_eq!(last("we get 1,200, then 12, done").as_deref(), Some("12"));
    }

    #[test]
    fn answers_compare_within_tolerance() {
        assert!(same("1.1475", "1.1475409", 1e-3, 1e-4));
        assert!(!same("1.2", "1.1475", 1e-3, 1e-4));
        assert!(same("0.8", "80%", 0.0, 1e-4));
        assert!(!same("20001", "20000", 0.0, 1e-4), "Math23K's tolerance is absolute");
        assert!(same("0.0001", "0.0000", 1e-3, 1e-4));
        assert!(!same("0.01", "0", 1e-3, 1e-4));
    }
}
