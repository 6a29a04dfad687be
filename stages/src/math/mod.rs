//! Arithmetic shared by the math stages: exact numbers, annotation expressions, GSM8K's
//! solution format.

pub mod expr;
pub mod gsm8k;
pub mod number;
