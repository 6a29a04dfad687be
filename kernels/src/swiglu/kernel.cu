// SwiGLU over fused gate|up rows: y = silu(gate) * up (cpu.rs is the specification).
// Elementwise; a grid-stride loop over rows * f outputs.

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

template <typename T>
__device__ void swiglu_fwd(const T* x, T* y, long long rows, int f) {
    long long n = rows * f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / f, c = i % f;
        float g = to_f32(x[r * 2 * f + c]), u = to_f32(x[r * 2 * f + f + c]);
        y[i] = from_f32<T>(g * sigmoid(g) * u);
    }
}

// d gate = dy · up · σ(g)(1 + g(1 - σ(g))), d up = dy · silu(g).
template <typename T>
__device__ void swiglu_bwd(const T* x, const T* dy, T* dx, long long rows, int f) {
    long long n = rows * f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / f, c = i % f;
        float g = to_f32(x[r * 2 * f + c]), u = to_f32(x[r * 2 * f + f + c]), d = to_f32(dy[i]);
        float s = sigmoid(g);
        dx[r * 2 * f + c] = from_f32<T>(d * u * s * (1.0f + g * (1.0f - s)));
        dx[r * 2 * f + f + c] = from_f32<T>(d * g * s);
    }
}

#define SWIGLU(S, T)                                                                               \
    extern "C" __global__ void swiglu_fwd_##S(const T* x, T* y, long long rows, int f) {          \
        swiglu_fwd<T>(x, y, rows, f);                                                              \
    }                                                                                              \
    extern "C" __global__ void swiglu_bwd_##S(const T* x, const T* dy, T* dx, long long rows, int f) { \
        swiglu_bwd<T>(x, dy, dx, rows, f);                                                         \
    }
SWIGLU(f32, float)
SWIGLU(bf16, bf16)
