//! MATH's answers: the last `\boxed{...}` of a solution (braces matched), and
//! equivalence as Hendrycks et al.'s harness decides it (`is_equiv` over `strip_string`:
//! `\dfrac12` and `\frac{1}{2}` and `0.5` are one answer; `\left(`, `\right)`, `^\circ`,
//! `\$`, `\%`, spaces and a trailing `\text{ units}` do not count; `x = 5` is `5`), and,
//! beyond it, two answers that are both plain numbers (decimals, fractions, thousands
//! separators) are equal when their values are.

use super::number::Rational;

/// The content of the last `\boxed{...}` (or `\fbox{...}`, or `\boxed 5`) of a text.
pub fn last_boxed(text: &str) -> Option<String> {
    let at = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"))?;
    let rest = &text[at..];
    let name_len = if rest.starts_with("\\boxed") { 6 } else { 5 };
    let after = &rest[name_len..];
    if let Some(spaced) = after.strip_prefix(' ') {
        // `\boxed 5$`: up to the closing `$` or the end of the line.
        let end = spaced.find(['$', '\n']).unwrap_or(spaced.len());
        return Some(spaced[..end].trim().to_string());
    }
    let open = after.strip_prefix('{')?;
    let mut depth = 1;
    for (i, c) in open.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// `\frac12` -> `\frac{1}{2}`, `\frac1{72}` -> `\frac{1}{72}` (Hendrycks' `_fix_fracs`).
fn fix_fracs(s: &str) -> String {
    let parts: Vec<&str> = s.split("\\frac").collect();
    let mut out = parts[0].to_string();
    for part in &parts[1..] {
        out.push_str("\\frac");
        let chars: Vec<char> = part.chars().collect();
        if chars.first() == Some(&'{') || chars.len() < 2 {
            out.push_str(part);
            continue;
        }
        let (a, b) = (chars[0], chars[1]);
        let rest: String = chars[2..].iter().collect();
        if b == '{' {
            out.push_str(&format!("{{{a}}}{b}{rest}"));
        } else {
            out.push_str(&format!("{{{a}}}{{{b}}}{rest}"));
        }
    }
    out
}

/// `3/4` of two integers -> `\frac{3}{4}` (Hendrycks' `_fix_a_slash_b`).
fn fix_a_slash_b(s: &str) -> String {
    let Some((a, b)) = s.split_once('/') else { return s.to_string() };
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(a), Ok(b)) if s == format!("{a}/{b}") => format!("\\frac{{{a}}}{{{b}}}"),
        _ => s.to_string(),
    }
}

/// `\sqrt3` -> `\sqrt{3}` (Hendrycks' `_fix_sqrt`).
fn fix_sqrt(s: &str) -> String {
    let parts: Vec<&str> = s.split("\\sqrt").collect();
    let mut out = parts[0].to_string();
    for part in &parts[1..] {
        let mut chars = part.chars();
        match chars.next() {
            Some(c) if c != '{' => out.push_str(&format!("\\sqrt{{{c}}}{}", chars.as_str())),
            _ => out.push_str(&format!("\\sqrt{part}")),
        }
    }
    out
}

/// `10\text{ inches}` -> `10` (Hendrycks' `_remove_right_units`, and `\mbox{ ...}`).
fn remove_right_units(s: &str) -> String {
    for marker in ["\\text{ ", "\\mbox{ "] {
        if let Some(at) = s.find(marker) {
            return s[..at].to_string();
        }
    }
    s.to_string()
}

/// An answer in the normal form equivalence compares (Hendrycks' `strip_string`).
pub fn normalize(answer: &str) -> String {
    let mut s = answer.replace('\n', "").replace("\\!", "");
    s = s.replace("\\\\", "\\");
    s = s.replace("tfrac", "frac").replace("dfrac", "frac");
    s = s.replace("\\left", "").replace("\\right", "");
    s = s.replace("^{\\circ}", "").replace("^\\circ", "");
    s = s.replace("\\$", "").replace('$', "");
    s = remove_right_units(&s);
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.is_empty() {
        return s;
    }
    if s.starts_with('.') {
        s = format!("0{s}");
    }
    // `k = 5`, `x=5`: the value (a name of at most two characters before one `=`).
    let sides: Vec<&str> = s.split('=').collect();
    if sides.len() == 2 && sides[0].chars().count() <= 2 {
        s = sides[1].to_string();
    }
    s = fix_sqrt(&s);
    s = s.replace(' ', "");
    s = fix_fracs(&s);
    if s == "0.5" {
        s = "\\frac{1}{2}".into();
    }
    fix_a_slash_b(&s)
}

