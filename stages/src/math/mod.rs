//! Arithmetic shared by the math stages: exact numbers, annotation expressions, GSM8K's
//! solution format, MATH's LaTeX answers, numeric answers, and the benchmarks' formats.

pub mod answer;
pub mod expr;
pub mod format;
pub mod gsm8k;
pub mod latex;
pub mod number;
