//! Templated word problems: one or two operations hidden in a short story, solved in
//! GSM8K's manner, one sentence per computation.

use super::{Draw, Op, Step};

const NAMES: &[(&str, &str)] = &[
    ("Tom", "He"),
    ("Anna", "She"),
    ("Lily", "She"),
    ("Omar", "He"),
    ("Kenji", "He"),
    ("Sofia", "She"),
    ("Ravi", "He"),
    ("Maya", "She"),
    ("Leo", "He"),
    ("Nadia", "She"),
];

const ITEMS: &[&str] = &["apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "cards", "shells"];

const CONTAINERS: &[(&str, &str)] =
    &[("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars"), ("crate", "crates")];

/// Fills `{n}` (name), `{p}` (pronoun), `{i}` (items), `{c}`/`{cs}` (container, plural)
/// and the numbers `{a}`, `{b}`, `{x}`.
struct Story {
    name: &'static str,
    pronoun: &'static str,
    items: &'static str,
    container: (&'static str, &'static str),
}

impl Story {
    fn fill(&self, text: &str, numbers: &[(&str, u64)]) -> String {
        let mut out = text
            .replace("{n}", self.name)
            .replace("{p}", self.pronoun)
            .replace("{i}", self.items)
            .replace("{cs}", self.container.1)
            .replace("{c}", self.container.0);
        for (key, value) in numbers {
            out = out.replace(key, &value.to_string());
        }
        out
    }
}

/// A word problem: its question and its chain of steps.
pub fn problem(draw: &mut Draw) -> (String, Vec<Step>) {
    let &(name, pronoun) = draw.pick(NAMES);
    let items = *draw.pick(ITEMS);
    let container = *draw.pick(CONTAINERS);
    let story = Story { name, pronoun, items, container };
    let kind = draw.rng_index(6);
    match kind {
        0 => one_step(
            draw,
            &story,
            Op::Add,
            &[
                ("{n} has {a} {i}. {p} buys {b} more {i}. How many {i} does {n} have now?", "{n} has {} {i} now."),
                (
                    "{n} collected {a} {i} on Monday and {b} {i} on Tuesday. How many {i} did {n} collect in all?",
                    "{n} collected {} {i} in all.",
                ),
            ],
        ),
        1 => one_step(
            draw,
            &story,
            Op::Sub,
            &[
                (
                    "{n} had {a} {i} and gave {b} of them to a friend. How many {i} does {n} have left?",
                    "{n} has {} {i} left.",
                ),
                (
                    "A shop had {a} {i}. It sold {b} of them. How many {i} are left in the shop?",
                    "The shop has {} {i} left.",
                ),
            ],
        ),
        2 => one_step(
            draw,
            &story,
            Op::Mul,
            &[
                ("{n} buys {a} {cs} of {i}. Each {c} holds {b} {i}. How many {i} does {n} buy?", "{n} buys {} {i}."),
                (
                    "There are {a} {cs} with {b} {i} in each. How many {i} are there in total?",
                    "There are {} {i} in total.",
                ),
            ],
        ),
        3 => one_step(
            draw,
            &story,
            Op::Div,
            &[
                (
                    "{n} has {a} {i} and puts them equally into {b} {cs}. How many {i} are in each {c}?",
                    "Each {c} has {} {i}.",
                ),
                (
                    "{n} shares {a} {i} equally among {b} friends. How many {i} does each friend get?",
                    "Each friend gets {} {i}.",
                ),
            ],
        ),
        4 => {
            // buys some, then gives some away: a + b - x
            let (a, b) = draw.operands(Op::Add);
            let first = Step::new(a, Op::Add, b);
            let x = draw.at_most(first.result);
            let second = Step::new(first.result, Op::Sub, x);
            let question = story.fill(
                "{n} has {a} {i}. {p} buys {b} more and then gives {x} away. How many {i} does {n} have now?",
                &[("{a}", a), ("{b}", b), ("{x}", x)],
            );
            let first = first.stated(story.fill("After buying, {n} has {} {i}.", &[]));
            let second = second.stated(story.fill("After giving some away, {n} has {} {i}.", &[]));
            (question, vec![first, second])
        }
        _ => {
            // several full containers and some loose items: a * b + x
            let a = draw.operand(2);
            let b = draw.small_factor();
            let first = Step::new(a, Op::Mul, b);
            let x = draw.operand(0);
            let second = Step::new(first.result, Op::Add, x);
            let question = story.fill(
                "{n} has {a} {cs} with {b} {i} in each and {x} loose {i}. How many {i} does {n} have?",
                &[("{a}", a), ("{b}", b), ("{x}", x)],
            );
            let first = first.stated(story.fill("The {cs} hold {} {i}.", &[]));
            let second = second.stated(story.fill("{n} has {} {i}.", &[]));
            (question, vec![first, second])
        }
    }
}

fn one_step(draw: &mut Draw, story: &Story, op: Op, templates: &[(&str, &str)]) -> (String, Vec<Step>) {
    let (a, b) = draw.operands(op);
    let &(question, sentence) = draw.pick(templates);
    let question = story.fill(question, &[("{a}", a), ("{b}", b)]);
    let step = Step::new(a, op, b).stated(story.fill(sentence, &[]));
    (question, vec![step])
}
