//! Arithmetic expressions of calculator annotations, evaluated exactly, in every form
//! GSM8K's annotators wrote them: `48/2`, `(10+5)*2`, `100*.2`, unary signs (`+30+46`,
//! `3*+6`, `3*-2`), floor division `10//3`, powers `2**3` and `5^2`, percentages `20%`
//! (a twentieth of a hundred), currency signs `$4*3`, thousands separators `1,200`,
//! `x`, `×` and `÷`, brackets, and a number glued to a parenthesis `2(3+4)`.
//!
//! An expression is kept as its text and its number literals, so it can be evaluated
//! again, and written again, with other values in the literals' places.

use super::number::{Rational, Written};

/// A number literal of an expression: as written, and whether a `%` follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    /// The digits (without `$` or `%`), their place in the expression's text and value.
    pub written: Written,
    pub percent: bool,
}

impl Literal {
    /// The value the literal contributes: `20%` is 1/5.
    pub fn value(&self) -> Rational {
        if self.percent {
            self.written.value.checked_div(Rational::int(100)).expect("nonzero")
        } else {
            self.written.value
        }
    }

    /// The literal written for another contributed value (`%` stays outside the digits).
    pub fn render(&self, value: &Rational) -> String {
        let written = if self.percent { value.checked_mul(Rational::int(100)).unwrap_or(*value) } else { *value };
        super::number::render_like(&written, &self.written.text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub literals: Vec<Literal>,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Num(usize),
    Op(Op),
    Open,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Pow,
}

/// The number at the start of `rest`: `1,200.50`, `12`, `.5` (a comma groups exactly
/// three digits; a point must be followed by a digit).
fn number_at(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = digits(0);
    if end > 0 && end <= 3 {
        // Thousands groups, only when every group has three digits.
        let mut at = end;
        while bytes.get(at) == Some(&b',') && digits(at + 1) == 3 && !bytes.get(at + 4).is_some_and(u8::is_ascii_digit)
        {
            at += 4;
        }
        end = at;
    }
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1 + digits(end + 1);
    }
    (end > 0).then_some(end)
}

fn tokenize(text: &str) -> Option<(Vec<Token>, Vec<Literal>)> {
    let mut tokens = Vec::new();
    let mut literals = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let c = rest.chars().next().expect("not at the end");
        if let Some(len) = number_at(rest) {
            let digits = &rest[..len];
            let percent = text[at + len..].trim_start().starts_with('%');
            literals.push(Literal {
                written: Written {
                    start: at,
                    end: at + len,
                    text: digits.to_string(),
                    value: Rational::parse(digits)?,
                },
                percent,
            });
            tokens.push(Token::Num(literals.len() - 1));
            at += len;
            if percent {
                at = text.len() - text[at..].trim_start().len() + 1;
            }
            continue;
        }
        let (token, len) = match c {
            ' ' | '\t' | '$' => (None, 1),
            '+' => (Some(Token::Op(Op::Add)), 1),
            '-' | '−' | '–' => (Some(Token::Op(Op::Sub)), c.len_utf8()),
            '*' if rest.starts_with("**") => (Some(Token::Op(Op::Pow)), 2),
            '*' | '×' | '·' => (Some(Token::Op(Op::Mul)), c.len_utf8()),
            // `x` multiplies only as a word of its own (`3 x 4`, `3x4`), never inside one.
            'x' | 'X' if !text[..at].ends_with(char::is_alphabetic) && !rest[1..].starts_with(char::is_alphabetic) => {
                (Some(Token::Op(Op::Mul)), 1)
            }
            '/' if rest.starts_with("//") => (Some(Token::Op(Op::FloorDiv)), 2),
            '/' | '÷' => (Some(Token::Op(Op::Div)), c.len_utf8()),
            '^' => (Some(Token::Op(Op::Pow)), 1),
            '(' | '[' | '{' => (Some(Token::Open), 1),
            ')' | ']' | '}' => (Some(Token::Close), 1),
            _ => return None,
        };
        tokens.extend(token);
        at += len;
    }
    Some((tokens, literals))
}

impl Expr {
    /// Parses an expression; `None` if it is not one kiln can evaluate.
    pub fn parse(text: &str) -> Option<Expr> {
        let (tokens, literals) = tokenize(text)?;
        let expr = Expr { text: text.to_string(), literals, tokens };
        expr.eval()?;
        Some(expr)
    }

