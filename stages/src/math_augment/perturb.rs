//! Number perturbation: new values for the question's variables under constraints
//! (sign kept; integers stay integers, and integer intermediates stay integers; decimals
//! keep their places; round numbers stay round; magnitude within x0.5..x2), the chain
//! recomputed, and question, steps, annotations, prose and final answer re-rendered.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::chain::{Flow, is_constant};
use crate::math::gsm8k::Solution;
use crate::math::number::{Rational, numbers_in, render_like};

/// Why a perturbation was not produced.
pub const NO_DRAW: &str = "no draw satisfied the constraints";
pub const PROSE: &str = "a number in the solution's prose is not accounted for";
pub const AMBIGUOUS_PROSE: &str = "a number in the solution's prose maps to two new values";

/// A new value of the same kind and size as `v`.
fn draw_value(v: Rational, written: &str, rng: &mut ChaCha8Rng) -> Rational {
    if v.is_zero() || v == Rational::int(1) || v.is_negative() {
        return v;
    }
    let places = written.split_once('.').map_or(0, |(_, f)| f.len()) as u32;
    let scale = 10i128.pow(places);
    let Some(m) = v.checked_mul(Rational::int(scale)).and_then(|m| m.as_integer()) else { return v };
    // Keep trailing zeros: 1,200 stays a multiple of 100.
    let mut zeros = 0u32;
    while m % 10i128.pow(zeros + 1) == 0 && m / 10i128.pow(zeros + 1) > 0 && zeros < 6 {
        zeros += 1;
    }
    let unit = 10i128.pow(zeros);
    let significant = m / unit;
    let low = (significant + 1) / 2;
    let high = (significant * 2).max(low + 1);
    let drawn = rng.random_range(low.max(1)..=high);
    Rational::new(drawn * unit, scale).unwrap_or(v)
}

/// Whether a recomputed value keeps the kind of the original: an integer stays an
/// integer, a positive value positive, and a decimal ends within as many places as the
/// original had (at least 2, as money does).
fn keeps_kind(original: &Rational, original_text: &str, new: &Rational) -> bool {
    if original.is_integer() && !new.is_integer() {
        return false;
    }
    if !original.is_negative() && (new.is_negative() || (new.is_zero() && !original.is_zero())) {
        return false;
    }
    let places = original_text.split_once('.').map_or(0, |(_, f)| f.len()).max(2);
    let text = new.to_decimal();
    Rational::parse(&text) == Some(*new) && text.split_once('.').is_none_or(|(_, f)| f.len() <= places)
}

/// A perturbed (question, solution, answer), or why none was made.
pub fn perturb(
    question: &str,
    solution: &Solution,
    flow: &Flow,
    constants: &[Rational],
    attempts: u32,
    rng: &mut ChaCha8Rng,
) -> Result<(String, String, Rational), &'static str> {
    let firsts: Vec<&str> = (0..flow.variables.len())
        .map(|v| flow.question_numbers.iter().find(|(_, x)| *x == v).map_or("", |(w, _)| w.text.as_str()))
        .collect();
    for _ in 0..attempts {
        let values: Vec<Rational> =
            flow.variables.iter().zip(&firsts).map(|(&v, text)| draw_value(v, text, rng)).collect();
        if values == flow.variables {
            continue;
        }
        let Some(steps) = flow.recompute(solution, &values) else { continue };
        let kinds_kept = solution
            .annotations
            .iter()
            .zip(&steps)
            .all(|(a, (_, result))| keeps_kind(&a.result.value, &a.result.text, result));
        if !kinds_kept {
            continue;
        }
        let question = render_question(question, flow, &values);
        let solution_text = render_solution(solution, flow, &values, &steps, constants)?;
        return Ok((question, solution_text, steps[flow.final_step].1));
    }
    Err(NO_DRAW)
}

fn render_question(question: &str, flow: &Flow, values: &[Rational]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (n, v) in &flow.question_numbers {
        out.push_str(&question[at..n.start]);
        out.push_str(&render_like(&values[*v], &n.text));
        at = n.end;
    }
    out.push_str(&question[at..]);
    out
}

