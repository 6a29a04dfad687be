//! Arithmetic expressions of calculator annotations (`48/2`, `(10+5)*2`, `100*.2`),
//! evaluated exactly. An expression is kept as its text and its number literals, so it
//! can be evaluated again with other values in the literals' places.

use super::number::{Rational, Written, numbers_in};

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub literals: Vec<Written>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Num(usize),
    Op(char),
    Open,
    Close,
}

impl Expr {
    /// Parses an expression; `None` if it is not one kiln can evaluate.
    pub fn parse(text: &str) -> Option<Expr> {
        let literals = numbers_in(text);
        let expr = Expr { text: text.to_string(), literals };
        expr.tokens()?;
        expr.eval_with(&expr.values())?;
        Some(expr)
    }

    pub fn values(&self) -> Vec<Rational> {
        self.literals.iter().map(|l| l.value).collect()
    }

    pub fn eval(&self) -> Option<Rational> {
        self.eval_with(&self.values())
    }

    fn tokens(&self) -> Option<Vec<Token>> {
        let mut tokens = Vec::new();
        let mut at = 0;
        let mut next_literal = 0;
        let bytes = self.text.as_bytes();
        while at < bytes.len() {
            if let Some(lit) = self.literals.get(next_literal).filter(|l| l.start == at) {
                tokens.push(Token::Num(next_literal));
                next_literal += 1;
                at = lit.end;
                continue;
            }
            match bytes[at] as char {
                ' ' => {}
                c @ ('+' | '-' | '*' | '/') => tokens.push(Token::Op(c)),
                'x' | '×' => tokens.push(Token::Op('*')),
                '(' => tokens.push(Token::Open),
                ')' => tokens.push(Token::Close),
                _ => return None,
            }
            at += 1;
        }
        (next_literal == self.literals.len()).then_some(tokens)
    }

    /// The value with `values` in the literals' places (same order).
    pub fn eval_with(&self, values: &[Rational]) -> Option<Rational> {
        self.eval_as(values)
    }

    /// The value in any arithmetic (exact numbers, or linear forms in an unknown).
    pub fn eval_as<T: Arith>(&self, values: &[T]) -> Option<T> {
        let tokens = self.tokens()?;
        let mut parser = Parser { tokens: &tokens, at: 0, values };
        let v = parser.sum()?;
        (parser.at == tokens.len()).then_some(v)
    }

    /// The text with `values` written in the literals' places.
    pub fn render_with(&self, values: &[Rational]) -> String {
        let mut out = String::new();
        let mut at = 0;
        for (lit, v) in self.literals.iter().zip(values) {
            out.push_str(&self.text[at..lit.start]);
            out.push_str(&super::number::render_like(v, &lit.text));
            at = lit.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// The operations an expression needs; `None` where a result does not exist.
pub trait Arith: Copy {
    fn zero() -> Self;
    fn add(self, other: Self) -> Option<Self>;
    fn sub(self, other: Self) -> Option<Self>;
    fn mul(self, other: Self) -> Option<Self>;
    fn div(self, other: Self) -> Option<Self>;
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
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek() {
            self.at += 1;
            let r = self.product()?;
            v = if op == '+' { v.add(r)? } else { v.sub(r)? };
        }
        Some(v)
    }

    fn product(&mut self) -> Option<T> {
        let mut v = self.unary()?;
        while let Some(Token::Op(op @ ('*' | '/'))) = self.peek() {
            self.at += 1;
            let r = self.unary()?;
            v = if op == '*' { v.mul(r)? } else { v.div(r)? };
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<T> {
        if self.peek() == Some(Token::Op('-')) {
            self.at += 1;
            return T::zero().sub(self.unary()?);
        }
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
    }

    #[test]
    fn literals_can_be_replaced() {
        let e = Expr::parse("(1,000+5)*2").unwrap();
        let values = [Rational::int(2000), Rational::int(7), Rational::int(3)];
        assert_eq!(e.eval_with(&values), Some(Rational::int(6021)));
        assert_eq!(e.render_with(&values), "(2,000+7)*3");
    }
}
