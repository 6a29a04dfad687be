//! Access to candle's CPU storage as plain slices, for the CPU twins.

use candle_core::{CpuStorage, Layout, Result, bail};

/// The f32 values of a contiguous tensor.
pub fn f32s<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        bail!("{op}: expects f32 values");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => bail!("{op}: expects a contiguous tensor"),
    }
}

/// The f32 values of a contiguous tensor, mutably.
pub fn f32s_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(values) = storage else {
        bail!("{op}: expects f32 values");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut values[start..end]),
        None => bail!("{op}: expects a contiguous tensor"),
    }
}

/// Rows per block in reductions over rows: partial sums per fixed block, then the
/// blocks summed in order, so the result does not depend on the number of threads.
pub const REDUCE_BLOCK: usize = 64;

/// A dot product with eight independent accumulators, so it vectorizes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}
