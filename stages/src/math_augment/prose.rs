//! The prose around an annotation: the expression written before it (`48/2 =
//! <<48/2=24>>`) and the result written after it (`>>24 clips`). Both must say what the
//! annotation computes, in the original and in every item made from it, or a model
//! trained on them learns to write one thing and compute another.

use crate::math::expr::{Expr, Literal};
use crate::math::gsm8k::{Annotation, Solution};
use crate::math::number::{Rational, Written};

/// A number written in prose, and whether `%` follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProseNumber {
    pub written: Written,
    pub percent: bool,
}

impl ProseNumber {
    fn value(&self) -> Rational {
        if self.percent {
            self.written.value.checked_div(Rational::int(100)).expect("nonzero")
        } else {
            self.written.value
        }
    }
}

pub const MISMATCH: &str = "a prose expression differs from its annotation";
pub const RESULT_MISMATCH: &str = "the number after an annotation differs from its result";

/// Where the run of expression characters that ends at `end` starts: digits, operators,
/// `$`, `%`, parentheses and spaces, a comma only between digit groups (`1,200`) and a
/// point only before a digit (`.5`), so a clause before the expression stays out.
fn expression_start(text: &str, end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut start = end;
    for (i, c) in text[..end].char_indices().rev() {
        let next_is_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        let ok = match c {
            '0'..='9' | ' ' | '$' | '%' | '+' | '-' | '*' | '/' | '(' | ')' | '^' | '×' | '÷' | '−' | 'x' => true,
            ',' => i > 0 && bytes[i - 1].is_ascii_digit() && text[i + 1..].chars().take(3).all(|c| c.is_ascii_digit()),
            '.' => next_is_digit,
            _ => false,
        };
        if !ok {
            break;
        }
        start = i;
    }
    start
}

/// The numbers of `text[from..to]` with their places in `text`.
fn numbers(text: &str, from: usize, to: usize) -> Vec<ProseNumber> {
    crate::math::number::numbers_in(&text[from..to])
        .into_iter()
        .map(|n| {
            let percent = text[from + n.end..to].trim_start().starts_with('%');
            ProseNumber { written: Written { start: from + n.start, end: from + n.end, ..n }, percent }
        })
        .collect()
}

/// The numbers of the expression written right before the annotation, `... 48/2 =
/// <<`: the run of expression characters before a `=` (and a `$`) that ends at the
/// annotation. Empty when the prose writes no expression there.
pub fn before(text: &str, a: &Annotation) -> Vec<ProseNumber> {
    match expression_before(text, a) {
        Some((start, end)) => numbers(text, start, end),
        None => Vec::new(),
    }
}

/// The byte range of the expression written right before the annotation, if the prose
/// writes `... =` there.
fn expression_before(text: &str, a: &Annotation) -> Option<(usize, usize)> {
    let head = text[..a.start].trim_end_matches([' ', '$']).trim_end();
    let end = head.strip_suffix('=')?.len();
    Some((expression_start(text, end), end))
}

/// The solution with each annotation that holds only its result (`65+94 = <<159=159>>`)
/// completed from the expression the prose writes before it, when that expression
/// evaluates to the result (`<<65+94=159>>`); `None` if none was.
pub fn complete(solution: &Solution) -> Option<String> {
    let text = &solution.text;
    let mut out = String::new();
    let mut at = 0;
    for a in solution.annotations.iter().filter(|a| a.expr.is_number()) {
        let Some((start, end)) = expression_before(text, a) else { continue };
        let written: String = text[start..end]
            .chars()
            .filter(|c| !matches!(c, ' ' | '$'))
            .map(|c| match c {
                'x' | '×' => '*',
                '÷' => '/',
                c => c,
            })
            .collect();
        let Some(expr) = Expr::parse(&written) else { continue };
        if expr.literals.len() < 2 || expr.eval() != Some(a.result_value()) {
            continue;
        }
        out.push_str(&text[at..a.expr_start]);
        out.push_str(&written);
        at = a.expr_start + a.expr.text.len();
    }
    if at == 0 {
        return None;
    }
    out.push_str(&text[at..]);
    Some(out)
}

/// The result written right after an annotation: `>>24`, `>>$1,200`, `>>3/4`, `>>80%`.
#[derive(Debug, Clone)]
pub struct After {
    /// Its byte range in the solution (without a `$`).
    pub start: usize,
    pub end: usize,
    pub written: Expr,
}

impl After {
    /// The factor from the annotation's result to what is written here: 1; 100 where a
    /// result computed as a fraction is written as a number of percent (`>>60` after
    /// `<<100%-40%=60%>>`); 1/100 where a result computed in percent is written with a
    /// `%` (`<<18/450*100=4>>4%`); `None` if it is not the result.
    pub fn factor(&self, result: Rational) -> Option<Rational> {
        let shown = self.written.eval()?;
        let hundred = Rational::int(100);
        if shown == result || crate::math::gsm8k::written_as(result, &self.written) {
            Some(Rational::int(1))
        } else if result.checked_mul(hundred) == Some(shown) {
            Some(hundred)
        } else if shown.checked_mul(hundred) == Some(result) {
            Rational::new(1, 100)
        } else {
            None
        }
    }
}

