//! Launching kiln's CUDA kernels from the candle ops (the `cuda` feature). Each kernel
//! folder's source is compiled to PTX by NVRTC once per process and loaded into candle's
//! device as a module named after the folder; ops pick the `_f32` or `_bf16` entry point
//! by the dtype of their input.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaView, DeviceRepr, DriverError, LaunchConfig, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage, WrapErr};
use candle_core::{DType, Layout, Result, bail};

/// A storage type kiln's kernels have entry points for.
pub trait Float: CudaDType + DeviceRepr + ValidAsZeroBits + Copy + 'static {
    const SUFFIX: &'static str;
}

impl Float for f32 {
    const SUFFIX: &'static str = "f32";
}

impl Float for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// The PTX of a kernel folder, compiled on first use.
fn ptx(kernel: &'static str) -> Result<&'static str> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().expect("not poisoned");
    if let Some(ptx) = cache.get(kernel) {
        return Ok(ptx);
    }
    let ptx: &'static str = Box::leak(crate::ptx::compile(kernel).map_err(candle_core::Error::msg)?.into_boxed_str());
    cache.insert(kernel, ptx);
    Ok(ptx)
}

/// The entry point `entry` of kernel folder `kernel` on `device`.
pub fn function(device: &CudaDevice, kernel: &'static str, entry: &str) -> Result<CudaFunction> {
    Ok(device.get_or_load_custom_func(entry, kernel, ptx(kernel)?)?.into_cuda_function())
}

/// The contiguous values of a tensor's storage.
pub fn view<'a, T: Float>(storage: &'a CudaStorage, layout: &Layout, op: &str) -> Result<CudaView<'a, T>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: expects a contiguous tensor");
    };
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

/// A grid-stride launch over `n` elements.
pub fn elementwise(n: usize) -> LaunchConfig {
    let threads = 256u32;
    let blocks = n.div_ceil(threads as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// One block per row.
pub fn per_row(rows: usize, cols: usize) -> LaunchConfig {
    let threads = (cols.div_ceil(32) * 32).clamp(32, 1024) as u32;
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// Runs the case for the storage's dtype, for ops with f32 and bf16 entry points.
pub fn by_dtype<R>(
    storage: &CudaStorage,
    op: &str,
    f32_case: impl FnOnce() -> R,
    bf16_case: impl FnOnce() -> R,
) -> Result<R> {
    use candle_core::backend::BackendStorage;
    match storage.dtype() {
        DType::F32 => Ok(f32_case()),
        DType::BF16 => Ok(bf16_case()),
        other => bail!("{op}: no CUDA kernel for {other:?}"),
    }
}

/// Wraps a driver result as a candle error.
pub fn launched(result: std::result::Result<(), DriverError>) -> Result<()> {
    result.w()
}
