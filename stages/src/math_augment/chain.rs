//! The provenance of every number of an annotation chain, decided before anything is
//! perturbed: each literal of each expression is a stated number of the question (one
//! variable per distinct value, so equal numbers stay equal), the result of an earlier
//! step, or a constant (implied by the wording, a common constant, or a stated number that
//! must not move). A stated number is a variable only when nothing else can explain its
//! uses: no fraction, clock or year holds it, the wording does not imply the same value,
//! and a common constant is not used more often than the question writes it.

use std::collections::BTreeMap;

use super::question::{self, Frozen, Stated};
use crate::math::gsm8k::Solution;
use crate::math::number::Rational;

/// Where a literal's value comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// Question variable `v`, scaled (1/100 for a percentage written as a fraction).
    Variable { v: usize, scale: Rational },
    /// The result of step `j`.
    Step(usize),
    /// A constant kept as it is (implied by the wording, common, or left alone).
    Constant,
}

/// A question whose numbers the chain accounts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    /// The values a perturbation may change.
    pub variables: Vec<Rational>,
    /// Each stated occurrence of a variable, to be rewritten with it.
    pub stated: Vec<(Stated, usize)>,
    /// For each annotation, the source of each literal.
    pub literals: Vec<Vec<Source>>,
    /// The step whose result is the final answer.
    pub final_step: usize,
    /// Stated values that stay as they are, and why.
    pub left_alone: Vec<(Rational, Frozen)>,
    /// Values the wording implies.
    pub implied: Vec<Rational>,
}

/// Why a problem's chain cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untraceable {
    NoAnnotations,
    Unreadable,
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
            Untraceable::Unreadable => "an annotation kiln cannot evaluate",
            Untraceable::OriginalDoesNotVerify => "an original annotation does not verify",
            Untraceable::UnknownLiteral => "an expression number comes from neither the question nor a step",
            Untraceable::AmbiguousLiteral => {
                "an expression number could be a step's result or a question number or implied value"
            }
            Untraceable::UnusedQuestionNumber => "the question holds a number the chain does not use",
            Untraceable::FinalAnswerNotComputed => "the final answer is not a step's result",
        }
    }
}

/// A distinct stated value and what is known of it.
struct Value {
    value: Rational,
    percent: bool,
    /// How many times the question writes it.
    written: usize,
    in_digits: bool,
    frozen: Option<Frozen>,
}