/// The result written right after the annotation, if any.
pub fn after(text: &str, a: &Annotation) -> Option<After> {
    let rest = &text[a.end..];
    let skipped = rest.len() - rest.trim_start_matches('$').len();
    let body = &rest[skipped..];
    let len: usize =
        body.chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '/' | '%')).map(char::len_utf8).sum();
    // A sentence's period, a clause's comma, `5/week`: not part of the number.
    let written = body[..len].trim_end_matches(['.', ',', '/']);
    if written.is_empty() {
        return None;
    }
    let start = a.end + skipped;
    Some(After { start, end: start + written.len(), written: Expr::parse(written)? })
}

/// For each number of the prose expression, the literal of the annotation it is (the
/// first unused literal of the same value, as written or as contributed), and the
/// factor from the literal's contributed value to the prose number (1, or 100 where
/// the prose writes a percentage the annotation uses as a fraction).
pub fn align(prose: &[ProseNumber], literals: &[Literal]) -> Option<Vec<(usize, Rational)>> {
    let mut taken = vec![false; literals.len()];
    prose
        .iter()
        .map(|p| {
            let i = (0..literals.len()).find(|&i| {
                !taken[i] && (literals[i].written.value == p.written.value || literals[i].value() == p.value())
            })?;
            taken[i] = true;
            let factor = if literals[i].value().is_zero() {
                Rational::int(1)
            } else {
                p.written.value.checked_div(literals[i].value())?
            };
            Some((i, factor))
        })
        .collect()
}

/// Whether the prose around every annotation says what it computes: each number of the
/// expression before it is one of its literals, and a number right after it is its
/// result.
pub fn check(solution: &Solution) -> Result<(), &'static str> {
    for a in &solution.annotations {
        if align(&before(&solution.text, a), &a.expr.literals).is_none() {
            return Err(MISMATCH);
        }
        if after(&solution.text, a).is_some_and(|n| n.factor(a.result_value()).is_none()) {
            return Err(RESULT_MISMATCH);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::gsm8k;

    fn texts(ns: &[ProseNumber]) -> Vec<&str> {
        ns.iter().map(|n| n.written.text.as_str()).collect()
    }

    #[test]
    fn the_expression_before_and_the_result_after_are_found() {
        let text = "In 3 days he gets 63*3 = <<63*3=189>>189 liters, 200 GB * 40% = <<200*40*.01=80>>80 GB, \
                    $10 x 1.2 = $<<10*1.2=12>>$12 and 4 * 20 sheep = <<20*4=80>>80.\n#### 80";
        let s = gsm8k::parse(text).unwrap();
        let befores: Vec<Vec<String>> =
            s.annotations.iter().map(|a| texts(&before(text, a)).into_iter().map(String::from).collect()).collect();
        assert_eq!(befores, [vec!["63", "3"], vec!["40"], vec!["10", "1.2"], Vec::<&str>::new()]);
        assert_eq!(after(text, &s.annotations[2]).unwrap().written.text, "12");
        let fractions =
            "He eats 6/8 = <<6/8=3/4>>3/4 of it, that is <<3/4=75%>>75%, so <<100%-75%=25%>>25 left.\n#### 25";
        let s = gsm8k::parse(fractions).unwrap();
        let written: Vec<String> = s.annotations.iter().map(|a| after(fractions, a).unwrap().written.text).collect();
        assert_eq!(written, ["3/4", "75%", "25"]);
        assert!(check(&s).is_ok(), "25 after 25% is the result as a percentage");
        let points = gsm8k::parse("off by 18 / 450 x 100 = <<18/450*100=4>>4%\n#### 4").unwrap();
        assert!(check(&points).is_ok(), "4% after a result of 4 percent");
        assert!(check(&s).is_ok());
    }

    #[test]
    fn an_annotation_holding_only_its_result_takes_the_prose_expression() {
        let text = "That's 65+94+81 = <<240=240>>240 points, and 20 x .5 = <<10=10>>10.\n#### 10";
        let completed = complete(&gsm8k::parse(text).unwrap()).unwrap();
        assert_eq!(completed, "That's 65+94+81 = <<65+94+81=240>>240 points, and 20 x .5 = <<20*.5=10>>10.\n#### 10");
        assert!(check(&gsm8k::parse(&completed).unwrap()).is_ok());
        assert_eq!(complete(&gsm8k::parse("So 3+4 = <<8=8>>8\n#### 8").unwrap()), None, "3+4 is not 8");
        assert_eq!(complete(&gsm8k::parse("So <<8=8>>8\n#### 8").unwrap()), None);
    }

    /// The second trap, in the form it took: prose and annotation disagree.
    #[test]
    fn prose_that_disagrees_with_its_annotation_is_caught() {
        for bad in ["20/5 = <<20/2=10>>10\n#### 10", "144+6 = <<144+4=148>>148\n#### 148", "2 x 3 = <<2*4=8>>8\n#### 8"]
        {
            assert_eq!(check(&gsm8k::parse(bad).unwrap()), Err(MISMATCH), "{bad}");
        }
        assert_eq!(check(&gsm8k::parse("2*4 = <<2*4=8>>9 apples\n#### 8").unwrap()), Err(RESULT_MISMATCH));
        assert!(check(&gsm8k::parse("10/3 = <<10/3=3.33>>3.33 each\n#### 3.33").unwrap()).is_ok());
        assert!(check(&gsm8k::parse("40% of 50 is 50*40% = <<50*.4=20>>20\n#### 20").unwrap()).is_ok());
    }
}
