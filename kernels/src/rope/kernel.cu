// Rotary embedding in Hugging Face's convention (pairs i, i + D/2 of each head), with a
// position per token (restarting per packed document); cpu.rs is the specification.
// x, y: [tokens, heads, D]; only the first `rotated` heads turn, the others are copied.
// `inverse` rotates by the negative angle: the backward. cos, sin: [positions, D/2].

template <typename T>
__device__ void rope(const T* x, T* y, const float* cos_t, const float* sin_t, const int* positions,
                     long long tokens, int heads, int rotated, int d, int inverse) {
    int half = d / 2;
    long long pairs = tokens * heads * half;
    float sign = inverse ? -1.0f : 1.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < pairs; i += (long long)gridDim.x * blockDim.x) {
        long long token = i / ((long long)heads * half);
        int h = (int)((i / half) % heads);
        int k = (int)(i % half);
        long long base = (token * heads + h) * d;
        float a = to_f32(x[base + k]), b = to_f32(x[base + k + half]);
        if (h >= rotated) {
            y[base + k] = x[base + k];
            y[base + k + half] = x[base + k + half];
            continue;
        }
        long long p = positions[token];
        float c = cos_t[p * half + k], s = sign * sin_t[p * half + k];
        y[base + k] = from_f32<T>(a * c - b * s);
        y[base + k + half] = from_f32<T>(b * c + a * s);
    }
}

#define ROPE(S, T)                                                                                        \
    extern "C" __global__ void rope_##S(const T* x, T* y, const float* cos_t, const float* sin_t,        \
                                        const int* positions, long long tokens, int heads, int rotated, \
                                        int d, int inverse) {                                            \
        rope<T>(x, y, cos_t, sin_t, positions, tokens, heads, rotated, d, inverse);                      \
    }
ROPE(f32, float)
ROPE(bf16, bf16)