/// The solution with every number replaced: literals and results inside annotations by
/// the recomputed chain, the final answer, and numbers in the prose by the value they
/// stood for (a question variable or a step result), which must be unambiguous.
fn render_solution(
    solution: &Solution,
    flow: &Flow,
    values: &[Rational],
    steps: &[(Vec<Rational>, Rational)],
    constants: &[Rational],
) -> Result<String, &'static str> {
    let text = &solution.text;
    // Old value -> new value, for the prose.
    let mut mapping: Vec<(Rational, Rational)> = flow.variables.iter().copied().zip(values.iter().copied()).collect();
    for (a, (_, result)) in solution.annotations.iter().zip(steps) {
        mapping.push((a.result.value, *result));
    }
    let mut replacements: Vec<(usize, usize, String)> = Vec::new();
    for (a, (literals, result)) in solution.annotations.iter().zip(steps) {
        for (lit, v) in a.expr.literals.iter().zip(literals) {
            replacements.push((a.expr_start + lit.start, a.expr_start + lit.end, render_like(v, &lit.text)));
        }
        replacements.push((a.result.start, a.result.end, render_like(result, &a.result.text)));
    }
    let final_value = steps[flow.final_step].1;
    replacements.push((solution.answer.start, solution.answer.end, render_like(&final_value, &solution.answer.text)));
    let inside = |pos: usize| {
        solution.annotations.iter().any(|a| pos >= a.start && pos < a.end)
            || (pos >= solution.answer.start && pos < solution.answer.end)
    };
    for n in numbers_in(text) {
        if inside(n.start) {
            continue;
        }
        let targets: Vec<Rational> = mapping.iter().filter(|(old, _)| *old == n.value).map(|(_, new)| *new).collect();
        match targets.first() {
            None if is_constant(&n.value, constants) => {}
            None => return Err(PROSE),
            Some(first) if targets.iter().any(|t| t != first) => return Err(AMBIGUOUS_PROSE),
            Some(new) => replacements.push((n.start, n.end, render_like(new, &n.text))),
        }
    }
    for (start, end, word) in number_words(text) {
        if inside(start) {
            continue;
        }
        let value = Rational::int(word as i128);
        let targets: Vec<Rational> = mapping.iter().filter(|(old, _)| *old == value).map(|(_, new)| *new).collect();
        match targets.first() {
            None => {}
            Some(first) if targets.iter().any(|t| t != first) => return Err(AMBIGUOUS_PROSE),
            Some(new) if *new == value => {}
            Some(new) => replacements.push((start, end, word_like(new, &text[start..end]))),
        }
    }
    replacements.sort_by_key(|r| r.0);
    let mut out = String::new();
    let mut at = 0;
    for (start, end, new) in replacements {
        out.push_str(&text[at..start]);
        out.push_str(&new);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

const WORDS: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];

/// Numbers written as words (`Two weeks`), with their byte ranges and values.
fn number_words(text: &str) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if let Some(value) = WORDS.iter().position(|w| text[s..i].eq_ignore_ascii_case(w)) {
                    out.push((s, i, value));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// A value written as `original` was: a word (capitalized alike) up to twenty, else digits.
fn word_like(value: &Rational, original: &str) -> String {
    let Some(word) = value.as_integer().and_then(|n| usize::try_from(n).ok()).and_then(|n| WORDS.get(n)) else {
        return value.to_decimal();
    };
    match original.chars().next() {
        Some(c) if c.is_uppercase() => word[..1].to_uppercase() + &word[1..],
        _ => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::gsm8k;
    use crate::math_augment::chain::trace;
    use rand::SeedableRng;

    #[test]
    fn number_words_are_found_and_rewritten_alike() {
        assert_eq!(number_words("Two weeks, one day; someone"), [(0, 3, 2), (11, 14, 1)]);
        assert_eq!(word_like(&Rational::int(4), "Two"), "Four");
        assert_eq!(word_like(&Rational::int(40), "two"), "40");
    }

    #[test]
    fn drawn_values_keep_their_kind() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let v = draw_value(Rational::int(1200), "1,200", &mut rng);
            assert!(v.is_integer() && v.as_integer().unwrap() % 100 == 0);
            let d = draw_value(Rational::parse("4.50").unwrap(), "4.50", &mut rng);
            assert!(d.checked_mul(Rational::int(100)).unwrap().is_integer() && d > Rational::int(2));
            assert_eq!(draw_value(Rational::int(1), "1", &mut rng), Rational::int(1));
        }
    }

    #[test]
    fn a_perturbed_problem_is_rewritten_everywhere() {
        let q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?";
        let s = gsm8k::parse(
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
        )
        .unwrap();
        let constants = [Rational::int(2)];
        let flow = trace(q, &s, &constants).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (q2, s2, answer) = perturb(q, &s, &flow, &constants, 50, &mut rng).unwrap();
        let n = numbers_in(&q2)[0].value;
        assert_ne!(n, Rational::int(48));
        let half = n.checked_div(Rational::int(2)).unwrap();
        assert!(half.is_integer(), "the halving stays exact");
        assert_eq!(answer, n.checked_add(half).unwrap());
        let parsed = gsm8k::parse(&s2).unwrap();
        assert!(parsed.annotations.iter().all(|a| a.verifies()), "{s2}");
        assert_eq!(parsed.answer.value, answer);
        assert!(s2.starts_with(&format!("Natalia sold {}/2 = <<{}/2={}>>{} clips", n, n, half, half)), "{s2}");
    }
}
