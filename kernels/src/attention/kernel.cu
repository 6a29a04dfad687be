// Causal attention restricted to each document of a packed row, forward and backward,
// with grouped-query heads (cpu.rs is the specification). qkv: [tokens, (Hq + 2 Hkv) D],
// per token the query heads, then the key heads, then the value heads; query head h
// reads key/value head h / (Hq / Hkv).
//
// Work is cut into tiles of TILE_Q rows of one document, listed by the host as
// (document start, document length, first row in the document), three ints per tile,
// so only the blocks under each document's causal triangle exist: the cost is the sum of
// squared document lengths, not the square of the row. Flash-attention style: keys and
// values stream through shared memory in TILE_K rows, the softmax is online, and the
// forward keeps each query's log-sum-exp so the backward recomputes probabilities.
// Tokens in no document (padding) are never touched: the host zeroes out and dqkv.

#define TILE_Q 64
#define TILE_K 32
#define MAX_D 128

struct Tile {
    int start, len, first;
};
__device__ __forceinline__ Tile tile_of(const int* tiles) {
    const int* t = tiles + 3 * blockIdx.x;
    return Tile{t[0], t[1], t[2]};
}

// Keys and values k0 .. k0 + TILE_K of the tile's document for key/value head g into
// shared memory (zeros past the document); synchronizes before and after.
template <typename T>
__device__ void load_kv_tile(const T* qkv, Tile tile, int k0, int g, int q_heads, int kv_heads, int d,
                             float (*ks)[MAX_D], float (*vs)[MAX_D]) {
    size_t width = (size_t)(q_heads + 2 * kv_heads) * d;
    __syncthreads();
    for (int i = threadIdx.x; i < TILE_K * d; i += blockDim.x) {
        int j = i / d, c = i % d, key = k0 + j;
        bool in = key < tile.len;
        size_t base = (tile.start + key) * width;
        ks[j][c] = in ? to_f32(qkv[base + (size_t)(q_heads + g) * d + c]) : 0.0f;
        vs[j][c] = in ? to_f32(qkv[base + (size_t)(q_heads + kv_heads + g) * d + c]) : 0.0f;
    }
    __syncthreads();
}

// Grid (tiles, Hq), TILE_Q threads: thread r owns query row first + r.
template <typename T>
__device__ void attention_fwd(const T* qkv, const int* tiles, T* out, float* lse, int q_heads, int kv_heads, int d,
                              float scale) {
    Tile tile = tile_of(tiles);
    int h = blockIdx.y, g = h / (q_heads / kv_heads);
    size_t width = (size_t)(q_heads + 2 * kv_heads) * d;
    int qi = tile.first + threadIdx.x;
    bool active = qi < tile.len;
    float q[MAX_D], acc[MAX_D];
    for (int c = 0; c < d; ++c) {
        q[c] = active ? to_f32(qkv[(tile.start + qi) * width + (size_t)h * d + c]) * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    __shared__ float ks[TILE_K][MAX_D];
    __shared__ float vs[TILE_K][MAX_D];
    int keys = min(tile.len, tile.first + TILE_Q);
    for (int k0 = 0; k0 < keys; k0 += TILE_K) {
        load_kv_tile(qkv, tile, k0, g, q_heads, kv_heads, d, ks, vs);
        if (!active) continue;
        int visible = min(TILE_K, qi - k0 + 1);
        for (int j = 0; j < visible; ++j) {
            float s = 0.0f;
            for (int c = 0; c < d; ++c) s += q[c] * ks[j][c];
            float m_new = fmaxf(m, s);
            float correction = __expf(m - m_new), p = __expf(s - m_new);
            l = l * correction + p;
            for (int c = 0; c < d; ++c) acc[c] = acc[c] * correction + p * vs[j][c];
            m = m_new;
        }
    }
    if (!active) return;
    size_t row = tile.start + qi;
    for (int c = 0; c < d; ++c) out[row * q_heads * d + (size_t)h * d + c] = from_f32<T>(acc[c] / l);
    lse[row * q_heads + h] = m + logf(l);
}

// delta[token, h] = Σ_c dout · out over the head: the softmax backward's row term.
template <typename T>
__device__ void attention_bwd_delta(const T* out, const T* dout, float* delta, long long tokens, int q_heads, int d) {
    long long n = tokens * q_heads;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int c = 0; c < d; ++c) s += to_f32(out[i * d + c]) * to_f32(dout[i * d + c]);
        delta[i] = s;
    }
}

// dq: grid (tiles, Hq), thread r owns query row first + r and walks its visible keys.
template <typename T>
__device__ void attention_bwd_dq(const T* qkv, const T* dout, const float* lse, const float* delta, const int* tiles,
                                 T* dqkv, int q_heads, int kv_heads, int d, float scale) {
    Tile tile = tile_of(tiles);
    int h = blockIdx.y, g = h / (q_heads / kv_heads);
    size_t width = (size_t)(q_heads + 2 * kv_heads) * d;
    int qi = tile.first + threadIdx.x;
    bool active = qi < tile.len;
    size_t row = tile.start + qi;
    float q[MAX_D], go[MAX_D], dq[MAX_D];
    for (int c = 0; c < d; ++c) {
        q[c] = active ? to_f32(qkv[row * width + (size_t)h * d + c]) * scale : 0.0f;
        go[c] = active ? to_f32(dout[row * q_heads * d + (size_t)h * d + c]) : 0.0f;
        dq[c] = 0.0f;
    }
    float l = active ? lse[row * q_heads + h] : 0.0f;
    float dl = active ? delta[row * q_heads + h] : 0.0f;
    __shared__ float ks[TILE_K][MAX_D];
    __shared__ float vs[TILE_K][MAX_D];
    int keys = min(tile.len, tile.first + TILE_Q);
    for (int k0 = 0; k0 < keys; k0 += TILE_K) {
        load_kv_tile(qkv, tile, k0, g, q_heads, kv_heads, d, ks, vs);
        if (!active) continue;
        int visible = min(TILE_K, qi - k0 + 1);
        for (int j = 0; j < visible; ++j) {
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < d; ++c) {
                s += q[c] * ks[j][c];
                dp += go[c] * vs[j][c];
            }
            float ds = __expf(s - l) * (dp - dl);
            for (int c = 0; c < d; ++c) dq[c] += ds * ks[j][c];
        }
    }
    if (!active) return;
    for (int c = 0; c < d; ++c) dqkv[row * width + (size_t)h * d + c] = from_f32<T>(dq[c] * scale);
}

