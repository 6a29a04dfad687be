// RMSNorm, forward and backward (the CPU twin, cpu.rs, is the specification).
// One block per row; x, y, dy, dx of the storage type T, weights and dw f32.

template <typename T>
__device__ void rms_norm_fwd(const T* x, const float* w, T* y, int cols, float eps) {
    const T* xr = x + (size_t)blockIdx.x * cols;
    T* yr = y + (size_t)blockIdx.x * cols;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = to_f32(xr[c]);
        ss += v * v;
    }
    float r = rsqrtf(block_sum(ss) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = from_f32<T>(to_f32(xr[c]) * r * w[c]);
}

// dx (f32, for the master gradients) = r (dy w - x̂ mean(dy w x̂)) per row, r recomputed. Block b handles `rows_per_block` rows and
// writes its share of dw, Σ dy x̂ over those rows, to dw_partial[b]; rms_norm_dw sums the
// shares in block order (deterministic, no atomics).
template <typename T>
__device__ void rms_norm_bwd(const T* x, const float* w, const T* dy, float* dx, float* dw_partial, int rows,
                             int cols, int rows_per_block, float eps) {
    float* dw = dw_partial + (size_t)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dw[c] = 0.0f;
    int first = blockIdx.x * rows_per_block;
    int last = min(rows, first + rows_per_block);
    for (int row = first; row < last; ++row) {
        const T* xr = x + (size_t)row * cols;
        const T* dyr = dy + (size_t)row * cols;
        float* dxr = dx + (size_t)row * cols;
        float ss = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float v = to_f32(xr[c]);
            ss += v * v;
        }
        float r = rsqrtf(block_sum(ss) / cols + eps);
        float dot = 0.0f;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float xhat = to_f32(xr[c]) * r;
            float g = to_f32(dyr[c]);
            dot += g * w[c] * xhat;
            dw[c] += g * xhat;
        }
        float mean = block_sum(dot) / cols;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) {
            float xhat = to_f32(xr[c]) * r;
            dxr[c] = r * (to_f32(dyr[c]) * w[c] - xhat * mean);
        }
    }
}

extern "C" __global__ void rms_norm_dw(const float* dw_partial, float* dw, int blocks, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int b = 0; b < blocks; ++b) s += dw_partial[(size_t)b * cols + c];
    dw[c] = s;
}

#define RMS_NORM(S, T)                                                                                       \
    extern "C" __global__ void rms_norm_fwd_##S(const T* x, const float* w, T* y, int cols, float eps) {     \
        rms_norm_fwd<T>(x, w, y, cols, eps);                                                                 \
    }                                                                                                        \
    extern "C" __global__ void rms_norm_bwd_##S(const T* x, const float* w, const T* dy, float* dx,           \
                                               float* dw_partial, int rows, int cols, int rows_per_block,   \
                                               float eps) {                                                 \
        rms_norm_bwd<T>(x, w, dy, dx, dw_partial, rows, cols, rows_per_block, eps);                          \
    }
RMS_NORM(f32, float)
RMS_NORM(bf16, bf16)
