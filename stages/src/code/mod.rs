//! The code half of the recipe: running model-written programs in a sandbox, the
//! toolchains of each language, and the benchmarks' program layouts (HumanEval, MBPP,
//! HumanEvalPack).

pub mod execute;
pub mod language;
pub mod problem;
pub mod sandbox;
