//! `math.generate`: programmatic math problems with step-by-step solutions in GSM8K's
//! format (calculator annotations `<<48/2=24>>24`, a final line `#### 24`).
//!
//! Problem `i` depends only on the seed and `i` (its own random stream), so a larger
//! `count` gives a superset of a smaller one, and families take turns, so every family
//! has the same share.

mod arith;
mod word;

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use arith::{Op, annotation, steps};

use crate::context::StageContext;
use crate::error::{Result, StageError};
use crate::schema::standard;
use crate::stage::{InputArtifacts, InputDecl, OutputDecl, Stage, StageReport};

pub struct MathGenerate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Add,
    Sub,
    Mul,
    Div,
    MultiStep,
    Word,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Add => "add",
            Family::Sub => "sub",
            Family::Mul => "mul",
            Family::Div => "div",
            Family::MultiStep => "multi_step",
            Family::Word => "word",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Families to draw from, in turn.
    pub families: Vec<Family>,
    /// Number of problems.
    pub count: u64,
    /// Operand length in digits, `[min, max]`; each operand draws its length uniformly.
    pub digits: [u32; 2],
    /// Write the column-by-column steps before each annotation (`false`: GSM8K's bare
    /// `<<a*b=c>>c` annotations).
    pub steps: bool,
    /// Start the steps of each operation by restating it (`47+85:`), so every step
    /// reads its digits from the same canonical layout, whatever the question's words.
    pub restate: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            families: vec![Family::Add, Family::Sub, Family::Mul, Family::Div, Family::MultiStep, Family::Word],
            count: 10_000,
            digits: [1, 2],
            steps: true,
            restate: true,
        }
    }
}

/// One generated problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub family: Family,
    pub question: String,
    pub solution: String,
    pub answer: u64,
}

impl Stage for MathGenerate {
    type Params = Params;
    const KIND: &'static str = "math.generate";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "math problems with step-by-step solutions and calculator annotations (GSM8K format)";
    const RANDOM: bool = true;

    fn inputs() -> &'static [InputDecl] {
        &[]
    }

    fn check(params: &Params) -> Result<()> {
        if params.families.is_empty() {
            return Err(StageError::param("families", "give at least one family"));
        }
        if params.count == 0 {
            return Err(StageError::param("count", "must be at least 1"));
        }
        let [lo, hi] = params.digits;
        if lo == 0 || lo > hi || hi > 6 {
            return Err(StageError::param(
                "digits",
                format!("must be [min, max] with 1 <= min <= max <= 6, got [{lo}, {hi}]"),
            ));
        }
        Ok(())
    }

    fn outputs(_: &Params, _: &InputArtifacts) -> Result<Vec<OutputDecl>> {
        Ok(vec![OutputDecl::table("problems", standard::problems())])
    }

    fn run(params: &Params, ctx: &mut StageContext) -> Result<StageReport> {
        let mut writer = ctx.write_table("problems")?;
        ctx.progress().start(params.count, "problems");
        const CHUNK: u64 = 8192;
        let mut start = 0;
        while start < params.count {
            let end = (start + CHUNK).min(params.count);
            let problems: Vec<Problem> = (start..end).map(|id| generate(params, ctx.seed, id)).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values((start..end).map(|i| i as i64))),
                Arc::new(StringArray::from_iter_values(problems.iter().map(|p| p.family.name()))),
                Arc::new(StringArray::from_iter_values(problems.iter().map(|p| &p.question))),
                Arc::new(StringArray::from_iter_values(problems.iter().map(|p| &p.solution))),
                Arc::new(StringArray::from_iter_values(problems.iter().map(|p| p.answer.to_string()))),
            ];
            writer.write_columns(columns)?;
            ctx.progress().advance(end - start);
            start = end;
        }
        let rows = writer.finish()?;
        Ok(StageReport::default().metric("problems", rows).summary(format!("{rows} problems")))
    }
}