    /// The values the literals contribute, in order (`20%` gives 1/5).
    pub fn values(&self) -> Vec<Rational> {
        self.literals.iter().map(Literal::value).collect()
    }

    pub fn eval(&self) -> Option<Rational> {
        self.eval_with(&self.values())
    }

    /// The value with `values` contributed in the literals' places (same order).
    pub fn eval_with(&self, values: &[Rational]) -> Option<Rational> {
        self.eval_as(values)
    }

    /// The value in any arithmetic (exact numbers, or linear forms in an unknown).
    pub fn eval_as<T: Arith>(&self, values: &[T]) -> Option<T> {
        let mut parser = Parser { tokens: &self.tokens, at: 0, values };
        let v = parser.sum()?;
        (parser.at == self.tokens.len()).then_some(v)
    }

    /// The text with `values` contributed in the literals' places (a percentage is
    /// written as a percentage again).
    pub fn render_with(&self, values: &[Rational]) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (lit, v) in self.literals.iter().zip(values) {
            out.push_str(&self.text[at..lit.written.start]);
            out.push_str(&lit.render(v));
            at = lit.written.end;
        }
        out.push_str(&self.text[at..]);
        out
    }

    /// Whether the expression is one number, perhaps signed (`12`, `-3`, `$5`, `80%`).
    pub fn is_number(&self) -> bool {
        matches!(self.tokens.as_slice(), [Token::Num(_)] | [Token::Op(Op::Sub | Op::Add), Token::Num(_)])
    }
}

/// The operations an expression needs; `None` where a result does not exist (or is
/// not of the arithmetic: a power of an unknown is not linear).
pub trait Arith: Copy {
    fn zero() -> Self;
    fn add(self, other: Self) -> Option<Self>;
    fn sub(self, other: Self) -> Option<Self>;
    fn mul(self, other: Self) -> Option<Self>;
    fn div(self, other: Self) -> Option<Self>;
    /// Division rounded down, as Python's `//`.
    fn floor_div(self, other: Self) -> Option<Self>;
    fn pow(self, exponent: Self) -> Option<Self>;
}

impl Arith for Rational {
    fn zero() -> Self {
        Rational::int(0)
    }
    fn add(self, other: Self) -> Option<Self> {
        self.checked_add(other)
    }
    fn sub(self, other: Self) -> Option<Self> {
        self.checked_sub(other)
    }
    fn mul(self, other: Self) -> Option<Self> {
        self.checked_mul(other)
    }
    fn div(self, other: Self) -> Option<Self> {
        self.checked_div(other)
    }
    fn floor_div(self, other: Self) -> Option<Self> {
        Some(Rational::int(self.checked_div(other)?.floor()))
    }
    fn pow(self, exponent: Self) -> Option<Self> {
        self.checked_pow(exponent.as_integer()?)
    }
}

struct Parser<'a, T> {
    tokens: &'a [Token],
    at: usize,
    values: &'a [T],
}

