//! Python values as the generator computes them in Rust, written as Python's `repr`
//! writes them, so that a test's expected value never comes from the reference
//! solution it checks.

#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    Int(i64),
    Bool(bool),
    /// Lowercase letters and spaces only: no quoting questions.
    Str(String),
    List(Vec<Py>),
    /// Insertion-ordered, as Python's dicts.
    Dict(Vec<(String, Py)>),
}

impl Py {
    pub fn repr(&self) -> String {
        match self {
            Py::Int(n) => n.to_string(),
            Py::Bool(b) => if *b { "True" } else { "False" }.into(),
            Py::Str(s) => format!("'{s}'"),
            Py::List(items) => format!("[{}]", items.iter().map(Py::repr).collect::<Vec<_>>().join(", ")),
            Py::Dict(items) => {
                format!(
                    "{{{}}}",
                    items.iter().map(|(k, v)| format!("'{k}': {}", v.repr())).collect::<Vec<_>>().join(", ")
                )
            }
        }
    }

    pub fn ints(values: &[i64]) -> Py {
        Py::List(values.iter().map(|&v| Py::Int(v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_python_writes_them() {
        assert_eq!(Py::ints(&[1, -2]).repr(), "[1, -2]");
        assert_eq!(Py::List(vec![]).repr(), "[]");
        assert_eq!(
            Py::Dict(vec![("a".into(), Py::Int(1)), ("b".into(), Py::Bool(false))]).repr(),
            "{'a': 1, 'b': False}"
        );
        assert_eq!(Py::Dict(vec![]).repr(), "{}");
        assert_eq!(Py::Str("ab c".into()).repr(), "'ab c'");
    }
}
