// Fused AdamW over every parameter in one launch, with PyTorch's semantics (cpu.rs is
// the specification): decoupled weight decay, bias-corrected moments, eps added to the
// corrected root of the second moment, and the gradients scaled by the global-norm
// clipping factor. Parameters, gradients and moments are f32 (the master copy).
//
// A chunk table maps block b to (tensor chunk_tensor[b], elements from chunk_offset[b],
// at most `chunk`), so one launch covers tensors of any sizes. The norm is two passes:
// adamw_sum_squares writes one f64 partial per chunk, adamw_norm adds them in chunk
// order (deterministic), and adamw_step reads the total.

__device__ double block_sum_f64(double v) {
    __shared__ double partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void adamw_sum_squares(const float* const* grads, const long long* sizes,
                                             const int* chunk_tensor, const long long* chunk_offset, int chunk,
                                             double* partial) {
    int t = chunk_tensor[blockIdx.x];
    long long start = chunk_offset[blockIdx.x];
    long long end = min(sizes[t], start + chunk);
    const float* g = grads[t];
    double s = 0.0;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) s += (double)g[i] * (double)g[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

extern "C" __global__ void adamw_norm(const double* partial, int chunks, double* sum_of_squares) {
    double s = 0.0;
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) s += partial[c];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) *sum_of_squares = s;
}

// bias1 = 1 - beta1^t and bias2_sqrt = sqrt(1 - beta2^t), computed by the host in f32
// as the twin does; max_norm <= 0 turns clipping off.
extern "C" __global__ void adamw_step(float* const* params, const float* const* grads, float* const* ms,
                                      float* const* vs, const unsigned char* decay, const long long* sizes,
                                      const int* chunk_tensor, const long long* chunk_offset, int chunk,
                                      const double* sum_of_squares, float max_norm, float lr, float beta1,
                                      float beta2, float eps, float weight_decay, float bias1, float bias2_sqrt) {
    int t = chunk_tensor[blockIdx.x];
    long long start = chunk_offset[blockIdx.x];
    long long end = min(sizes[t], start + chunk);
    double norm = sqrt(*sum_of_squares);
    float scale = (max_norm > 0.0f && norm > max_norm) ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
    float step_size = lr / bias1;
    float shrink = decay[t] ? 1.0f - lr * weight_decay : 1.0f;
    float *p = params[t], *m = ms[t], *v = vs[t];
    const float* g = grads[t];
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
        float gi = g[i] * scale;
        float pi = p[i] * shrink;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bias2_sqrt + eps);
    }
}

// The bf16 compute copy of the f32 master weights, refreshed after each step.
extern "C" __global__ void cast_f32_bf16(const float* src, bf16* dst, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] = from_f32<bf16>(src[i]);
}

extern "C" __global__ void cast_bf16_f32(const bf16* src, float* dst, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] = to_f32(src[i]);
}
