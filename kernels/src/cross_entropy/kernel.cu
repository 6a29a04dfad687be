// Masked cross-entropy fused with its gradient (llm.c's fused classifier; cpu.rs is the
// specification): one block per row reads the logits once for the max, once for the
// sum of exponentials and once to write d logits. Rows labelled -100 get zero loss and
// gradient. Everything is divided by `normalizer`, the trained-token count of the whole
// optimizer step. Per-row losses go to `losses`; cross_entropy_sum adds them in row
// order (deterministic).

template <typename T>
__device__ void cross_entropy_fwd_bwd(const T* logits, const int* labels, T* dlogits, float* losses, int vocab,
                                      float normalizer) {
    size_t row = blockIdx.x;
    const T* z = logits + row * vocab;
    T* dz = dlogits + row * vocab;
    int label = labels[row];
    if (label == -100) {
        for (int c = threadIdx.x; c < vocab; c += blockDim.x) dz[c] = from_f32<T>(0.0f);
        if (threadIdx.x == 0) losses[row] = 0.0f;
        return;
    }
    float m = -INFINITY;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) m = fmaxf(m, to_f32(z[c]));
    m = block_max(m);
    float s = 0.0f;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) s += __expf(to_f32(z[c]) - m);
    s = block_sum(s);
    float inv = 1.0f / normalizer;
    for (int c = threadIdx.x; c < vocab; c += blockDim.x) {
        float p = __expf(to_f32(z[c]) - m) / s;
        dz[c] = from_f32<T>((p - (c == label ? 1.0f : 0.0f)) * inv);
    }
    if (threadIdx.x == 0) losses[row] = (m + logf(s) - to_f32(z[label])) * inv;
}

extern "C" __global__ void cross_entropy_sum(const float* losses, float* total, int rows) {
    // One block: thread t sums rows t, t + blockDim, ... then a fixed-order block sum.
    float s = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) s += losses[r];
    s = block_sum(s);
    if (threadIdx.x == 0) *total = s;
}

#define CROSS_ENTROPY(S, T)                                                                                 \
    extern "C" __global__ void cross_entropy_##S(const T* logits, const int* labels, T* dlogits,            \
                                                 float* losses, int vocab, float normalizer) {              \
        cross_entropy_fwd_bwd<T>(logits, labels, dlogits, losses, vocab, normalizer);                       \
    }
CROSS_ENTROPY(f32, float)
CROSS_ENTROPY(bf16, bf16)
