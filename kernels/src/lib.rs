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

/// One kernel folder: its CPU twin (the specification) and its CUDA C source.
pub struct KernelSource {
    pub name: &'static str,
    pub cpu: &'static str,
    pub cuda: &'static str,
}

macro_rules! kernel_sources {
    ($($name:literal),* $(,)?) => {
        &[$(KernelSource {
            name: $name,
            cpu: include_str!(concat!($name, "/cpu.rs")),
            cuda: include_str!(concat!($name, "/kernel.cu")),
        }),*]
    };
}

/// Every kernel folder, as compiled into this build.
pub const KERNELS: &[KernelSource] =
    kernel_sources!("adamw", "attention", "cross_entropy", "rms_norm", "rope", "swiglu");

/// Digest of the sources that compute a stage's numbers: part of the cache key of every
/// stage that computes with them. The twins and the helpers they share always; the CUDA
/// sources and their launching code in the `cuda` build.
pub fn source_digest() -> String {
    let mut hasher = blake3::Hasher::new();
    let mut add = |name: &str, text: &str| {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(text.as_bytes());
        hasher.update(&[0]);
    };
    for kernel in KERNELS {
        add(kernel.name, kernel.cpu);
    }
    add("storage.rs", include_str!("storage.rs"));
    #[cfg(feature = "cuda")]
    {
        for kernel in KERNELS {
            add(kernel.name, kernel.cuda);
        }
        add("cuda/common.cuh", ptx::COMMON);
        add("gpu.rs", include_str!("gpu.rs"));
    }
    hasher.finalize().to_hex()[..16].to_string()
}
