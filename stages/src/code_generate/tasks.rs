//! The task templates: string, list, number and dictionary manipulations and
//! compositions of a filter, a map and a reduction over a list. Each draws its
//! parameters, a function name and a parameter name from pools and a docstring from
//! phrasings, writes the reference body in Python and computes the expected outputs of
//! its test inputs in Rust (the two are checked against each other by running).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::value::Py;

/// One generated task before it is written as a problem.
pub struct Task {
    pub family: &'static str,
    pub name: String,
    pub arg: String,
    pub arg_type: &'static str,
    pub returns: &'static str,
    /// The docstring's sentence, with the parameter's name filled in.
    pub doc: String,
    /// The reference body (indented, ending in a newline).
    pub body: String,
    /// Test inputs and the outputs computed in Rust.
    pub cases: Vec<(Py, Py)>,
}

impl Task {
    /// A task of one family from its template's docstring, body line and return type.
    fn new(
        family: &'static str,
        name: String,
        arg: String,
        arg_type: &'static str,
        (doc, body, returns): (String, String, &'static str),
        cases: Vec<(Py, Py)>,
    ) -> Task {
        Task { family, name, arg, arg_type, returns, doc, body: format!("    {body}\n"), cases }
    }
}

pub const FAMILIES: [&str; 5] = ["string", "list", "number", "dict", "composition"];

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const WORDS: [&str; 16] = [
    "apple", "pear", "plum", "kiwi", "lime", "fig", "date", "melon", "grape", "mango", "peach", "berry", "lemon",
    "cherry", "olive", "guava",
];

fn letter(rng: &mut ChaCha8Rng) -> char {
    LETTERS[rng.random_range(0..LETTERS.len())] as char
}

/// A word of 3-9 letters that contains `c` when `with` is given (most of the time).
fn word(rng: &mut ChaCha8Rng, with: Option<char>) -> String {
    let len = rng.random_range(3..10);
    let mut w: Vec<char> = (0..len).map(|_| letter(rng)).collect();
    if let Some(c) = with {
        for _ in 0..rng.random_range(0..3) {
            let at = rng.random_range(0..w.len());
            w[at] = c;
        }
    }
    w.into_iter().collect()
}

fn list(rng: &mut ChaCha8Rng, len: std::ops::Range<usize>) -> Vec<i64> {
    let n = rng.random_range(len);
    (0..n).map(|_| rng.random_range(-9..21)).collect()
}

fn dict(rng: &mut ChaCha8Rng) -> Vec<(String, i64)> {
    let n = rng.random_range(1..6);
    let mut keys: Vec<&str> = Vec::new();
    while keys.len() < n {
        let k = *pick(rng, &WORDS);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter().map(|k| (k.to_string(), rng.random_range(0..21))).collect()
}

fn py_dict(d: &[(String, i64)]) -> Py {
    Py::Dict(d.iter().map(|(k, v)| (k.clone(), Py::Int(*v))).collect())
}

/// Five test inputs of a domain: the generator's, plus an edge case where it has one.
fn cases<I: Clone>(rng: &mut ChaCha8Rng, mut input: impl FnMut(&mut ChaCha8Rng) -> I, edge: Option<I>) -> Vec<I> {
    let mut inputs: Vec<I> = (0..4).map(|_| input(rng)).collect();
    inputs.extend(edge);
    inputs
}

pub fn draw(family: &str, rng: &mut ChaCha8Rng) -> Task {
    match family {
        "string" => string_task(rng),
        "list" => list_task(rng),
        "number" => number_task(rng),
        "dict" => dict_task(rng),
        _ => composition_task(rng),
    }
}

fn string_task(rng: &mut ChaCha8Rng) -> Task {
    let arg = pick(rng, &["s", "text", "word", "string"]).to_string();
    let (c, d) = (letter(rng), letter(rng));
    let k = rng.random_range(2..5);
    let prefix: String = (0..rng.random_range(1..3)).map(|_| letter(rng)).collect();
    let op = rng.random_range(0..8);
    let inputs = cases(rng, |r| word(r, Some(c)), Some(String::new()));
    let (names, doc, body, returns): (&[&str], String, String, &str) = match op {
        0 => (
            &["replace_char", "swap_letter", "substitute"],
            format!("Return {arg} with every '{c}' replaced by '{d}'."),
            format!("return {arg}.replace('{c}', '{d}')"),
            "str",
        ),
        1 => (
            &["reverse", "reversed_text", "backwards"],
            format!("Return {arg} reversed."),
            format!("return {arg}[::-1]"),
            "str",
        ),
        2 => (
            &["shout", "to_upper", "uppercase"],
            format!("Return {arg} in upper case."),
            format!("return {arg}.upper()"),
            "str",
        ),
        3 => (
            &["count_char", "occurrences", "letter_count"],
            format!("Return how many times '{c}' occurs in {arg}."),
            format!("return {arg}.count('{c}')"),
            "int",
        ),
        4 => (
            &["head", "first_letters", "prefix_of"],
            format!("Return the first {k} characters of {arg}."),
            format!("return {arg}[:{k}]"),
            "str",
        ),
        5 => (
            &["repeat", "echo", "times"],
            format!("Return {arg} repeated {k} times."),
            format!("return {arg} * {k}"),
            "str",
        ),
        6 => (
            &["starts_with", "has_prefix", "begins_with"],
            format!("Return True if {arg} starts with '{prefix}'."),
            format!("return {arg}.startswith('{prefix}')"),
            "bool",
        ),
        _ => (
            &["remove_char", "drop_letter", "strip_char"],
            format!("Return {arg} without any '{c}'."),
            format!("return {arg}.replace('{c}', '')"),
            "str",
        ),
    };
    let eval = |s: &str| -> Py {
        match op {
            0 => Py::Str(s.replace(c, &d.to_string())),
            1 => Py::Str(s.chars().rev().collect()),
            2 => Py::Str(s.to_uppercase()),
            3 => Py::Int(s.matches(c).count() as i64),
            4 => Py::Str(s.chars().take(k).collect()),
            5 => Py::Str(s.repeat(k)),
            6 => Py::Bool(s.starts_with(prefix.as_str())),
            _ => Py::Str(s.replace(c, "")),
        }
    };
    let cases = inputs.iter().map(|s| (Py::Str(s.clone()), eval(s))).collect();
    let name = pick(rng, names).to_string();
    Task::new("string", name, arg, "str", (doc, body, returns), cases)
}

fn list_task(rng: &mut ChaCha8Rng) -> Task {
    let arg = pick(rng, &["xs", "nums", "values", "numbers", "items"]).to_string();
    let k = rng.random_range(1..10);
    let op = rng.random_range(0..7);
    let inputs = cases(rng, |r| list(r, 1..8), Some(Vec::new()));
    let (names, doc, body, returns): (&[&str], String, String, &str) = match op {
        0 => (
            &["scale", "multiply_all", "times_each"],
            format!("Return {arg} with every element multiplied by {k}."),
            format!("return [x * {k} for x in {arg}]"),
            "list[int]",
        ),
        1 => (
            &["shift", "add_to_all", "offset"],
            format!("Return {arg} with {k} added to every element."),
            format!("return [x + {k} for x in {arg}]"),
            "list[int]",
        ),
        2 => (
            &["count_value", "how_many", "tally"],
            format!("Return how many elements of {arg} equal {k}."),
            format!("return {arg}.count({k})"),
            "int",
        ),
        3 => (
            &["below", "keep_small", "under"],
            format!("Return the elements of {arg} that are less than {k}, in order."),
            format!("return [x for x in {arg} if x < {k}]"),
            "list[int]",
        ),
        4 => (
            &["largest", "maximum_or", "top"],
            format!("Return the largest element of {arg}, or {k} if {arg} is empty."),
            format!("return max({arg}) if {arg} else {k}"),
            "int",
        ),
        5 => (
            &["evens", "even_only", "keep_even"],
            format!("Return the even elements of {arg}, in order."),
            format!("return [x for x in {arg} if x % 2 == 0]"),
            "list[int]",
        ),
        _ => (
            &["sum_squares", "square_total", "squares_sum"],
            format!("Return the sum of the squares of the elements of {arg}."),
            format!("return sum(x * x for x in {arg})"),
            "int",
        ),
    };
    let eval = |xs: &[i64]| -> Py {
        match op {
            0 => Py::ints(&xs.iter().map(|x| x * k).collect::<Vec<_>>()),
            1 => Py::ints(&xs.iter().map(|x| x + k).collect::<Vec<_>>()),
            2 => Py::Int(xs.iter().filter(|&&x| x == k).count() as i64),
            3 => Py::ints(&xs.iter().copied().filter(|&x| x < k).collect::<Vec<_>>()),
            4 => Py::Int(xs.iter().copied().max().unwrap_or(k)),
            5 => Py::ints(&xs.iter().copied().filter(|x| x % 2 == 0).collect::<Vec<_>>()),
            _ => Py::Int(xs.iter().map(|x| x * x).sum()),
        }
    };
    let cases = inputs.iter().map(|xs| (Py::ints(xs), eval(xs))).collect();
    let name = pick(rng, names).to_string();
    Task::new("list", name, arg, "list[int]", (doc, body, returns), cases)
}

fn number_task(rng: &mut ChaCha8Rng) -> Task {
    let arg = pick(rng, &["n", "x", "num", "value"]).to_string();
    let (a, b) = (rng.random_range(2..10), rng.random_range(1..20));
    let (lo, hi) = (rng.random_range(-10..5), rng.random_range(10..60));
    let op = rng.random_range(0..5);
    let inputs = cases(rng, |r| r.random_range(-50..200i64), Some(0));
    let (names, doc, body, returns): (&[&str], String, String, &str) = match op {
        0 => (
            &["affine", "scale_and_add", "linear"],
            format!("Return {arg} multiplied by {a}, plus {b}."),
            format!("return {arg} * {a} + {b}"),
            "int",
        ),
        1 => (
            &["divisible", "is_multiple", "divides"],
            format!("Return True if {arg} is divisible by {a}."),
            format!("return {arg} % {a} == 0"),
            "bool",
        ),
        2 => (
            &["digit_sum", "sum_digits", "digits_total"],
            format!("Return the sum of the decimal digits of {arg} (ignoring its sign)."),
            format!("return sum(int(c) for c in str(abs({arg})))"),
            "int",
        ),
        3 => (
            &["clamp", "bound", "limit"],
            format!("Return {arg} limited to the range from {lo} to {hi}."),
            format!("return min(max({arg}, {lo}), {hi})"),
            "int",
        ),
        _ => (
            &["floor_div", "whole_parts", "integer_divide"],
            format!("Return {arg} divided by {a}, rounded down."),
            format!("return {arg} // {a}"),
            "int",
        ),
    };
    let eval = |n: i64| -> Py {
        match op {
            0 => Py::Int(n * a + b),
            1 => Py::Bool(n.rem_euclid(a) == 0),
            2 => Py::Int(n.abs().to_string().bytes().map(|d| (d - b'0') as i64).sum()),
            3 => Py::Int(n.max(lo).min(hi)),
            _ => Py::Int(n.div_euclid(a)),
        }
    };
    let cases = inputs.iter().map(|&n| (Py::Int(n), eval(n))).collect();
    let name = pick(rng, names).to_string();
    Task::new("number", name, arg, "int", (doc, body, returns), cases)
}

fn dict_task(rng: &mut ChaCha8Rng) -> Task {
    let arg = pick(rng, &["d", "counts", "table", "stock"]).to_string();
    let key = *pick(rng, &WORDS);
    let k = rng.random_range(0..15);
    let op = rng.random_range(0..4);
    let inputs = cases(rng, dict, Some(Vec::new()));
    let (names, doc, body, returns): (&[&str], String, String, &str) = match op {
        0 => (
            &["lookup", "get_or_default", "fetch"],
            format!("Return the value of '{key}' in {arg}, or {k} if it is missing."),
            format!("return {arg}.get('{key}', {k})"),
            "int",
        ),
        1 => (
            &["keys_above", "big_entries", "over_threshold"],
            format!("Return the keys of {arg} whose values are greater than {k}, sorted."),
            format!("return sorted(key for key, value in {arg}.items() if value > {k})"),
            "list[str]",
        ),
        2 => (
            &["total", "sum_values", "value_sum"],
            format!("Return the sum of the values of {arg}."),
            format!("return sum({arg}.values())"),
            "int",
        ),
        _ => (
            &["bump", "add_to_values", "raise_all"],
            format!("Return a new dictionary with {k} added to every value of {arg}."),
            format!("return {{key: value + {k} for key, value in {arg}.items()}}"),
            "dict[str, int]",
        ),
    };
    let eval = |d: &[(String, i64)]| -> Py {
        match op {
            0 => Py::Int(d.iter().find(|(kk, _)| kk == key).map_or(k, |(_, v)| *v)),
            1 => {
                let mut keys: Vec<&String> = d.iter().filter(|(_, v)| *v > k).map(|(kk, _)| kk).collect();
                keys.sort();
                Py::List(keys.into_iter().map(|s| Py::Str(s.clone())).collect())
            }
            2 => Py::Int(d.iter().map(|(_, v)| v).sum()),
            _ => py_dict(&d.iter().map(|(kk, v)| (kk.clone(), v + k)).collect::<Vec<_>>()),
        }
    };
    let cases = inputs.iter().map(|d| (py_dict(d), eval(d))).collect();
    let name = pick(rng, names).to_string();
    Task::new("dict", name, arg, "dict[str, int]", (doc, body, returns), cases)
}

/// A filter, a map and a reduction over a list, each phrased and coded in parts.
fn composition_task(rng: &mut ChaCha8Rng) -> Task {
    let arg = pick(rng, &["xs", "nums", "values", "numbers"]).to_string();
    let (t, a) = (rng.random_range(-3..10), rng.random_range(2..6));
    let filter = rng.random_range(0..4);
    let map = rng.random_range(0..3);
    let reduce = rng.random_range(0..3);
    let (filter_doc, filter_code) = match filter {
        0 => (format!("greater than {t}"), format!("x > {t}")),
        1 => (format!("less than {t}"), format!("x < {t}")),
        2 => ("that are even".to_string(), "x % 2 == 0".to_string()),
        _ => ("that are odd".to_string(), "x % 2 == 1".to_string()),
    };
    let filter_doc = if filter < 2 { format!("that are {filter_doc}") } else { filter_doc };
    let (map_doc, map_code) = match map {
        0 => (format!("multiplied by {a}"), format!("x * {a}")),
        1 => (format!("plus {a}"), format!("x + {a}")),
        _ => ("squared".to_string(), "x * x".to_string()),
    };
    let (doc, body, returns, name) = match reduce {
        0 => (
            format!("Return the elements of {arg} {filter_doc}, each {map_doc}, in order."),
            format!("return [{map_code} for x in {arg} if {filter_code}]"),
            "list[int]",
            *pick(rng, &["select_and_map", "filter_map", "pick_transform"]),
        ),
        1 => (
            format!("Return the sum of the elements of {arg} {filter_doc}, each {map_doc}."),
            format!("return sum({map_code} for x in {arg} if {filter_code})"),
            "int",
            *pick(rng, &["filtered_sum", "sum_selected", "total_of"]),
        ),
        _ => (
            format!("Return the largest of the elements of {arg} {filter_doc}, each {map_doc}, or 0 if there is none."),
            format!("return max(({map_code} for x in {arg} if {filter_code}), default=0)"),
            "int",
            *pick(rng, &["max_selected", "largest_of", "best_of"]),
        ),
    };
    let keep = |x: i64| match filter {
        0 => x > t,
        1 => x < t,
        2 => x % 2 == 0,
        _ => x.rem_euclid(2) == 1,
    };
    let apply = |x: i64| match map {
        0 => x * a,
        1 => x + a,
        _ => x * x,
    };
    let inputs = cases(rng, |r| list(r, 1..8), Some(Vec::new()));
    let eval = |xs: &[i64]| -> Py {
        let mapped: Vec<i64> = xs.iter().copied().filter(|&x| keep(x)).map(apply).collect();
        match reduce {
            0 => Py::ints(&mapped),
            1 => Py::Int(mapped.iter().sum()),
            _ => Py::Int(mapped.iter().copied().max().unwrap_or(0)),
        }
    };
    let cases = inputs.iter().map(|xs| (Py::ints(xs), eval(xs))).collect();
    Task::new("composition", name.to_string(), arg, "list[int]", (doc, body, returns), cases)
}
