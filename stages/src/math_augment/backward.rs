//! Backward questions (FOBAR): one number of the question becomes the unknown `x`, the
//! answer is appended as known, and the question asks for `x`. The solution is derived
//! exactly: following the chain with `x` gives the answer as a·x + b (the chain must be
//! linear in x), so x = (answer - b) / a, written with calculator annotations.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::chain::{Flow, Source};
use crate::math::expr::Arith;
use crate::math::gsm8k::Solution;
use crate::math::number::Rational;

pub const NONLINEAR: &str = "the answer is not linear in the unknown";
pub const INEXACT: &str = "solving for the unknown needs a non-terminating decimal";
pub const NO_CANDIDATE: &str = "no question number appears exactly once to be the unknown";

/// a·x + b.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    pub a: Rational,
    pub b: Rational,
}

impl Linear {
    fn constant(b: Rational) -> Self {
        Linear { a: Rational::int(0), b }
    }
}

impl Arith for Linear {
    fn zero() -> Self {
        Linear::constant(Rational::int(0))
    }
    fn add(self, o: Self) -> Option<Self> {
        Some(Linear { a: self.a.checked_add(o.a)?, b: self.b.checked_add(o.b)? })
    }
    fn sub(self, o: Self) -> Option<Self> {
        Some(Linear { a: self.a.checked_sub(o.a)?, b: self.b.checked_sub(o.b)? })
    }
    fn mul(self, o: Self) -> Option<Self> {
        match (self.a.is_zero(), o.a.is_zero()) {
            (_, true) => Some(Linear { a: self.a.checked_mul(o.b)?, b: self.b.checked_mul(o.b)? }),
            (true, false) => o.mul(self),
            (false, false) => None,
        }
    }
    fn div(self, o: Self) -> Option<Self> {
        if !o.a.is_zero() {
            return None;
        }
        Some(Linear { a: self.a.checked_div(o.b)?, b: self.b.checked_div(o.b)? })
    }
    fn floor_div(self, o: Self) -> Option<Self> {
        (self.a.is_zero() && o.a.is_zero()).then(|| Some(Linear::constant(self.b.floor_div(o.b)?))).flatten()
    }
    fn pow(self, exponent: Self) -> Option<Self> {
        if !exponent.a.is_zero() {
            return None;
        }
        match exponent.b.as_integer()? {
            0 => Some(Linear::constant(Rational::int(1))),
            1 => Some(self),
            _ if self.a.is_zero() => Some(Linear::constant(self.b.pow(exponent.b)?)),
            _ => None,
        }
    }
}

/// `4*x`, `x/4`, `0.85*x`, `2*x/3` for a positive coefficient.
fn times_x(a: Rational) -> String {
    let one = Rational::int(1);
    if a == one {
        "x".to_string()
    } else if let Some(n) = a.as_integer() {
        format!("{n}*x")
    } else if let Some(d) = one.checked_div(a).and_then(|r| r.as_integer()) {
        format!("x/{d}")
    } else if exact_decimal(&a) {
        format!("{a}*x")
    } else {
        format!("{}*x/{}", a.numerator(), a.denominator())
    }
}

/// Whether the value's decimal form is exact (no rounding).
fn exact_decimal(r: &Rational) -> bool {
    Rational::parse(&r.to_decimal()) == Some(*r)
}

/// `4*x+2`, `20-x/5`, `x/4-3`.
fn render(l: Linear) -> String {
    match (l.a.is_negative(), l.b.is_zero(), l.b.is_negative()) {
        (false, true, _) => times_x(l.a),
        (false, false, false) => format!("{}+{}", times_x(l.a), l.b),
        (false, false, true) => format!("{}-{}", times_x(l.a), -l.b),
        (true, _, _) => format!("{}-{}", l.b, times_x(-l.a)),
    }
}

/// The annotation expression for `value / a`, a > 0, written without rounding.
fn divide(value: Rational, a: Rational) -> Option<String> {
    let one = Rational::int(1);
    Some(if let Some(n) = a.as_integer() {
        format!("{value}/{n}")
    } else if let Some(d) = one.checked_div(a).and_then(|r| r.as_integer()) {
        format!("{value}*{d}")
    } else if exact_decimal(&a) {
        format!("{value}/{a}")
    } else {
        format!("{value}*{}/{}", a.denominator(), a.numerator())
    })
}