impl<T: Arith> Parser<'_, T> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.at).copied()
    }

    fn sum(&mut self) -> Option<T> {
        let mut v = self.product()?;
        while let Some(Token::Op(op @ (Op::Add | Op::Sub))) = self.peek() {
            self.at += 1;
            let r = self.product()?;
            v = if op == Op::Add { v.add(r)? } else { v.sub(r)? };
        }
        Some(v)
    }

    fn product(&mut self) -> Option<T> {
        let mut v = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Op(op @ (Op::Mul | Op::Div | Op::FloorDiv))) => {
                    self.at += 1;
                    op
                }
                // `2(3+4)`: a parenthesis right after an operand multiplies.
                Some(Token::Open) => Op::Mul,
                _ => return Some(v),
            };
            let r = self.unary()?;
            v = match op {
                Op::Mul => v.mul(r)?,
                Op::Div => v.div(r)?,
                _ => v.floor_div(r)?,
            };
        }
    }

    fn unary(&mut self) -> Option<T> {
        match self.peek() {
            Some(Token::Op(Op::Sub)) => {
                self.at += 1;
                T::zero().sub(self.unary()?)
            }
            Some(Token::Op(Op::Add)) => {
                self.at += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    /// `a ** b` and `a ^ b`, right-associative and binding tighter than a sign on its
    /// left (`-2**2` is -4, as in Python).
    fn power(&mut self) -> Option<T> {
        let base = self.atom()?;
        if self.peek() == Some(Token::Op(Op::Pow)) {
            self.at += 1;
            let exponent = self.unary()?;
            return base.pow(exponent);
        }
        Some(base)
    }

    fn atom(&mut self) -> Option<T> {
        match self.peek()? {
            Token::Num(i) => {
                self.at += 1;
                self.values.get(i).copied()
            }
            Token::Open => {
                self.at += 1;
                let v = self.sum()?;
                (self.peek() == Some(Token::Close)).then(|| self.at += 1)?;
                Some(v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Option<String> {
        Expr::parse(text).and_then(|e| e.eval()).map(|v| v.to_decimal())
    }

    #[test]
    fn expressions_evaluate_with_precedence_and_parentheses() {
        assert_eq!(eval("48/2").as_deref(), Some("24"));
        assert_eq!(eval("(10+5)*2").as_deref(), Some("30"));
        assert_eq!(eval("10+5*2").as_deref(), Some("20"));
        assert_eq!(eval("100*.2").as_deref(), Some("20"));
        assert_eq!(eval("1,200-3*-2").as_deref(), Some("1206"));
        assert_eq!(eval("7/2").as_deref(), Some("3.5"));
        assert_eq!(eval("3 x 4").as_deref(), Some("12"));
        assert_eq!(eval("(2+3"), None);
        assert_eq!(eval("2+a"), None);
        assert_eq!(eval("5/0"), None);
        assert_eq!(eval("2 + box"), None, "x inside a word is not a product");
    }

    /// Every form GSM8K's annotators wrote (examples of each form, written for kiln).
    #[test]
    fn every_annotation_form_of_gsm8k_evaluates() {
        let cases = [
            ("+30+46+38+11+18", "143"),
            ("+10", "10"),
            ("3*+6", "18"),
            ("-5+8", "3"),
            ("10//3", "3"),
            ("-7//2", "-4"),
            ("25//2*2", "24"),
            ("$4*3", "12"),
            ("3*$4.50", "13.5"),
            ("$1,200/4", "300"),
            ("20%*50", "10"),
            ("50*20%", "10"),
            ("100% - 20%", "0.8"),
            ("40 * 25 %", "10"),
            ("2**3", "8"),
            ("5^2", "25"),
            ("-2**2", "-4"),
            ("2**-1", "0.5"),
            ("3 × 4 ÷ 2", "6"),
            ("12 X 2", "24"),
            ("3x4", "12"),
            ("2(3+4)", "14"),
            ("[2+3]*{4-1}", "15"),
            ("1,000,000/1,000", "1000"),
            ("0.5*.25", "0.125"),
            ("5 − 2", "3"),
            ("3/4", "0.75"),
        ];
        for (text, value) in cases {
            assert_eq!(eval(text).as_deref(), Some(value), "{text}");
        }
    }

    #[test]
    fn literals_can_be_replaced() {
        let e = Expr::parse("(1,000+5)*2").unwrap();
        let values = [Rational::int(2000), Rational::int(7), Rational::int(3)];
        assert_eq!(e.eval_with(&values), Some(Rational::int(6021)));
        assert_eq!(e.render_with(&values), "(2,000+7)*3");
        let e = Expr::parse("$80*25%").unwrap();
        assert_eq!(e.values(), [Rational::int(80), Rational::new(1, 4).unwrap()]);
        assert_eq!(e.render_with(&[Rational::int(60), Rational::new(1, 5).unwrap()]), "$60*20%");
    }

    #[test]
    fn numbers_and_thousands_groups_are_read_whole() {
        assert_eq!(number_at("1,200.50+3"), Some(8));
        assert_eq!(number_at("12,34"), Some(2), "a comma groups three digits");
        assert_eq!(number_at("1,2345"), Some(1));
        assert_eq!(number_at(".5"), Some(2));
        assert_eq!(number_at("5."), Some(1));
        assert!(Expr::parse("-3").unwrap().is_number() && !Expr::parse("3/4").unwrap().is_number());
    }
}
