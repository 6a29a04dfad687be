//! GSM8K's solution format: step-by-step prose in which each computation carries a
//! calculator annotation, `She sold 48/2 = <<48/2=24>>24 clips in May.`, and a last line
//! `#### 72`. Parsed into the annotation chain and the final answer, each with its
//! place in the text so an augmentation can rewrite them.

use super::expr::Expr;
use super::number::{Rational, Written, numbers_in};

/// One `<<expr=result>>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Byte range of `<<...>>` in the solution.
    pub start: usize,
    pub end: usize,
    /// Where the expression starts in the solution.
    pub expr_start: usize,
    pub expr: Expr,
    /// The result as written, and where it is.
    pub result: Written,
}

impl Annotation {
    /// Whether the expression evaluates to the written result (rounding as written).
    pub fn verifies(&self) -> bool {
        self.expr.eval().is_some_and(|v| v.matches(&self.result.text))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub text: String,
    pub annotations: Vec<Annotation>,
    /// The number after `#### `, with its place.
    pub answer: Written,
}

/// Why a solution could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NoFinalAnswer,
    BadAnnotation(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NoFinalAnswer => f.write_str("no final answer line `#### N`"),
            ParseError::BadAnnotation(a) => write!(f, "annotation `<<{a}>>` is not `expression=result`"),
        }
    }
}

/// The final answer of a solution (`#### 1,200` gives `1200`).
pub fn final_answer(solution: &str) -> Option<Written> {
    let at = solution.rfind("####")?;
    let after = at + 4;
    let n = numbers_in(&solution[after..]).into_iter().next()?;
    let between = &solution[after..after + n.start];
    if !between.chars().all(|c| c == ' ' || c == '$' || c == '-') {
        return None;
    }
    let negative = between.contains('-');
    let value = if negative { Rational::int(0).checked_sub(n.value)? } else { n.value };
    Some(Written { start: after + n.start, end: after + n.end, text: n.text, value })
}

pub fn parse(solution: &str) -> Result<Solution, ParseError> {
    let answer = final_answer(solution).ok_or(ParseError::NoFinalAnswer)?;
    let mut annotations = Vec::new();
    let mut rest = 0;
    while let Some(open) = solution[rest..].find("<<").map(|i| i + rest) {
        let Some(close) = solution[open..].find(">>").map(|i| i + open) else {
            return Err(ParseError::BadAnnotation(solution[open + 2..].chars().take(30).collect()));
        };
        let inner = &solution[open + 2..close];
        let bad = || ParseError::BadAnnotation(inner.to_string());
        let eq = inner.rfind('=').ok_or_else(bad)?;
        let expr = Expr::parse(&inner[..eq]).ok_or_else(bad)?;
        let result_text = inner[eq + 1..].trim();
        let value = Rational::parse(result_text).ok_or_else(bad)?;
        let result_start = open + 2 + eq + 1 + (inner[eq + 1..].len() - inner[eq + 1..].trim_start().len());
        let result = Written {
            start: result_start,
            end: result_start + result_text.len(),
            text: result_text.to_string(),
            value,
        };
        annotations.push(Annotation { start: open, end: close + 2, expr_start: open + 2, expr, result });
        rest = close + 2;
    }
    Ok(Solution { text: solution.to_string(), annotations, answer })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOLUTION: &str = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n\
        Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72";

    #[test]
    fn annotations_and_the_final_answer_are_found() {
        let s = parse(SOLUTION).unwrap();
        assert_eq!(s.annotations.len(), 2);
        assert_eq!(s.annotations[0].expr.text, "48/2");
        assert_eq!(&SOLUTION[s.annotations[1].result.start..s.annotations[1].result.end], "72");
        assert!(s.annotations.iter().all(Annotation::verifies));
        assert_eq!(s.answer.value, Rational::int(72));
        assert_eq!(&SOLUTION[s.answer.start..s.answer.end], "72");
    }

    #[test]
    fn commas_dollars_decimals_and_wrong_annotations() {
        let s = parse("It costs $1,200*.5 = $<<1200*.5=600>>600.\nSo 10/3=<<10/3=3.33>>3.33\n#### 600").unwrap();
        assert!(s.annotations.iter().all(Annotation::verifies));
        let wrong = parse("<<2+2=5>>5\n#### 5").unwrap();
        assert!(!wrong.annotations[0].verifies());
        assert_eq!(final_answer("so\n#### 1,200").unwrap().value, Rational::int(1200));
        assert_eq!(final_answer("#### -3").unwrap().value, Rational::int(-3));
        assert_eq!(parse("no answer").unwrap_err(), ParseError::NoFinalAnswer);
        assert!(matches!(parse("<<2+x=4>>4\n#### 4"), Err(ParseError::BadAnnotation(_))));
    }
}
