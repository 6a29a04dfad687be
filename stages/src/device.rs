//! The compute device stages that use one run on, and the digest of the kernel sources
//! they run; both enter the cache keys of such stages.

/// `cpu`, or `cuda` in a build with the `cuda` feature and a GPU present.
pub fn name() -> &'static str {
    "cpu"
}

/// Digest of the kernel sources compiled into this build.
pub fn kernels_digest() -> String {
    kiln_kernels::source_digest()
}
