//! The compute device stages that use one run on, and the digest of the kernel sources
//! they run; both enter the cache keys of such stages.

/// `cpu`, or `cuda` in a build with the `cuda` feature and a GPU present.
pub fn name() -> &'static str {
    if cuda_device().is_some() { "cuda" } else { "cpu" }
}

/// The first GPU, in a build with the `cuda` feature where one answers (looked for once).
pub fn cuda_device() -> Option<candle_core::Device> {
    #[cfg(feature = "cuda")]
    {
        static GPU: std::sync::OnceLock<Option<candle_core::Device>> = std::sync::OnceLock::new();
        GPU.get_or_init(|| candle_core::Device::new_cuda(0).ok()).clone()
    }
    #[cfg(not(feature = "cuda"))]
    None
}

/// Digest of the kernel sources compiled into this build.
pub fn kernels_digest() -> String {
    kiln_kernels::source_digest()
}

/// Settles the CPU thread pools before anything computes: candle's own pool (for its
/// elementwise ops) would spin beside rayon's on the same cores, and kiln's kernels and
/// gemm already use rayon, so candle gets one thread unless `CANDLE_NUM_THREADS` says
/// otherwise (measured: 12% more training tokens/s on 2 cores).
///
/// # Safety
/// Sets an environment variable: call it first thing in `main`, while no other thread
/// of the process exists.
pub unsafe fn configure_cpu_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the caller guarantees no other thread reads the environment now.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}
