// Shared by every kiln kernel; prepended to each kernel's source before NVRTC compiles
// it (no include paths, no CUDA headers: NVRTC's built-ins are enough).
//
// Storage types: `float`, or bf16 held as its 16 bits. Arithmetic is always f32; bf16
// values are widened on load and rounded to nearest even on store, as PyTorch does.

typedef unsigned short bf16;

// NVRTC has no <math.h>: infinity by its bits.
#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __uint_as_float(((unsigned int)x) << 16); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)0x7fc0;  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

// Sum (or max) over a warp, then over the block (blockDim.x a multiple of 32, at most
// 1024); every thread gets the result. The order is fixed, so results are deterministic.
struct Add {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename Op>
__device__ float block_reduce(float v, Op op, float identity) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : identity;
    return warp_reduce(v, op);
}
__device__ float block_sum(float v) { return block_reduce(v, Add{}, 0.0f); }
__device__ float block_max(float v) { return block_reduce(v, Max{}, -INFINITY); }
