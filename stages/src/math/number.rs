//! Exact numbers for checking arithmetic: rationals over i128, and the numbers written in
//! text (`1,234`, `$5`, `.75`, `12.50`), found with their positions so they can be
//! rewritten in place.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A reduced fraction with a positive denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl Rational {
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den);
        let sign = if den < 0 { -1 } else { 1 };
        Some(Rational { num: sign * num / g, den: sign * den / g })
    }

    pub fn numerator(&self) -> i128 {
        self.num
    }

    pub fn denominator(&self) -> i128 {
        self.den
    }

    pub fn int(n: i128) -> Self {
        Rational { num: n, den: 1 }
    }

    pub fn is_integer(&self) -> bool {
        self.den == 1
    }

    pub fn is_negative(&self) -> bool {
        self.num < 0
    }

    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// The integer value, if it is one.
    pub fn as_integer(&self) -> Option<i128> {
        self.is_integer().then_some(self.num)
    }

    pub fn to_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn checked_add(self, o: Self) -> Option<Self> {
        Rational::new(
            self.num.checked_mul(o.den)?.checked_add(o.num.checked_mul(self.den)?)?,
            self.den.checked_mul(o.den)?,
        )
    }

    pub fn checked_sub(self, o: Self) -> Option<Self> {
        self.checked_add(Rational { num: -o.num, den: o.den })
    }

    pub fn checked_mul(self, o: Self) -> Option<Self> {
        Rational::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    pub fn checked_div(self, o: Self) -> Option<Self> {
        if o.num == 0 {
            return None;
        }
        Rational::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }

    /// The value without its sign.
    pub fn abs(self) -> Self {
        Rational { num: self.num.abs(), den: self.den }
    }

    /// The largest integer not above the value.
    pub fn floor(&self) -> i128 {
        self.num.div_euclid(self.den)
    }

    /// The value to an integer power (up to 128 in magnitude; a negative power of zero
    /// does not exist).
    pub fn checked_pow(self, exponent: i128) -> Option<Self> {
        if exponent.unsigned_abs() > 128 {
            return None;
        }
        let e = exponent.unsigned_abs() as u32;
        let r = Rational::new(self.num.checked_pow(e)?, self.den.checked_pow(e)?)?;
        if exponent < 0 { Rational::int(1).checked_div(r) } else { Some(r) }
    }

    /// Parses `1234`, `1,234`, `12.5`, `.75`, `-3` (no `$`, `%`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().replace(',', "");
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, text),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits.as_str(), ""),
        };
        if whole.is_empty() && frac.is_empty()
            || !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || whole.len() + frac.len() > 30
        {
            return None;
        }
        let scale = 10i128.checked_pow(frac.len() as u32)?;
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let frac_value: i128 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
        let r = Rational::new(whole.checked_mul(scale)?.checked_add(frac_value)?, scale)?;
        Some(if negative { Rational { num: -r.num, den: r.den } } else { r })
    }

    /// Whether `written` (a decimal as text) is this value, or this value rounded to as
    /// many decimals as `written` has (GSM8K writes `10/3=3.33`).
    pub fn matches(&self, written: &str) -> bool {
        let Some(w) = Rational::parse(written) else { return false };
        if w == *self {
            return true;
        }
        let decimals = written.split_once('.').map_or(0, |(_, f)| f.len());
        if decimals == 0 || self.is_integer() {
            return false;
        }
        let Some(scale) = 10i128.checked_pow(decimals as u32) else { return false };
        let scaled = self.to_f64() * scale as f64;
        (scaled.round() - w.to_f64() * scale as f64).abs() < 0.5
    }

    /// The value as a decimal, exactly when it terminates within 6 places, else rounded to 2.
    pub fn to_decimal(&self) -> String {
        if let Some(n) = self.as_integer() {
            return n.to_string();
        }
        for places in 1..=6u32 {
            let scale = 10i128.pow(places);
            let Some(scaled) = self.num.checked_mul(scale) else { break };
            if scaled % self.den == 0 {
                let v = scaled / self.den;
                let sign = if v < 0 { "-" } else { "" };
                let v = v.abs();
                let frac = format!("{:0width$}", v % scale, width = places as usize);
                return format!("{sign}{}.{}", v / scale, frac.trim_end_matches('0'));
            }
        }
        format!("{:.2}", self.to_f64())
    }
}