/// Problem `id` of a generator with these parameters and seed.
pub fn generate(params: &Params, seed: u64, id: u64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    let family = params.families[(id % params.families.len() as u64) as usize];
    let mut draw = Draw { rng: &mut rng, digits: params.digits };
    let (question, chain) = match family {
        Family::Add => draw.arithmetic(Op::Add),
        Family::Sub => draw.arithmetic(Op::Sub),
        Family::Mul => draw.arithmetic(Op::Mul),
        Family::Div => draw.arithmetic(Op::Div),
        Family::MultiStep => draw.multi_step(),
        Family::Word => word::problem(&mut draw),
    };
    let answer = chain.last().expect("a chain has a step").result;
    let mut solution = String::new();
    for step in &chain {
        if params.steps {
            let written = steps(step.a, step.op, step.b).expect("drawn operations are exact");
            if params.restate {
                let separator = if written.contains('\n') { '\n' } else { ' ' };
                solution.push_str(&format!("{}{}{}:{separator}", step.a, step.op.symbol(), step.b));
            }
            solution.push_str(&written);
            solution.push('\n');
        }
        solution.push_str(&step.sentence(&annotation(step.a, step.op, step.b, step.result)));
        solution.push('\n');
    }
    solution.push_str(&format!("#### {answer}"));
    Problem { family, question, solution, answer }
}

/// One computation of a solution, with the sentence that states it (`{}` stands for the
/// annotation).
#[derive(Debug, Clone)]
pub struct Step {
    pub a: u64,
    pub op: Op,
    pub b: u64,
    pub result: u64,
    pub sentence: String,
}

impl Step {
    fn new(a: u64, op: Op, b: u64) -> Self {
        let result = op.apply(a, b).expect("drawn operations are exact");
        Step { a, op, b, result, sentence: "{}".into() }
    }

    /// The same step stated by a sentence with `{}` where the annotation goes.
    fn stated(mut self, sentence: String) -> Self {
        self.sentence = sentence;
        self
    }

    fn sentence(&self, annotation: &str) -> String {
        self.sentence.replace("{}", annotation)
    }
}

/// Random draws under the operand-length range.
pub struct Draw<'a> {
    pub rng: &'a mut ChaCha8Rng,
    digits: [u32; 2],
}

impl Draw<'_> {
    /// An operand: its length uniform in the range, then its value uniform among numbers
    /// of that length (one-digit numbers from `min_one`).
    pub fn operand(&mut self, min_one: u64) -> u64 {
        let len = self.rng.random_range(self.digits[0]..=self.digits[1]);
        self.of_length(len, min_one)
    }

    fn of_length(&mut self, len: u32, min_one: u64) -> u64 {
        let lo = if len == 1 { min_one } else { 10u64.pow(len - 1) };
        self.rng.random_range(lo..10u64.pow(len))
    }

    /// A one-digit factor from 2 to 9.
    pub fn small_factor(&mut self) -> u64 {
        self.rng.random_range(2..10)
    }

    /// An operand no larger than `max` (uniform below `max` if the range has none).
    pub fn at_most(&mut self, max: u64) -> u64 {
        for _ in 0..64 {
            let x = self.operand(0);
            if x <= max {
                return x;
            }
        }
        self.rng.random_range(0..=max)
    }

    pub fn rng_index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// Operands for `op`: a >= b for subtraction; for division a dividend of the drawn
    /// length with an exact quotient, divisor at least 2.
    pub fn operands(&mut self, op: Op) -> (u64, u64) {
        match op {
            Op::Add | Op::Mul => (self.operand(0), self.operand(0)),
            Op::Sub => {
                let (a, b) = (self.operand(0), self.operand(0));
                (a.max(b), a.min(b))
            }
            Op::Div => loop {
                // The dividend first, then a divisor of it (not 1, not itself) whose length
                // is in range; a prime dividend is drawn again.
                let a = self.operand(2);
                let [lo, hi] = self.digits;
                let divisors: Vec<u64> = proper_divisors(a)
                    .into_iter()
                    .filter(|d| (lo..=hi).contains(&(d.to_string().len() as u32)))
                    .collect();
                if !divisors.is_empty() {
                    return (a, *self.pick(&divisors));
                }
            },
        }
    }

    fn arithmetic(&mut self, op: Op) -> (String, Vec<Step>) {
        let (a, b) = self.operands(op);
        let question = match op {
            Op::Add => self.pick(&[
                "What is {a} + {b}?",
                "Compute {a} + {b}.",
                "Find the sum of {a} and {b}.",
                "Add {a} and {b}.",
            ]),
            Op::Sub => self.pick(&[
                "What is {a} - {b}?",
                "Compute {a} - {b}.",
                "Subtract {b} from {a}.",
                "Find the difference between {a} and {b}.",
            ]),
            Op::Mul => self.pick(&[
                "What is {a} * {b}?",
                "Compute {a} * {b}.",
                "Multiply {a} by {b}.",
                "Find the product of {a} and {b}.",
            ]),
            Op::Div => self.pick(&[
                "What is {a} / {b}?",
                "Compute {a} / {b}.",
                "Divide {a} by {b}.",
                "Find the quotient of {a} and {b}.",
            ]),
        };
        let question = question.replace("{a}", &a.to_string()).replace("{b}", &b.to_string());
        (question, vec![Step::new(a, op, b)])
    }

    /// `(a op1 b) op2 c` over +, - and *, with one-digit multipliers and no negative
    /// intermediate; parentheses only where precedence needs them.
    fn multi_step(&mut self) -> (String, Vec<Step>) {
        let ops = [Op::Add, Op::Sub, Op::Mul];
        let op1 = *self.pick(&ops);
        let op2 = *self.pick(&ops);
        let (a, b) = match op1 {
            Op::Mul => (self.operand(0), self.small_factor()),
            _ => self.operands(op1),
        };
        let first = Step::new(a, op1, b);
        let c = match op2 {
            Op::Mul => self.small_factor(),
            Op::Sub => self.at_most(first.result),
            _ => self.operand(0),
        };
        let second = Step::new(first.result, op2, c);
        let (s1, s2) = (op1.symbol(), op2.symbol());
        let expr = if op1.precedence() < op2.precedence() {
            format!("({a} {s1} {b}) {s2} {c}")
        } else {
            format!("{a} {s1} {b} {s2} {c}")
        };
        let template = self.pick(&["What is {e}?", "Compute {e}.", "Evaluate {e}."]);
        (template.replace("{e}", &expr), vec![first, second])
    }
}