/// A backward (question, solution, answer) for variable `v` of the flow.
pub fn backward(
    question: &str,
    solution: &Solution,
    flow: &Flow,
    rng: &mut ChaCha8Rng,
) -> Result<(String, String, Rational), &'static str> {
    let used: Vec<usize> = (0..flow.variables.len())
        .filter(|&v| flow.stated.iter().filter(|(_, x)| *x == v).count() == 1)
        .filter(|&v| flow.literals.iter().flatten().any(|s| matches!(s, Source::Variable { v: x, .. } if *x == v)))
        .filter(|&v| !flow.variables[v].is_zero())
        .collect();
    if used.is_empty() {
        return Err(NO_CANDIDATE);
    }
    let v = used[rng.random_range(0..used.len())];
    let x = flow.variables[v];
    // Follow the chain in linear forms: x itself for the unknown, constants elsewhere.
    let mut steps: Vec<Linear> = Vec::new();
    for (a, sources) in solution.annotations.iter().zip(&flow.literals) {
        let values: Vec<Linear> = sources
            .iter()
            .zip(a.expr.values())
            .map(|(s, lit)| match *s {
                Source::Variable { v: w, scale } if w == v => Some(Linear { a: scale, b: Rational::int(0) }),
                Source::Variable { v: w, scale } => Some(Linear::constant(flow.variables[w].checked_mul(scale)?)),
                Source::Step(j) => Some(steps[j]),
                Source::Constant => Some(Linear::constant(lit)),
            })
            .collect::<Option<_>>()
            .ok_or(NONLINEAR)?;
        steps.push(a.expr.eval_as(&values).ok_or(NONLINEAR)?);
    }
    let form = steps[flow.final_step];
    if form.a.is_zero() {
        return Err(NONLINEAR);
    }
    let answer = solution.answer.value;
    let rhs = answer.checked_sub(form.b).ok_or(NONLINEAR)?;
    let solved = rhs.checked_div(form.a).ok_or(NONLINEAR)?;
    if solved != x {
        return Err(NONLINEAR);
    }

    let (masked, _) = flow.stated.iter().find(|(_, w)| *w == v).expect("candidate appears once");
    let question = format!(
        "{}x{} If we know the answer to the above question is {}, what is the value of unknown variable x?",
        &question[..masked.written.start],
        &question[masked.written.end..],
        answer
    );
    let mut text = format!("Following the steps with the unknown x, the answer is {} = {}.\n", render(form), answer);
    // a x + b = F: with a > 0, a x = F - b; with a < 0, |a| x = b - F.
    let positive = !form.a.is_negative();
    let a = if positive { form.a } else { -form.a };
    let value = if positive { rhs } else { -rhs };
    if !form.b.is_zero() {
        let expr = if positive {
            if form.b.is_negative() { format!("{answer}+{}", -form.b) } else { format!("{answer}-{}", form.b) }
        } else {
            format!("{}-{answer}", form.b)
        };
        if !exact_decimal(&value) {
            return Err(INEXACT);
        }
        text.push_str(&format!("So {} = {expr} = <<{expr}={value}>>{value}.\n", times_x(a)));
    }
    if a != Rational::int(1) {
        let expr = divide(value, a).ok_or(NONLINEAR)?;
        text.push_str(&format!("So x = {expr} = <<{expr}={x}>>{x}.\n"));
    }
    text.push_str(&format!("#### {x}"));
    Ok((question, text, x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::gsm8k;
    use crate::math_augment::chain::trace;
    use rand::SeedableRng;

    #[test]
    fn the_unknown_is_solved_from_the_linear_form() {
        let q = "A baker makes 24 muffins in the morning and 18 in the afternoon. He sells 30 of them. How many muffins are left?";
        let s = gsm8k::parse("He makes 24+18 = <<24+18=42>>42 muffins.\n42-30 = <<42-30=12>>12 are left.\n#### 12")
            .unwrap();
        let flow = trace(q, &s, &[]).unwrap();
        for seed in 0..6 {
            let (q2, s2, x) = backward(q, &s, &flow, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            assert!(q2.contains(" x ") && q2.ends_with("what is the value of unknown variable x?"), "{q2}");
            assert!([24, 18, 30].contains(&x.as_integer().unwrap()));
            let parsed = gsm8k::parse(&s2).unwrap();
            assert!(parsed.annotations.iter().all(|a| a.verifies()), "{s2}");
            assert_eq!(parsed.answer.value, x, "{s2}");
        }
    }

    #[test]
    fn a_product_of_the_unknown_with_itself_is_not_linear() {
        let q = "A hall has 9 rows, and each row has a seat more than there are rows. How many seats are there?";
        let s = gsm8k::parse("Each row has 9+1 = <<9+1=10>>10 seats.\nThere are 9*10 = <<9*10=90>>90 seats.\n#### 90")
            .unwrap();
        let flow = trace(q, &s, &[Rational::int(1)]).unwrap();
        assert_eq!(backward(q, &s, &flow, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err(), NONLINEAR);
        assert_eq!(render(Linear { a: Rational::new(1, 4).unwrap(), b: Rational::int(-3) }), "x/4-3");
        assert_eq!(render(Linear { a: Rational::new(-1, 5).unwrap(), b: Rational::int(20) }), "20-x/5");
        assert_eq!(render(Linear { a: Rational::new(2, 3).unwrap(), b: Rational::int(0) }), "2*x/3");
        assert_eq!(divide(Rational::int(17), Rational::parse("0.85").unwrap()).unwrap(), "17/0.85");
        assert_eq!(divide(Rational::int(4), Rational::new(2, 3).unwrap()).unwrap(), "4*3/2");
    }
}