/// The value of a normalized answer that is one plain number: `12`, `-3.5`, `1,000`,
/// `\frac{3}{4}`, `-\frac{3}{4}`, `\frac{-3}{4}`, `3/4`.
pub fn plain_number(normalized: &str) -> Option<Rational> {
    let (negative, s) = match normalized.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, normalized),
    };
    let value = if let Some(inner) = s.strip_prefix("\\frac{").and_then(|r| r.strip_suffix('}')) {
        let (a, b) = inner.split_once("}{")?;
        signed(a)?.checked_div(signed(b)?)?
    } else if let Some((a, b)) = s.split_once('/') {
        signed(a)?.checked_div(signed(b)?)?
    } else {
        plain_decimal(s)?
    };
    Some(if negative { -value } else { value })
}

fn signed(s: &str) -> Option<Rational> {
    match s.strip_prefix('-') {
        Some(rest) => Some(-plain_decimal(rest)?),
        None => plain_decimal(s),
    }
}

/// Digits, a point, thousands groups of exactly three: nothing else.
fn plain_decimal(s: &str) -> Option<Rational> {
    let grouped = s.contains(',');
    if grouped {
        let whole = s.split('.').next()?;
        let mut groups = whole.split(',');
        let first = groups.next()?;
        if first.is_empty() || first.len() > 3 || groups.any(|g| g.len() != 3) {
            return None;
        }
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',') {
        return None;
    }
    Rational::parse(s)
}

/// Whether two MATH answers are the same: equal after normalization, or both plain
/// numbers of equal value (a list, `100, 200`, is not the number 100,200).
pub fn equivalent(a: &str, b: &str) -> bool {
    let (na, nb) = (normalize(a), normalize(b));
    if na == nb {
        return true;
    }
    let list = |raw: &str| raw.contains(", ");
    !list(a) && !list(b) && matches!((plain_number(&na), plain_number(&nb)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_boxed_answer_is_taken_with_its_braces() {
        let s = "So $x = \\boxed{2}$, and then $\\boxed{\\frac{1}{2}}$.";
        assert_eq!(last_boxed(s).as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(last_boxed("the answer is $\\boxed 5$.").as_deref(), Some("5"));
        assert_eq!(last_boxed("$\\fbox{7}$").as_deref(), Some("7"));
        assert_eq!(last_boxed("$\\boxed{\\text{(C)}}$").as_deref(), Some("\\text{(C)}"));
        assert_eq!(last_boxed("no box"), None);
        assert_eq!(last_boxed("\\boxed{unclosed"), None);
    }

    /// The forms the issue names, and the ones Hendrycks' harness folds.
    #[test]
    fn equivalent_answers_are_equal() {
        for (a, b) in [
            ("\\frac{1}{2}", "\\dfrac12"),
            ("\\frac{1}{2}", "0.5"),
            ("\\tfrac{1}{2}", "1/2"),
            ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
            ("10\\text{ inches}", "10"),
            ("90^\\circ", "90"),
            ("90^{\\circ}", "90"),
            ("\\$18.90", "18.90"),
            ("25\\%", "25"),
            ("x = 5", "5"),
            ("\\sqrt3", "\\sqrt{3}"),
            ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt{3}}{2}"),
            ("1,000", "1000"),
            ("0.75", "\\frac34"),
            ("-\\frac{3}{4}", "-0.75"),
            ("\\frac{-3}{4}", "-\\frac34"),
            (".5", "\\frac{1}{2}"),
            ("2.50", "2.5"),
        ] {
            assert!(equivalent(a, b), "{a} and {b}");
            assert!(equivalent(b, a), "{b} and {a}");
        }
    }

    #[test]
    fn different_answers_differ() {
        for (a, b) in [
            ("\\frac{1}{2}", "\\frac{1}{3}"),
            ("(1,2)", "12"),
            ("3", "\\sqrt{3}"),
            ("x^2+1", "x^2-1"),
            ("1,2", "12"),
            ("\\text{(A)}", "\\text{(B)}"),
            ("100, 200", "100200"),
        ] {
            assert!(!equivalent(a, b), "{a} and {b}");
        }
    }
}