impl std::ops::Neg for Rational {
    type Output = Rational;

    /// The value with the other sign.
    fn neg(self) -> Self {
        Rational { num: -self.num, den: self.den }
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rational {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.num.checked_mul(other.den), other.num.checked_mul(self.den)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Beyond i128: the floats are exact enough to order values this far apart.
            _ => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

/// A number written in text: its byte range and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub value: Rational,
}

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+").expect("valid"));

/// Every number written in `text`, in order (a trailing sentence period is not a
/// decimal point: `5.` is 5).
pub fn numbers_in(text: &str) -> Vec<Written> {
    NUMBER
        .find_iter(text)
        .filter_map(|m| {
            // Digits glued to letters (`3rd`, `x2`) are not quantities.
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if before.is_some_and(|c| c.is_alphabetic()) || after.is_some_and(|c| c.is_alphabetic()) {
                return None;
            }
            Some(Written {
                start: m.start(),
                end: m.end(),
                text: m.as_str().to_string(),
                value: Rational::parse(m.as_str())?,
            })
        })
        .collect()
}

/// Writes `value` in the style of `original`: thousands separators if it had them, and
/// as many decimal places (`16.50` gives `12.20`, not `12.2`).
pub fn render_like(value: &Rational, original: &str) -> String {
    let mut plain = value.to_decimal();
    let places = original.split_once('.').map_or(0, |(_, f)| f.len());
    let have = plain.split_once('.').map_or(0, |(_, f)| f.len());
    if have < places && Rational::parse(&plain) == Some(*value) {
        if have == 0 {
            plain.push('.');
        }
        plain.push_str(&"0".repeat(places - have));
    }
    if !original.contains(',') {
        return plain;
    }
    let (whole, frac) = match plain.split_once('.') {
        Some((w, f)) => (w.to_string(), format!(".{f}")),
        None => (plain.clone(), String::new()),
    };
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(d) => ("-", d.to_string()),
        None => ("", whole),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_and_arithmetic_are_exact() {
        let r = |s| Rational::parse(s).unwrap();
        assert_eq!(r("1,234"), Rational::int(1234));
        assert_eq!(r(".75"), Rational::new(3, 4).unwrap());
        assert_eq!(r("12.50").to_decimal(), "12.5");
        assert_eq!(r("0.1").checked_add(r("0.2")).unwrap(), r("0.3"));
        assert_eq!(r("10").checked_div(r("4")).unwrap().to_decimal(), "2.5");
        assert_eq!(r("10").checked_div(r("3")).unwrap().to_decimal(), "3.33");
        assert!(r("10").checked_div(r("0")).is_none());
        assert!(Rational::parse("1.2.3").is_none() && Rational::parse("").is_none());
        let huge = Rational::new(i128::MAX / 3, 7).unwrap();
        assert!(!huge.to_decimal().is_empty() && huge > Rational::int(1), "no overflow");
        assert_eq!(-r("-2.5"), r("2.5"));
        assert_eq!(r("-2.5").abs(), r("2.5"));
    }

    #[test]
    fn rounded_results_match_as_gsm8k_writes_them() {
        let third = Rational::parse("10").unwrap().checked_div(Rational::int(3)).unwrap();
        assert!(third.matches("3.33") && third.matches("3.3") && !third.matches("3.34") && !third.matches("3"));
        assert!(Rational::int(4).matches("4.00") && !Rational::int(4).matches("5"));
    }

    #[test]
    fn numbers_are_found_with_their_places() {
        let text = "She had $1,200.50 and 3 friends, the 2nd day 4.5 kg. Total: 7.";
        let found: Vec<String> = numbers_in(text).iter().map(|n| n.text.clone()).collect();
        assert_eq!(found, ["1,200.50", "3", "4.5", "7"]);
        assert_eq!(render_like(&Rational::int(1234567), "1,000"), "1,234,567");
        assert_eq!(render_like(&Rational::parse("1234.5").unwrap(), "1,000.50"), "1,234.50");
        assert_eq!(render_like(&Rational::parse("12.2").unwrap(), "16.50"), "12.20");
        assert_eq!(render_like(&Rational::int(2), "4.00"), "2.00");
        assert_eq!(render_like(&Rational::parse("2.25").unwrap(), "1.5"), "2.25");
    }
}