/// Divisors of `n` other than 1 and `n`, ascending.
fn proper_divisors(n: u64) -> Vec<u64> {
    let mut small = Vec::new();
    let mut large = Vec::new();
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            small.push(d);
            if d * d != n {
                large.push(n / d);
            }
        }
        d += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(count: u64) -> Params {
        Params { count, ..Params::default() }
    }

    #[test]
    fn problems_depend_on_seed_and_id_only() {
        let a = generate(&params(10), 7, 3);
        let b = generate(&params(1000), 7, 3);
        assert_eq!(a, b);
        assert_ne!(generate(&params(10), 8, 3), a);
    }

    #[test]
    fn families_take_turns() {
        let p = params(12);
        let fams: Vec<_> = (0..6).map(|i| generate(&p, 1, i).family).collect();
        assert_eq!(fams, p.families);
    }

    /// Every annotation `<<expr=c>>c` is true, and the final `#### N` is the answer.
    #[test]
    fn every_annotation_recomputes() {
        let p = params(3000);
        for id in 0..3000 {
            let problem = generate(&p, 42, id);
            let sol = &problem.solution;
            assert!(sol.ends_with(&format!("#### {}", problem.answer)), "{sol}");
            let mut rest = sol.as_str();
            let mut seen = 0;
            while let Some(start) = rest.find("<<") {
                let end = rest[start..].find(">>").unwrap() + start;
                let inner = &rest[start + 2..end];
                let (expr, value) = inner.split_once('=').unwrap();
                let op_at = expr.find(['+', '-', '*', '/']).unwrap();
                let (a, b): (u64, u64) = (expr[..op_at].parse().unwrap(), expr[op_at + 1..].parse().unwrap());
                let op = match &expr[op_at..op_at + 1] {
                    "+" => Op::Add,
                    "-" => Op::Sub,
                    "*" => Op::Mul,
                    _ => Op::Div,
                };
                assert_eq!(op.apply(a, b).unwrap().to_string(), value, "{sol}");
                assert!(rest[end + 2..].starts_with(value), "{sol}");
                rest = &rest[end + 2..];
                seen += 1;
            }
            assert!(seen >= 1, "{sol}");
        }
    }

    #[test]
    fn operands_stay_in_the_digit_range() {
        let p = Params { families: vec![Family::Add, Family::Div], ..params(2000) };
        let mut longest = 0;
        for id in 0..2000 {
            let problem = generate(&p, 5, id);
            for n in problem.question.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()) {
                assert!(n.len() <= 2, "{}", problem.question);
                longest = longest.max(n.len());
            }
        }
        assert_eq!(longest, 2);
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = Params { digits: [3, 1], ..Params::default() };
        match MathGenerate::check(&bad) {
            Err(StageError::Param { path, .. }) => assert_eq!(path, "digits"),
            other => panic!("{other:?}"),
        }
        let empty = Params { families: vec![], ..Params::default() };
        assert!(matches!(MathGenerate::check(&empty), Err(StageError::Param { .. })));
    }
}