pub fn trace(question: &str, solution: &Solution, constants: &[Rational]) -> Result<Flow, Untraceable> {
    if !solution.unreadable.is_empty() {
        return Err(Untraceable::Unreadable);
    }
    if solution.annotations.is_empty() {
        return Err(Untraceable::NoAnnotations);
    }
    if !solution.annotations.iter().all(|a| a.verifies()) {
        return Err(Untraceable::OriginalDoesNotVerify);
    }
    let hundredth = Rational::new(1, 100).expect("nonzero");
    let implied = question::implied(question);
    let stated = question::stated(question);

    let mut values: Vec<Value> = Vec::new();
    for s in &stated {
        let at = match values.iter().position(|v| v.value == s.written.value) {
            Some(at) => at,
            None => {
                values.push(Value {
                    value: s.written.value,
                    percent: false,
                    written: 0,
                    in_digits: false,
                    frozen: None,
                });
                values.len() - 1
            }
        };
        let v = &mut values[at];
        v.percent |= s.percent;
        v.written += 1;
        v.in_digits |= !s.word;
        v.frozen = v.frozen.or(s.frozen);
    }
    // The scales at which a literal may be a stated value: as written, or a percentage as
    // a fraction (`25%` used as `.25`).
    let matches = |v: &Value, literal: Rational| -> Option<Rational> {
        if literal == v.value {
            Some(Rational::int(1))
        } else if v.percent && v.value.checked_mul(hundredth) == Some(literal) {
            Some(hundredth)
        } else {
            None
        }
    };
    let literal_values: Vec<Vec<Rational>> = solution.annotations.iter().map(|a| a.expr.values()).collect();
    let is_implied = |value: Rational| implied.iter().any(|i| i.value == value);
    for v in &mut values {
        let uses_in = |lits: &Vec<Rational>| lits.iter().filter(|&&l| matches(v, l).is_some()).count();
        let uses: usize = literal_values.iter().map(uses_in).sum();
        let most_in_one = literal_values.iter().map(uses_in).max().unwrap_or(0);
        let implied_here = is_implied(v.value) || (v.percent && v.value.checked_mul(hundredth).is_some_and(is_implied));
        let why = if implied_here {
            Some(Frozen::Implied)
        } else if (uses > v.written && constants.contains(&v.value)) || most_in_one > v.written {
            // `7*7` for "7 miles a day" in a week, `8*8` legs of 8 spiders: one use is not
            // the stated number.
            Some(Frozen::Reused)
        } else if uses == 0 && (!v.in_digits || constants.contains(&v.value)) {
            Some(Frozen::Unused)
        } else {
            None
        };
        v.frozen = v.frozen.or(why);
    }
    let variable_of: Vec<Option<usize>> = {
        let mut next = 0;
        values
            .iter()
            .map(|v| {
                v.frozen.is_none().then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    };

    let mut used = vec![false; values.len()];
    let mut literals = Vec::new();
    for (i, values_of_step) in literal_values.iter().enumerate() {
        let mut sources = Vec::new();
        for &lit in values_of_step {
            let step = (0..i).rev().find(|&j| solution.annotations[j].result_value() == lit);
            let stated_value = values.iter().enumerate().find_map(|(k, v)| Some((k, matches(v, lit)?)));
            let implied_as = implied.iter().find(|m| m.value == lit);
            let source = match (stated_value, step) {
                // 0.25 both computed (25/100) and implied by "25%": the step is the chain's.
                (Some((k, scale)), Some(j)) if scale != Rational::int(1) && variable_of[k].is_some() => Source::Step(j),
                (Some(_), Some(_)) => return Err(Untraceable::AmbiguousLiteral),
                (None, Some(j)) => match implied_as {
                    None => Source::Step(j),
                    // A step's result that a unit could also imply is the step when it is
                    // the result just computed, used once (`12*52` after 12 pages a week,
                    // in a question about a year); a number word that is the value
                    // (`doubles`: `6-4=2`, `2*2`), or a value used twice (`7*7` after 7
                    // miles a day, in a week), could be either.
                    Some(m) => {
                        let repeated = values_of_step.iter().filter(|&&l| l == lit).count() > 1;
                        if m.direct || repeated || i != j + 1 {
                            return Err(Untraceable::AmbiguousLiteral);
                        }
                        Source::Step(j)
                    }
                },
                (Some((k, scale)), None) => match variable_of[k] {
                    Some(v) => {
                        used[k] = true;
                        Source::Variable { v, scale }
                    }
                    None => Source::Constant,
                },
                (None, None) if implied_as.is_some() || constants.contains(&lit) => Source::Constant,
                (None, None) => return Err(Untraceable::UnknownLiteral),
            };
            sources.push(source);
        }
        literals.push(sources);
    }
    let unused = values
        .iter()
        .zip(&used)
        .any(|(v, &u)| v.frozen.is_none() && !u && v.in_digits && !constants.contains(&v.value));
    if unused {
        return Err(Untraceable::UnusedQuestionNumber);
    }
    let final_step = (0..solution.annotations.len())
        .rev()
        .find(|&j| solution.annotations[j].result_value() == solution.answer.value)
        .ok_or(Untraceable::FinalAnswerNotComputed)?;

    let variables: Vec<Rational> = values.iter().filter(|v| v.frozen.is_none()).map(|v| v.value).collect();
    let stated_variables = stated
        .into_iter()
        .filter_map(|s| {
            let k = values.iter().position(|v| v.value == s.written.value)?;
            Some((s, variable_of[k]?))
        })
        .collect();
    let left_alone = values.iter().filter_map(|v| Some((v.value, v.frozen?))).collect();
    let implied = implied.into_iter().map(|i| i.value).collect();
    Ok(Flow { variables, stated: stated_variables, literals, final_step, left_alone, implied })
}

impl Flow {
    /// The literal values and result of every step for these variable values; `None` if a
    /// step cannot be computed (division by zero, overflow).
    pub fn recompute(&self, solution: &Solution, values: &[Rational]) -> Option<Vec<(Vec<Rational>, Rational)>> {
        let mut steps: Vec<(Vec<Rational>, Rational)> = Vec::new();
        for (a, sources) in solution.annotations.iter().zip(&self.literals) {
            let literal_values: Vec<Rational> = sources
                .iter()
                .zip(a.expr.values())
                .map(|(s, original)| match *s {
                    Source::Variable { v, scale } => values[v].checked_mul(scale),
                    Source::Step(j) => Some(steps[j].1),
                    Source::Constant => Some(original),
                })
                .collect::<Option<_>>()?;
            let result = a.expr.eval_with(&literal_values)?;
            steps.push((literal_values, result));
        }
        Some(steps)
    }

    /// How many stated values are left alone, by reason.
    pub fn left_alone_by_reason(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for (_, why) in &self.left_alone {
            *out.entry(why.reason()).or_default() += 1;
        }
        out
    }

    /// Whether another flow (of a perturbed item) reads the same: the same variables
    /// used in the same places, the same steps and constants. A perturbation whose new
    /// values collide (two variables now equal, a variable equal to a constant or a
    /// step) reads differently, and so does one that changed how often a number is used.
    pub fn reads_like(&self, other: &Flow) -> bool {
        self.variables.len() == other.variables.len()
            && self.literals == other.literals
            && self.final_step == other.final_step
            && self.stated.len() == other.stated.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::gsm8k;

    fn constants() -> Vec<Rational> {
        [100, 60, 12, 7, 2, 52].iter().map(|&c| Rational::int(c)).collect()
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
        let s = gsm8k::parse("24*2=<<24*x=48>>48\n#### 48").unwrap();
        assert_eq!(trace("Tom has 24 apples.", &s, &constants()).unwrap_err(), Untraceable::Unreadable);
    }

    /// The issue's first trap: the "2" of "twice" shares its value with "2 different
    /// friends", so neither may move; 3 still may.
    #[test]
    fn a_stated_number_the_wording_also_implies_is_left_alone() {
        let q =
            "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?";
        let s = gsm8k::parse(
            "He writes each friend 3*2=<<3*2=6>>6 pages a week\nSo he writes 6*2=<<6*2=12>>12 pages every week\n\
             That means he writes 12*52=<<12*52=624>>624 pages a year\n#### 624",
        )
        .unwrap();
        let flow = trace(q, &s, &constants()).unwrap();
        assert_eq!(flow.variables, [Rational::int(3)]);
        assert_eq!(flow.left_alone, [(Rational::int(2), Frozen::Implied)]);
        assert_eq!(flow.literals[1], [Source::Step(0), Source::Constant]);
        assert_eq!(flow.literals[2], [Source::Step(1), Source::Constant]);
    }

    /// "60 words per minute" for an hour: `60*60`. The minutes of an hour are implied.
    #[test]
    fn a_rate_per_minute_does_not_move_the_minutes_of_an_hour() {
        let q = "Emily can type 60 words per minute. How many hours does it take her to write 10,800 words?";
        let s = gsm8k::parse("In an hour, Emily types 60*60=<<60*60=3600>>3600 words.\nSo she takes 10800/3600=<<10800/3600=3>>3 hours.\n#### 3").unwrap();
        let flow = trace(q, &s, &constants()).unwrap();
        assert_eq!(flow.variables, [Rational::int(10800)]);
        assert_eq!(flow.literals[0], [Source::Constant, Source::Constant]);
    }

    /// A common constant used more often than written (`7*7` for "7 miles a day ... a
    /// week" without a cue word would still be suspect), while an ordinary reused number
    /// (48 and its half) is one variable.
    #[test]
    fn reuse_of_a_common_constant_is_not_trusted_but_reuse_of_a_quantity_is() {
        let q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether?";
        let s = gsm8k::parse(
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
        )
        .unwrap();
        let flow = trace(q, &s, &constants()).unwrap();
        assert_eq!(flow.variables, [Rational::int(48)]);
        assert_eq!(flow.literals[0], [Source::Variable { v: 0, scale: Rational::int(1) }, Source::Constant]);
        let q = "A painter uses 12 liters of paint on each wall. How much paint does he use on 12 walls and the door, which takes as much as a wall?";
        let s = gsm8k::parse("12*12=<<12*12=144>>144\n144+12=<<144+12=156>>156\n#### 156").unwrap();
        let flow = trace(q, &s, &constants()).unwrap();
        assert!(flow.variables.is_empty());
        assert_eq!(flow.left_alone, [(Rational::int(12), Frozen::Reused)]);
    }
}
