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

/// A strided matrix inside a slice: element (r, c) is `data[offset + r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// The mutable counterpart of [`Mat`].
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

fn last_index(offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    offset + rows.saturating_sub(1) * rs + cols.saturating_sub(1) * cs
}

impl<'a> Mat<'a> {
    /// A row-major `rows x cols` matrix at the start of `data`.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat { data, offset: 0, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose, as a view of the same data.
    pub fn t(self) -> Self {
        Mat { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

impl<'a> MatMut<'a> {
    /// A row-major `rows x cols` matrix at the start of `data`.
    pub fn dense(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        MatMut { data, offset: 0, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// `rows x cols` starting at `offset`, rows `row_stride` apart, columns adjacent.
    pub fn rows(data: &'a mut [f32], offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        MatMut { data, offset, rows, cols, row_stride, col_stride: 1 }
    }
}

/// `dst = (accumulate ? dst : 0) + scale * lhs × rhs`, single-threaded (callers
/// parallelize over independent blocks). Panics if a view leaves its slice.
pub fn matmul(dst: MatMut, lhs: Mat, rhs: Mat, accumulate: bool, scale: f32) {
    assert!(lhs.rows == dst.rows && rhs.cols == dst.cols && lhs.cols == rhs.rows, "matmul shapes");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    assert!(last_index(dst.offset, dst.rows, dst.cols, dst.row_stride, dst.col_stride) < dst.data.len());
    if lhs.cols > 0 {
        assert!(last_index(lhs.offset, lhs.rows, lhs.cols, lhs.row_stride, lhs.col_stride) < lhs.data.len());
        assert!(last_index(rhs.offset, rhs.rows, rhs.cols, rhs.row_stride, rhs.col_stride) < rhs.data.len());
    }
    // SAFETY: every element each view addresses was checked to lie inside its slice just
    // above; dst is borrowed mutably and so cannot alias lhs or rhs.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr().add(dst.offset),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// e^x, to about 3e-7 relative, in arithmetic that vectorizes (no libm call): x = n ln2 + r
/// with ln2 split in two for exactness (Cody and Waite), 2^n by exponent bits, and e^r,
/// |r| <= ln2/2, by its degree-6 Taylor polynomial.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12582912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Defines `fn NAME(args)` whose body, plain loops, is compiled three times: for AVX-512F,
/// for AVX2 and FMA, and for the baseline the build targets; the call picks the widest the
/// CPU has (checked at run time). Hot loops of the twins then vectorize as wide as the
/// machine allows. Results do not depend on which copy runs wherever the body fixes its
/// order of additions (as `lanes` does).
macro_rules! widest {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        widest! { $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn plain($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    plain($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    plain($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the copy is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            plain($($arg),*)
        }
    };
}
pub(crate) use widest;

/// Folds `x` with `op` in 16 interleaved lanes combined in a fixed order: it vectorizes,
/// and the result does not depend on the vector width of the machine.
#[inline(always)]
pub fn lanes(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..16 {
            acc[l] = op(acc[l], chunk[l]);
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        acc[l] = op(acc[l], v);
    }
    let mut width = 8;
    while width > 0 {
        for l in 0..width {
            acc[l] = op(acc[l], acc[l + width]);
        }
        width /= 2;
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_close_to_exp() {
        let mut worst = 0f32;
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let rel = ((fast_exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "{worst}");
        assert!(fast_exp(-1000.0) < 1e-37);
    }

    #[test]
    fn matmul_follows_strides() {
        // lhs 2x3 row-major, rhs given as the transpose of a 2x3 row-major matrix
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [1., 0., 1., 0., 1., 0.];
        let mut out = [10f32; 4];
        let lhs = Mat { data: &a, offset: 0, rows: 2, cols: 3, row_stride: 3, col_stride: 1 };
        let rhs = Mat { data: &b, offset: 0, rows: 2, cols: 3, row_stride: 3, col_stride: 1 }.t();
        matmul(
            MatMut { data: &mut out, offset: 0, rows: 2, cols: 2, row_stride: 2, col_stride: 1 },
            lhs,
            rhs,
            true,
            2.0,
        );
        // a × bᵀ = [[4, 2], [10, 5]]; out = 10 + 2 × that
        assert_eq!(out, [18., 14., 30., 20.]);
    }
}
