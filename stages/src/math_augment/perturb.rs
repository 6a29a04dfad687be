//! Number perturbation: new values for the question's variables under constraints
//! (sign kept; integers stay integers, and integer intermediates stay integers; decimals
//! keep their places; round numbers stay round; a percentage stays at most 100;
//! magnitude within x0.5..x2), the chain recomputed, and question, annotations, prose
//! and final answer re-rendered. The expression written before an annotation is
//! re-rendered from the annotation's literals, never by value, so the two cannot drift
//! apart; any other number in the prose is rewritten by value only where its value has
//! one meaning in the chain.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::chain::{Flow, Source};
use super::prose;
use super::question::{WORDS, number_words};
use crate::math::expr::Expr;
use crate::math::gsm8k::Solution;
use crate::math::number::{Rational, numbers_in, render_like};

/// Why a perturbation was not produced.
pub const NO_VARIABLE: &str = "no question number may move";
pub const NO_DRAW: &str = "no draw satisfied the constraints";
pub const PROSE: &str = "a number in the solution's prose is not accounted for";
pub const AMBIGUOUS_PROSE: &str = "a number in the solution's prose has two meanings in the chain";

/// A new value of the same kind and size as `v` (`written` as the question writes it).
fn draw_value(v: Rational, written: &str, percent: bool, rng: &mut ChaCha8Rng) -> Rational {
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
    let mut high = (significant * 2).max(low + 1);
    // A percentage of at most 100 stays one.
    if percent && v <= Rational::int(100) {
        high = high.min(100 * scale / unit).max(low);
    }
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

/// What `accept` says of a drawn item: take it, draw again, or give up with a reason.
pub enum Verdict {
    Take,
    DrawAgain(&'static str),
    Refuse(&'static str),
}

/// A perturbed (question, solution, answer) that `accept` takes, or why none was made:
/// up to `attempts` draws, each kept to the constraints, rendered and offered.
pub fn perturb(
    question: &str,
    solution: &Solution,
    flow: &Flow,
    attempts: u32,
    rng: &mut ChaCha8Rng,
    accept: &dyn Fn(&str, &str, &Rational) -> Verdict,
) -> Result<(String, String, Rational), &'static str> {
    if flow.variables.is_empty() {
        return Err(NO_VARIABLE);
    }
    let firsts: Vec<(&str, bool)> = (0..flow.variables.len())
        .map(|v| {
            let occurrences = || flow.stated.iter().filter(|(_, x)| *x == v);
            let text = occurrences().find(|(s, _)| !s.word).map_or("", |(s, _)| s.written.text.as_str());
            (text, occurrences().any(|(s, _)| s.percent))
        })
        .collect();
    let mut why = NO_DRAW;
    for _ in 0..attempts {
        let values: Vec<Rational> = flow
            .variables
            .iter()
            .zip(&firsts)
            .map(|(&v, &(text, percent))| draw_value(v, text, percent, rng))
            .collect();
        if values == flow.variables {
            continue;
        }
        let Some(steps) = flow.recompute(solution, &values) else { continue };
        let kinds_kept = solution.annotations.iter().zip(&steps).all(|(a, (_, result))| {
            let text = a.result.literals.first().map_or("", |l| l.written.text.as_str());
            keeps_kind(&a.result_value(), text, result)
        });
        if !kinds_kept {
            continue;
        }
        let question = render_question(question, flow, &values);
        let solution_text = render_solution(solution, flow, &values, &steps)?;
        let answer = steps[flow.final_step].1;
        match accept(&question, &solution_text, &answer) {
            Verdict::Take => return Ok((question, solution_text, answer)),
            Verdict::DrawAgain(reason) => why = reason,
            Verdict::Refuse(reason) => return Err(reason),
        }
    }
    Err(why)
}

fn render_question(question: &str, flow: &Flow, values: &[Rational]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for (s, v) in &flow.stated {
        out.push_str(&question[at..s.written.start]);
        if s.word {
            out.push_str(&word_like(&values[*v], &s.written.text));
        } else {
            out.push_str(&render_like(&values[*v], &s.written.text));
        }
        at = s.written.end;
    }
    out.push_str(&question[at..]);
    out
}

/// A result written again for a new value: a number as it was written (a percentage
/// stays one), a fraction as a reduced fraction.
fn render_result(result: &Expr, value: &Rational) -> String {
    if result.is_number() {
        let sign = if value.is_negative() { "-" } else { "" };
        let magnitude = value.abs();
        let literal = &result.literals[0];
        let prefix = &result.text[..literal.written.start];
        let prefix = prefix.trim_start_matches(['-', '+', ' ']);
        let mut rendered = result.render_with(&[magnitude]);
        rendered.replace_range(..literal.written.start, "");
        return format!("{sign}{prefix}{rendered}");
    }
    match value.as_integer() {
        Some(n) => n.to_string(),
        None => format!("{}/{}", value.numerator(), value.denominator()),
    }
}

/// The solution with every number replaced: literals and results inside annotations by
/// the recomputed chain, the final answer, the expression before and the result after
/// each annotation from the annotation itself, and any other number in the prose by
/// the value it stood for, which must be unambiguous.
fn render_solution(
    solution: &Solution,
    flow: &Flow,
    values: &[Rational],
    steps: &[(Vec<Rational>, Rational)],
) -> Result<String, &'static str> {
    let text = &solution.text;
    // Old value -> new value, for numbers of the prose that belong to no annotation.
    let mut mapping: Vec<(Rational, Rational)> = flow.variables.iter().copied().zip(values.iter().copied()).collect();
    for (a, ((_, result), sources)) in solution.annotations.iter().zip(steps.iter().zip(&flow.literals)) {
        mapping.push((a.result_value(), *result));
        for (lit, source) in a.expr.values().into_iter().zip(sources) {
            if *source == Source::Constant {
                mapping.push((lit, lit));
            }
        }
    }
    mapping.extend(flow.left_alone.iter().map(|(v, _)| (*v, *v)));
    mapping.extend(flow.implied.iter().map(|v| (*v, *v)));

    let mut rewrites = Rewrites::default();
    for (a, (literals, result)) in solution.annotations.iter().zip(steps) {
        for (lit, v) in a.expr.literals.iter().zip(literals) {
            let text = lit.render(v);
            rewrites.put(a.expr_start + lit.written.start, a.expr_start + lit.written.end, text)?;
        }
        let (start, end) = a.result_range();
        rewrites.put(start, end, render_result(&a.result, result))?;
        rewrites.claim(a.start, a.end);
        let before = prose::before(text, a);
        let aligned = prose::align(&before, &a.expr.literals).ok_or(prose::MISMATCH)?;
        for (n, (i, factor)) in before.iter().zip(aligned) {
            let new = literals[i].checked_mul(factor).ok_or(PROSE)?;
            rewrites.put(n.written.start, n.written.end, render_like(&new, &n.written.text))?;
        }
        if let Some(n) = prose::after(text, a) {
            let factor = n.factor(a.result_value()).ok_or(prose::RESULT_MISMATCH)?;
            let new = result.checked_mul(factor).ok_or(PROSE)?;
            rewrites.put(n.start, n.end, render_result(&n.written, &new))?;
        }
    }
    let final_value = steps[flow.final_step].1;
    rewrites.put(solution.answer.start, solution.answer.end, render_like(&final_value, &solution.answer.text))?;
    let target = |value: Rational| -> Result<Option<Rational>, &'static str> {
        let targets: Vec<Rational> = mapping.iter().filter(|(old, _)| *old == value).map(|(_, new)| *new).collect();
        match targets.first() {
            None => Ok(None),
            Some(first) if targets.iter().any(|t| t != first) => Err(AMBIGUOUS_PROSE),
            Some(new) => Ok(Some(*new)),
        }
    };
    for n in numbers_in(text) {
        if rewrites.claimed(n.start) {
            continue;
        }
        match target(n.value)? {
            Some(new) => rewrites.put(n.start, n.end, render_like(&new, &n.text))?,
            None => return Err(PROSE),
        }
    }
    for w in number_words(text) {
        if rewrites.claimed(w.start) {
            continue;
        }
        if let Some(new) = target(w.value)?.filter(|new| *new != w.value) {
            rewrites.put(w.start, w.end, word_like(&new, &w.text))?;
        }
    }
    Ok(rewrites.apply(text))
}

