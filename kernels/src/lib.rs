//! kiln-kernels: one folder per kernel, each with its CPU twin in plain loops (the
//! specification, `cpu.rs`) and a candle op with forward and backward (`mod.rs`).
//! Each folder also holds the kernel's CUDA C source (`kernel.cu`), which NVRTC compiles
//! to PTX (`ptx`).
//!
//! candle 0.11's `softmax_last_dim`, `rms_norm` and fused layer norm have no backward,
//! and its `cross_entropy` no ignore index; the ops here cover them, each tested against
//! a composition of differentiable candle primitives, values and gradients.

pub mod adamw;
pub mod attention;
pub mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod ptx;
pub mod rms_norm;
pub mod rope;
pub mod storage;
pub mod swiglu;

#[cfg(test)]
pub(crate) mod testing;

/// The sources of every kernel, as compiled into this build.
pub const SOURCES: &[(&str, &str)] = &[
    ("adamw/cpu.rs", include_str!("adamw/cpu.rs")),
    ("attention/cpu.rs", include_str!("attention/cpu.rs")),
    ("cross_entropy/cpu.rs", include_str!("cross_entropy/cpu.rs")),
    ("rms_norm/cpu.rs", include_str!("rms_norm/cpu.rs")),
    ("rope/cpu.rs", include_str!("rope/cpu.rs")),
    ("swiglu/cpu.rs", include_str!("swiglu/cpu.rs")),
];

/// Digest of the kernel sources: part of the cache key of every stage that computes
/// with them.
pub fn source_digest() -> String {
    let mut hasher = blake3::Hasher::new();
    for (name, text) in SOURCES {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(text.as_bytes());
        hasher.update(&[0]);
    }
    hasher.finalize().to_hex()[..16].to_string()
}
