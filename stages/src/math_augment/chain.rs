//! The data flow of an annotation chain: where each number of each expression comes
//! from — a number of the question (one variable per distinct value, so equal numbers
//! stay equal), the result of an earlier step, or a well-known constant — and the chain
//! recomputed with new values for the question's variables.

use crate::math::gsm8k::Solution;
use crate::math::number::{Rational, Written, numbers_in};

/// Where a literal's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// Question variable `v`, scaled (1/100 for a percentage written as a fraction).
    Variable { v: usize, scale: Rational },
    /// The result of step `j`.
    Step(usize),
    /// A constant kept as it is (100, 60, 12, ...).
    Constant,
}

/// A question whose numbers the chain accounts for.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Distinct values of the question's numbers.
    pub variables: Vec<Rational>,
    /// The question's numbers and the variable each is.
    pub question_numbers: Vec<(Written, usize)>,
    /// For each annotation, the source of each literal.
    pub literals: Vec<Vec<Source>>,
    /// The step whose result is the final answer.
    pub final_step: usize,
}

/// Why a problem's chain cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untraceable {
    NoAnnotations,
    OriginalDoesNotVerify,
    UnknownLiteral,
    AmbiguousLiteral,
    UnusedQuestionNumber,
    FinalAnswerNotComputed,
}

impl Untraceable {
    pub fn reason(&self) -> &'static str {
        match self {
            Untraceable::NoAnnotations => "no annotations",
            Untraceable::OriginalDoesNotVerify => "an original annotation does not verify",
            Untraceable::UnknownLiteral => "an expression number comes from neither the question nor a step",
            Untraceable::AmbiguousLiteral => "an expression number matches both a question number and a step",
            Untraceable::UnusedQuestionNumber => "the question holds a number the chain does not use",
            Untraceable::FinalAnswerNotComputed => "the final answer is not a step's result",
        }
    }
}

/// Numbers a solution may use without the question stating them.
pub fn is_constant(value: &Rational, constants: &[Rational]) -> bool {
    constants.contains(value)
}

pub fn trace(question: &str, solution: &Solution, constants: &[Rational]) -> Result<Flow, Untraceable> {
    if solution.annotations.is_empty() {
        return Err(Untraceable::NoAnnotations);
    }
    if !solution.annotations.iter().all(|a| a.verifies()) {
        return Err(Untraceable::OriginalDoesNotVerify);
    }
    let mut variables: Vec<Rational> = Vec::new();
    let mut percent: Vec<bool> = Vec::new();
    let mut question_numbers = Vec::new();
    for n in numbers_in(question) {
        let is_percent = question[n.end..].starts_with('%') || question[n.end..].starts_with(" percent");
        let v = match variables.iter().position(|x| *x == n.value) {
            Some(v) => {
                percent[v] |= is_percent;
                v
            }
            None => {
                variables.push(n.value);
                percent.push(is_percent);
                variables.len() - 1
            }
        };
        question_numbers.push((n, v));
    }
    let hundredth = Rational::new(1, 100).expect("nonzero");
    let mut used = vec![false; variables.len()];
    let mut literals = Vec::new();
    for (i, a) in solution.annotations.iter().enumerate() {
        let mut sources = Vec::new();
        for lit in &a.expr.literals {
            let step = (0..i).rev().find(|&j| solution.annotations[j].result.value == lit.value);
            let variable =
                variables.iter().position(|x| *x == lit.value).map(|v| (v, Rational::int(1))).or_else(|| {
                    // 20% used as .2: the percentage's variable, scaled.
                    variables
                        .iter()
                        .enumerate()
                        .find(|(v, x)| percent[*v] && x.checked_mul(hundredth) == Some(lit.value))
                        .map(|(v, _)| (v, hundredth))
                });
            let source = match (variable, step) {
                // 0.25 both computed (25/100) and implied by "25%": the step is the chain's.
                (Some((_, scale)), Some(j)) if scale != Rational::int(1) => Source::Step(j),
                (Some(_), Some(_)) if !is_constant(&lit.value, constants) => return Err(Untraceable::AmbiguousLiteral),
                (Some((v, scale)), None) => {
                    used[v] = true;
                    Source::Variable { v, scale }
                }
                (None, Some(j)) => Source::Step(j),
                _ if is_constant(&lit.value, constants) => Source::Constant,
                _ => return Err(Untraceable::UnknownLiteral),
            };
            sources.push(source);
        }
        literals.push(sources);
    }
    if used.iter().zip(&variables).any(|(u, v)| !u && !is_constant(v, constants)) {
        return Err(Untraceable::UnusedQuestionNumber);
    }
    let final_step = (0..solution.annotations.len())
        .rev()
        .find(|&j| solution.annotations[j].result.value == solution.answer.value)
        .ok_or(Untraceable::FinalAnswerNotComputed)?;
    Ok(Flow { variables, question_numbers, literals, final_step })
}

impl Flow {
    /// The literal values and result of every step for these variable values; `None` if a
    /// step cannot be computed (division by zero, overflow).
    pub fn recompute(&self, solution: &Solution, values: &[Rational]) -> Option<Vec<(Vec<Rational>, Rational)>> {
        let mut steps: Vec<(Vec<Rational>, Rational)> = Vec::new();
        for (a, sources) in solution.annotations.iter().zip(&self.literals) {
            let literal_values: Vec<Rational> = sources
                .iter()
                .zip(&a.expr.literals)
                .map(|(s, lit)| match *s {
                    Source::Variable { v, scale } => values[v].checked_mul(scale),
                    Source::Step(j) => Some(steps[j].1),
                    Source::Constant => Some(lit.value),
                })
                .collect::<Option<_>>()?;
            let result = a.expr.eval_with(&literal_values)?;
            steps.push((literal_values, result));
        }
        Some(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::gsm8k;

    fn constants() -> Vec<Rational> {
        [100, 60, 12, 7, 2].iter().map(|&c| Rational::int(c)).collect()
    }

    #[test]
    fn literals_trace_to_question_numbers_steps_and_constants() {
        let q = "Tom has 24 apples and gives 25% of them away. How many are left?";
        let s = gsm8k::parse("He gives 24*.25=<<24*.25=6>>6 away.\nHe keeps 24-6=<<24-6=18>>18.\n#### 18").unwrap();
        let flow = trace(q, &s, &constants()).unwrap();
        assert_eq!(flow.variables, [Rational::int(24), Rational::int(25)]);
        assert_eq!(flow.literals[1], [Source::Variable { v: 0, scale: Rational::int(1) }, Source::Step(0)]);
        assert!(matches!(flow.literals[0][1], Source::Variable { v: 1, .. }));
        let steps = flow.recompute(&s, &[Rational::int(40), Rational::int(50)]).unwrap();
        assert_eq!(steps[1].1, Rational::int(20));
    }

    #[test]
    fn what_cannot_be_followed_is_named() {
        let q = "Tom has 24 apples and 3 pears.";
        let s = gsm8k::parse("24*2=<<24*2=48>>48\n#### 48").unwrap();
        assert_eq!(trace(q, &s, &constants()).unwrap_err(), Untraceable::UnusedQuestionNumber);
        let s = gsm8k::parse("24*5=<<24*5=120>>120\n#### 120").unwrap();
        assert_eq!(trace("Tom has 24 apples.", &s, &constants()).unwrap_err(), Untraceable::UnknownLiteral);
        let s = gsm8k::parse("24*2=<<24*2=50>>50\n#### 50").unwrap();
        assert_eq!(trace("Tom has 24 apples.", &s, &constants()).unwrap_err(), Untraceable::OriginalDoesNotVerify);
    }
}