/// Byte ranges of a text to write anew, and ranges claimed (annotations) whose numbers the
/// prose pass leaves alone. A range written twice (the result after one annotation is
/// also a number of the next one's expression, `<<3*4=12>>12+5=<<12+5=17>>`) must get
/// the same text both times.
#[derive(Default)]
struct Rewrites {
    ranges: std::collections::BTreeMap<usize, (usize, String)>,
    claimed: Vec<(usize, usize)>,
}

impl Rewrites {
    fn put(&mut self, start: usize, end: usize, text: String) -> Result<(), &'static str> {
        match self.ranges.get(&start) {
            Some((e, t)) if *e == end && *t == text => Ok(()),
            Some(_) => Err(AMBIGUOUS_PROSE),
            None => {
                self.ranges.insert(start, (end, text));
                self.claim(start, end);
                Ok(())
            }
        }
    }

    fn claim(&mut self, start: usize, end: usize) {
        self.claimed.push((start, end));
    }

    fn claimed(&self, at: usize) -> bool {
        self.claimed.iter().any(|&(s, e)| at >= s && at < e)
    }

    fn apply(self, text: &str) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (start, (end, new)) in self.ranges {
            out.push_str(&text[at..start]);
            out.push_str(&new);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }
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
    fn number_words_are_rewritten_alike() {
        assert_eq!(word_like(&Rational::int(4), "Two"), "Four");
        assert_eq!(word_like(&Rational::int(40), "two"), "40");
    }

    #[test]
    fn drawn_values_keep_their_kind() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let v = draw_value(Rational::int(1200), "1,200", false, &mut rng);
            assert!(v.is_integer() && v.as_integer().unwrap() % 100 == 0);
            let d = draw_value(Rational::parse("4.50").unwrap(), "4.50", false, &mut rng);
            assert!(d.checked_mul(Rational::int(100)).unwrap().is_integer() && d > Rational::int(2));
            assert_eq!(draw_value(Rational::int(1), "1", false, &mut rng), Rational::int(1));
            let p = draw_value(Rational::int(80), "80", true, &mut rng);
            assert!(p <= Rational::int(100) && p >= Rational::int(40), "{p}");
        }
    }

    #[test]
    fn results_are_written_as_they_were() {
        let r = |t: &str| Expr::parse(t).unwrap();
        assert_eq!(render_result(&r("$1,200"), &Rational::int(2400)), "$2,400");
        assert_eq!(render_result(&r("80%"), &Rational::new(3, 5).unwrap()), "60%");
        assert_eq!(render_result(&r("-5"), &Rational::int(-7)), "-7");
        assert_eq!(render_result(&r("5"), &Rational::int(-7)), "-7");
        assert_eq!(render_result(&r("3/4"), &Rational::new(2, 3).unwrap()), "2/3");
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
        let (q2, s2, answer) = perturb(q, &s, &flow, 50, &mut rng, &|_, _, _| Verdict::Take).unwrap();
        let n = numbers_in(&q2)[0].value;
        assert_ne!(n, Rational::int(48));
        let half = n.checked_div(Rational::int(2)).unwrap();
        assert!(half.is_integer(), "the halving stays exact");
        assert_eq!(answer, n.checked_add(half).unwrap());
        let parsed = gsm8k::parse(&s2).unwrap();
        assert!(parsed.annotations.iter().all(|a| a.verifies()), "{s2}");
        assert_eq!(parsed.answer.value, answer);
        assert!(s2.starts_with(&format!("Natalia sold {}/2 = <<{}/2={}>>{} clips", n, n, half, half)), "{s2}");
        assert_eq!(prose::check(&parsed), Ok(()));
    }
}
