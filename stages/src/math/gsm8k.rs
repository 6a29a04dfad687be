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
    /// Where the result starts in the solution.
    pub result_start: usize,
    /// The result as written: a number (`24`, `$1,200`, `-5`, `80%`, `3.33`) or a
    /// fraction (`3/4`).
    pub result: Expr,
}

impl Annotation {
    /// The value of the result as written.
    pub fn result_value(&self) -> Rational {
        self.result.eval().expect("parsed results evaluate")
    }

    /// Whether the expression evaluates to the written result, exactly or rounded to
    /// the places written (GSM8K writes `10/3=3.33`).
    pub fn verifies(&self) -> bool {
        self.expr.eval().is_some_and(|v| written_as(v, &self.result))
    }

    /// The result's byte range in the solution.
    pub fn result_range(&self) -> (usize, usize) {
        (self.result_start, self.result_start + self.result.text.len())
    }
}

/// Whether `value` is what `written` says: equal, or rounded to its decimal places when
/// it is one number (`3.33` for 10/3, `33.3%` for 1/3).
pub fn written_as(value: Rational, written: &Expr) -> bool {
    let Some(shown) = written.eval() else { return false };
    if shown == value {
        return true;
    }
    if !written.is_number() || value.is_integer() {
        return false;
    }
    let literal = &written.literals[0];
    let scaled = if literal.percent { value.checked_mul(Rational::int(100)) } else { Some(value) };
    let negative = shown.is_negative();
    let Some(scaled) = scaled.map(|s| if negative { -s } else { s }) else {
        return false;
    };
    scaled.matches(&literal.written.text)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub text: String,
    /// The annotations kiln can read, in order.
    pub annotations: Vec<Annotation>,
    /// The text of each `<<...>>` that is not `expression=result` kiln can evaluate.
    pub unreadable: Vec<String>,
    /// The number after `#### `, with its place.
    pub answer: Written,
}

/// Why a solution could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    NoFinalAnswer,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NoFinalAnswer => f.write_str("no final answer line `#### N`"),
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
    let value = if negative { -n.value } else { n.value };
    Some(Written { start: after + n.start, end: after + n.end, text: n.text, value })
}

/// One `<<...>>` read: the annotation, or `None` if it is not one kiln can evaluate.
fn annotation(solution: &str, open: usize, close: usize) -> Option<Annotation> {
    let inner = &solution[open + 2..close];
    let eq = inner.rfind('=')?;
    let expr = Expr::parse(&inner[..eq])?;
    let after = &inner[eq + 1..];
    let result_text = after.trim();
    let result = Expr::parse(result_text)?;
    let result_start = open + 2 + eq + 1 + (after.len() - after.trim_start().len());
    Some(Annotation { start: open, end: close + 2, expr_start: open + 2, expr, result_start, result })
}

/// The final answer and every annotation; an annotation kiln cannot read is listed in
/// `unreadable`, not an error: the solution's answer stands without it.
pub fn parse(solution: &str) -> Result<Solution, ParseError> {
    let answer = final_answer(solution).ok_or(ParseError::NoFinalAnswer)?;
    let mut annotations = Vec::new();
    let mut unreadable = Vec::new();
    let mut rest = 0;
    while let Some(open) = solution[rest..].find("<<").map(|i| i + rest) {
        let Some(close) = solution[open..].find(">>").map(|i| i + open) else {
            unreadable.push(solution[open + 2..].chars().take(30).collect());
            break;
        };
        match annotation(solution, open, close) {
            Some(a) => annotations.push(a),
            None => unreadable.push(solution[open + 2..close].to_string()),
        }
        rest = close + 2;
    }
    Ok(Solution { text: solution.to_string(), annotations, unreadable, answer })
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
        let (start, end) = s.annotations[1].result_range();
        assert_eq!(&SOLUTION[start..end], "72");
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
    }

    /// Each form of annotation GSM8K's files hold (written for kiln in those forms): all
    /// read, all verify.
    #[test]
    fn every_annotation_form_of_gsm8k_is_read_and_verifies() {
        let annotations = [
            "<<+30+46+38+11+18=143>>",
            "<<+10=10>>",
            "<<3*+6=18>>",
            "<<10//3=3>>",
            "<<3/4=3/4>>",
            "<<6/8=3/4>>",
            "<<1/3=0.33>>",
            "<<-2+5=3>>",
            "<<5-8=-3>>",
            "<<$4*3=$12>>",
            "<<3*$4.50=$13.50>>",
            "<<20%*50=10>>",
            "<<100%-20%=80%>>",
            "<<1/4=25%>>",
            "<<1/3=33.33%>>",
            "<<1200*2=2,400>>",
            "<<1,200/4=300>>",
            "<<2**3=8>>",
            "<<5^2=25>>",
            "<<125=125>>",
            "<< 3 * 4 = 12 >>",
            "<<10/4=2.5>>",
            "<<.5*10=5>>",
            "<<12 x 2=24>>",
        ];
        for a in annotations {
            let s = parse(&format!("Some steps {a} here.\n#### 1")).unwrap();
            assert!(s.unreadable.is_empty(), "{a} is unreadable");
            assert!(s.annotations[0].verifies(), "{a} does not verify");
        }
    }

    #[test]
    fn an_unreadable_annotation_is_listed_and_the_answer_stands() {
        let s = parse("He has 2+x = <<2+x=4>>4 and <<3*4=12>>12.\n#### 12").unwrap();
        assert_eq!(s.unreadable, ["2+x=4"]);
        assert_eq!(s.annotations.len(), 1);
        assert_eq!(s.answer.value, Rational::int(12));
        let s = parse("Open <<3*4 never closed\n#### 12").unwrap();
        assert_eq!(s.unreadable.len(), 1);
    }
}