// dk, dv: grid (tiles, Hkv), thread r owns key row first + r and walks, for every query
// head of its group, the queries that see it (rows at or after it in the document).
template <typename T>
__device__ void attention_bwd_dkv(const T* qkv, const T* dout, const float* lse, const float* delta,
                                  const int* tiles, T* dqkv, int q_heads, int kv_heads, int d, float scale) {
    Tile tile = tile_of(tiles);
    int g = blockIdx.y, group = q_heads / kv_heads;
    size_t width = (size_t)(q_heads + 2 * kv_heads) * d;
    int kj = tile.first + threadIdx.x;
    bool active = kj < tile.len;
    size_t row = tile.start + kj;
    float k[MAX_D], v[MAX_D], dk[MAX_D], dv[MAX_D];
    for (int c = 0; c < d; ++c) {
        k[c] = active ? to_f32(qkv[row * width + (size_t)(q_heads + g) * d + c]) : 0.0f;
        v[c] = active ? to_f32(qkv[row * width + (size_t)(q_heads + kv_heads + g) * d + c]) : 0.0f;
        dk[c] = 0.0f;
        dv[c] = 0.0f;
    }
    __shared__ float qs[TILE_K][MAX_D];
    __shared__ float gos[TILE_K][MAX_D];
    __shared__ float ls[TILE_K], dls[TILE_K];
    for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int q0 = tile.first; q0 < tile.len; q0 += TILE_K) {
            __syncthreads();
            for (int i = threadIdx.x; i < TILE_K * d; i += blockDim.x) {
                int j = i / d, c = i % d, query = q0 + j;
                bool in = query < tile.len;
                size_t r = tile.start + query;
                qs[j][c] = in ? to_f32(qkv[r * width + (size_t)h * d + c]) * scale : 0.0f;
                gos[j][c] = in ? to_f32(dout[r * q_heads * d + (size_t)h * d + c]) : 0.0f;
            }
            for (int j = threadIdx.x; j < TILE_K; j += blockDim.x) {
                bool in = q0 + j < tile.len;
                size_t r = tile.start + q0 + j;
                ls[j] = in ? lse[r * q_heads + h] : 0.0f;
                dls[j] = in ? delta[r * q_heads + h] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            for (int j = max(0, kj - q0); j < TILE_K && q0 + j < tile.len; ++j) {
                float s = 0.0f, dp = 0.0f;
                for (int c = 0; c < d; ++c) {
                    s += qs[j][c] * k[c];
                    dp += gos[j][c] * v[c];
                }
                float p = __expf(s - ls[j]);
                float ds = p * (dp - dls[j]);
                for (int c = 0; c < d; ++c) {
                    dv[c] += p * gos[j][c];
                    dk[c] += ds * qs[j][c];
                }
            }
        }
    }
    if (!active) return;
    for (int c = 0; c < d; ++c) {
        dqkv[row * width + (size_t)(q_heads + g) * d + c] = from_f32<T>(dk[c]);
        dqkv[row * width + (size_t)(q_heads + kv_heads + g) * d + c] = from_f32<T>(dv[c]);
    }
}

#define ATTENTION(S, T)                                                                                           \
    extern "C" __global__ void attention_fwd_##S(const T* qkv, const int* tiles, T* out, float* lse, int q_heads, \
                                                 int kv_heads, int d, float scale) {                              \
        attention_fwd<T>(qkv, tiles, out, lse, q_heads, kv_heads, d, scale);                                      \
    }                                                                                                             \
    extern "C" __global__ void attention_bwd_delta_##S(const T* out, const T* dout, float* delta, long long tokens, \
                                                       int q_heads, int d) {                                      \
        attention_bwd_delta<T>(out, dout, delta, tokens, q_heads, d);                                             \
    }                                                                                                             \
    extern "C" __global__ void attention_bwd_dq_##S(const T* qkv, const T* dout, const float* lse,                \
                                                    const float* delta, const int* tiles, T* dqkv, int q_heads,   \
                                                    int kv_heads, int d, float scale) {                           \
        attention_bwd_dq<T>(qkv, dout, lse, delta, tiles, dqkv, q_heads, kv_heads, d, scale);                     \
    }                                                                                                             \
    extern "C" __global__ void attention_bwd_dkv_##S(const T* qkv, const T* dout, const float* lse,               \
                                                     const float* delta, const int* tiles, T* dqkv, int q_heads,  \
                                                     int kv_heads, int d, float scale) {                          \
        attention_bwd_dkv<T>(qkv, dout, lse, delta, tiles, dqkv, q_heads, kv_heads, d, scale);                    \
    }
ATTENTION(f32, float)
ATTENTION(bf16, bf16)
