// moe4j's CUDA kernels: one module, loaded from PTX by moe4j.kernels.cuda.CudaBackend through the
// driver API. Activations are f32 rows with a pitch (floats per row, a multiple of 4); weights are the
// GGUF blocks as stored in the file. Entry points are extern "C" so their names are stable; the
// per-format ones end in the format's name (see FORMAT_KERNELS at the end).
//
// Numerics follow moe4j.kernels.cpu.CpuBackend where it matters for agreement: the same dequantization
// (formats.cuh), float32 accumulation, double-precision sums in RMSNorm and the router softmax, RoPE
// angles by the same repeated multiplication. Sums run in a different order, so results agree with the
// CPU's to float32 rounding, not bit for bit.

#include "formats.cuh"
#include "q8k.cuh"
#include "mmq.cuh"

using namespace moe4j;

#define WARP 32
#define FULL_MASK 0xFFFFFFFFu

// Programmatic dependent launch (compute capability 9.0 on; the host asks for it per launch, see
// ProgrammaticLaunch): a kernel may start while the one before it in the stream still runs, so that its launch and
// its first weight loads overlap that kernel's work. Every kernel therefore waits for its predecessor
// (pdl_wait) before it reads anything an earlier kernel wrote, or writes anything; only weights, which no
// kernel writes, may be read before. Once past the wait it lets the next kernel start (pdl_release), so at
// most one kernel waits ahead. Both are no-ops on older GPUs and in launches without the attribute.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_release() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_enter() {
    pdl_wait();
    pdl_release();
}

// Whether the kernels that read little right after their wait first ask L2 for it (prefetch_l2) while the kernel
// before still runs: the norms their gains, the router its rows, decoding attention the cache rows of the positions
// before. A decode step streams 1-2 GB of weights, which evicts L2 between tokens, so those reads otherwise go to DRAM
// on the step's critical path. A prefetch changes no value a kernel reads (it only fills L2, where every SM's writes
// land), so it may ask for anything; what it asks for is data no kernel still running writes, or rarely. Set by the
// host (-Dmoe4j.cuda.prefetch, an experiment); results are the same either way.
__constant__ int c_prefetch;

// Asks L2 for the 128-byte lines of `bytes` bytes at p, spread over `threads` threads, this one `thread`.
__device__ __forceinline__ void prefetch_l2(const void* p, long long bytes, int thread, int threads) {
    if (c_prefetch == 0) return;
    const char* c = reinterpret_cast<const char*>(p);
    for (long long at = 128LL * thread; at < bytes; at += 128LL * threads) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(__cvta_generic_to_global(c + at)));
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// ggml's scalar SiLU, x / (1 + e^-x), with the exponential in double as java.lang.Math computes it
__device__ __forceinline__ float silu(float x) {
    return __fdiv_rn(x, __fadd_rn(1.0f, (float)exp(-(double)x)));
}

__device__ __forceinline__ float dot16(const float* v, const float* x, float acc) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 f = x4[i];
        acc = fmaf(v[4 * i], f.x, acc);
        acc = fmaf(v[4 * i + 1], f.y, acc);
        acc = fmaf(v[4 * i + 2], f.z, acc);
        acc = fmaf(v[4 * i + 3], f.w, acc);
    }
    return acc;
}

// Lane `lane`'s share of the dot product of one weight row with x: parts lane, lane+32, ... in that order.
// Unrolled 4 deep so that a lane has the loads of four parts in flight (a row of 2048 values is 4 parts a
// lane); the order of the additions, and so the result, is that of the plain loop.
template <class F>
__device__ __forceinline__ float lane_row_dot(const uint8_t* row, const float* x, int K, int lane) {
    constexpr int PARTS = F::QK / 16;
    int parts = K >> 4;
    float acc = 0.f;
#pragma unroll 4
    for (int i = lane; i < parts; i += WARP) {
        float v[16];
        F::decode(row + (long long)(i / PARTS) * F::BYTES, i % PARTS, v);
        acc = dot16(v, x + 16 * i, acc);
    }
    return acc;
}

// The dot product of one weight row with x, by one warp: lane i takes parts i, i+32, ... All lanes get the sum.
template <class F>
__device__ __forceinline__ float warp_row_dot(const uint8_t* row, const float* x, int K, int lane) {
    return warp_sum(lane_row_dot<F>(row, x, K, lane));
}

// ---------------------------------------------------------------- Q4_K from registers

// Q4_K::decode reads its bytes where it needs them, between branches, so a lane waits for memory once per
// part (and once more for x). When a Q4_K weight is 16-byte aligned (rows of 144-byte blocks always keep
// it so), a part is two uint4 loads: the block's 16 header bytes (d, dmin, scales) and its 16 quant bytes.
// The matrix-vector kernels issue those loads for all of a lane's parts first, then decode them here with
// exactly Q4_K::decode's arithmetic, so the results are bit for bit those of the generic path.
struct Q4KRaw {
    uint4 h;
    uint4 q;
};

template <class F>
struct RawQ4K {
    static constexpr bool value = false;
};
template <>
struct RawQ4K<Q4_K> {
    static constexpr bool value = true;
};

__device__ __forceinline__ bool aligned16(const void* p, long long a, long long b) {
    return ((reinterpret_cast<uintptr_t>(p) | (uintptr_t)a | (uintptr_t)b) & 15) == 0;
}

__device__ __forceinline__ Q4KRaw q4k_load(const uint8_t* block, int part) {
    Q4KRaw r;
    r.h = *reinterpret_cast<const uint4*>(block);
    r.q = *reinterpret_cast<const uint4*>(block + 16 + 32 * (part >> 2) + 16 * (part & 1));
    return r;
}

// byte i (0..15) of h
__device__ __forceinline__ int q4k_byte(const uint4& h, int i) {
    uint32_t w = i < 8 ? (i < 4 ? h.x : h.y) : (i < 12 ? h.z : h.w);
    return (int)((w >> (8 * (i & 3))) & 0xFFu);
}

__device__ __forceinline__ void q4k_decode(const Q4KRaw& r, int part, float* v) {
    float d = __half2float(__ushort_as_half((unsigned short)(r.h.x & 0xFFFFu)));
    float dmin = __half2float(__ushort_as_half((unsigned short)(r.h.x >> 16)));
    int j = part >> 1;
    // k_scale and k_min of the scale bytes s[0..11] = header bytes 4..15
    int sc = j < 4 ? (q4k_byte(r.h, 4 + j) & 63)
                   : ((q4k_byte(r.h, 8 + j) & 0xF) | ((q4k_byte(r.h, j) >> 6) << 4));
    int mn = j < 4 ? (q4k_byte(r.h, 8 + j) & 63) : ((q4k_byte(r.h, 8 + j) >> 4) | ((q4k_byte(r.h, 4 + j) >> 6) << 4));
    float dl = mul(d, (float)sc);
    float ml = mul(dmin, (float)mn);
    Bytes16 q;
    q.w[0] = r.q.x;
    q.w[1] = r.q.y;
    q.w[2] = r.q.z;
    q.w[3] = r.q.w;
    int shift = 4 * (j & 1);
#pragma unroll
    for (int l = 0; l < 16; l++) v[l] = mul_sub(dl, (float)((q.b(l) >> shift) & 0xF), ml);
}

#define Q4K_UNROLL 4

// lane_row_dot<Q4_K> for an aligned row: the same parts in the same order, their loads issued
// Q4K_UNROLL parts at a time before any is used
__device__ __forceinline__ float q4k_lane_row_dot(const uint8_t* row, const float* x, int K, int lane) {
    int parts = K >> 4;
    float acc = 0.f;
    for (int i0 = lane; i0 < parts; i0 += Q4K_UNROLL * WARP) {
        Q4KRaw raw[Q4K_UNROLL];
#pragma unroll
        for (int u = 0; u < Q4K_UNROLL; u++) {
            int i = i0 + u * WARP;
            if (i < parts) raw[u] = q4k_load(row + (long long)(i >> 4) * Q4_K::BYTES, i & 15);
        }
#pragma unroll
        for (int u = 0; u < Q4K_UNROLL; u++) {
            int i = i0 + u * WARP;
            if (i < parts) {
                float v[16];
                q4k_decode(raw[u], i & 15, v);
                acc = dot16(v, x + 16 * i, acc);
            }
        }
    }
    return acc;
}

// ---------------------------------------------------------------- matrix-vector (decode)

#define MV_WARPS 4
#define MV_SLOTS 8

// y[a][r] = dot(W_e row r, x[a / xDiv]) with e = ids[a] (or 0 without ids); blockIdx.y = a.
// PAIR: y = silu(dot(W row r, x)) * dot(W2 row r, x), the SwiGLU gate and up projections in one pass.
// WARPS: the warps (rows) of a block.
template <class F, bool PAIR, int WARPS = MV_WARPS>
__device__ __forceinline__ void mv_body(const uint8_t* W, const uint8_t* W2, long long expertStride,
                                        long long rowBytes, int K, int rows, int experts, const float* X,
                                        int xStride, int xDiv, const int* ids, float* Y, int yStride) {
    int lane = threadIdx.x & (WARP - 1);
    int r = blockIdx.x * WARPS + (threadIdx.x >> 5);
    int a = blockIdx.y;
    if (r >= rows) return;
    int e = ids != nullptr ? ids[a] : 0;
    float* y = Y + (long long)a * yStride + r;
    if (e < 0 || e >= experts) {  // a router that saw no finite probability: NaN, never a wild read
        if (lane == 0) *y = __int_as_float(0x7fc00000);
        return;
    }
    long long off = (long long)e * expertStride + (long long)r * rowBytes;
    const float* x = X + (long long)(a / xDiv) * xStride;
    float acc;
    if (RawQ4K<F>::value && aligned16(W, expertStride, rowBytes) && (!PAIR || aligned16(W2, 0, 0))) {
        if (PAIR) {
            // q4k_lane_row_dot for both rows, their loads issued together
            int parts = K >> 4;
            const uint8_t* wg = W + off;
            const uint8_t* wu = W2 + off;
            float g = 0.f;
            float u = 0.f;
            for (int i0 = lane; i0 < parts; i0 += Q4K_UNROLL * WARP) {
                Q4KRaw rg[Q4K_UNROLL];
                Q4KRaw ru[Q4K_UNROLL];
#pragma unroll
                for (int n = 0; n < Q4K_UNROLL; n++) {
                    int i = i0 + n * WARP;
                    if (i < parts) {
                        long long b = (long long)(i >> 4) * Q4_K::BYTES;
                        rg[n] = q4k_load(wg + b, i & 15);
                        ru[n] = q4k_load(wu + b, i & 15);
                    }
                }
#pragma unroll
                for (int n = 0; n < Q4K_UNROLL; n++) {
                    int i = i0 + n * WARP;
                    if (i < parts) {
                        float v[16];
                        q4k_decode(rg[n], i & 15, v);
                        g = dot16(v, x + 16 * i, g);
                        q4k_decode(ru[n], i & 15, v);
                        u = dot16(v, x + 16 * i, u);
                    }
                }
            }
            acc = __fmul_rn(silu(warp_sum(g)), warp_sum(u));
        } else {
            acc = warp_sum(q4k_lane_row_dot(W + off, x, K, lane));
        }
    } else if (PAIR) {
        // both rows in one loop, so that their loads overlap; each sum in the order of lane_row_dot
        constexpr int PARTS = F::QK / 16;
        int parts = K >> 4;
        const uint8_t* wg = W + off;
        const uint8_t* wu = W2 + off;
        float g = 0.f;
        float u = 0.f;
#pragma unroll 2
        for (int i = lane; i < parts; i += WARP) {
            float v[16];
            float w[16];
            long long b = (long long)(i / PARTS) * F::BYTES;
            F::decode(wg + b, i % PARTS, v);
            F::decode(wu + b, i % PARTS, w);
            g = dot16(v, x + 16 * i, g);
            u = dot16(w, x + 16 * i, u);
        }
        acc = __fmul_rn(silu(warp_sum(g)), warp_sum(u));
    } else {
        acc = warp_row_dot<F>(W + off, x, K, lane);
    }
    if (lane == 0) *y = acc;
}

// out[t][r] = sum over slots s of weight[t*k+s] * dot(W_e row r, h[t*k+s]), e = ids[t*k+s], in slot order:
// the expert down projections and the weighted sum of a token's experts in one pass.
template <class F>
__device__ __forceinline__ void mv_combine_body(const uint8_t* W, long long expertStride, long long rowBytes,
                                                int K, int rows, int experts, const float* H, int hStride,
                                                const int* ids, const float* weights, int k, float* Y,
                                                int yStride) {
    constexpr int PARTS = F::QK / 16;
    int lane = threadIdx.x & (WARP - 1);
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    int t = blockIdx.y;
    if (r >= rows) return;
    float* y = Y + (long long)t * yStride + r;
    for (int s = 0; s < k; s++) {
        int e = ids[t * k + s];
        if (e < 0 || e >= experts) {  // the same for the whole warp: a NaN sum, never a wild read
            if (lane == 0) *y = __int_as_float(0x7fc00000);
            return;
        }
    }
    // The slots in groups of MV_SLOTS whose rows are read in one loop, so that their loads overlap (one expert
    // after the other waits for memory k times); each dot in the order of lane_row_dot, then the weighted
    // terms added in slot order.
    int parts = K >> 4;
    float total = 0.f;
    if (RawQ4K<F>::value && aligned16(W, expertStride, rowBytes)) {
        // as below, with every slot's loads issued before the first is decoded
        for (int s0 = 0; s0 < k; s0 += MV_SLOTS) {
            float part[MV_SLOTS];
#pragma unroll
            for (int j = 0; j < MV_SLOTS; j++) part[j] = 0.f;
            for (int i = lane; i < parts; i += WARP) {
                long long b = (long long)r * rowBytes + (long long)(i >> 4) * Q4_K::BYTES;
#pragma unroll
                for (int j0 = 0; j0 < MV_SLOTS; j0 += Q4K_UNROLL) {  // Q4K_UNROLL slots' loads at a time: no spills
                    Q4KRaw raw[Q4K_UNROLL];
#pragma unroll
                    for (int j = j0; j < j0 + Q4K_UNROLL; j++) {
                        if (s0 + j < k) {
                            raw[j - j0] = q4k_load(W + (long long)ids[t * k + s0 + j] * expertStride + b, i & 15);
                        }
                    }
#pragma unroll
                    for (int j = j0; j < j0 + Q4K_UNROLL; j++) {
                        int a = t * k + s0 + j;
                        if (s0 + j < k) {
                            float v[16];
                            q4k_decode(raw[j - j0], i & 15, v);
                            part[j] = dot16(v, H + (long long)a * hStride + 16 * i, part[j]);
                        }
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < MV_SLOTS; j++) {
                int a = t * k + s0 + j;
                if (s0 + j < k) {
                    float term = __fmul_rn(warp_sum(part[j]), weights[a]);
                    total = s0 + j == 0 ? term : __fadd_rn(total, term);
                }
            }
        }
        if (lane == 0) *y = total;
        return;
    }
    for (int s0 = 0; s0 < k; s0 += MV_SLOTS) {
        float part[MV_SLOTS];
#pragma unroll
        for (int j = 0; j < MV_SLOTS; j++) part[j] = 0.f;
        for (int i = lane; i < parts; i += WARP) {
            long long b = (long long)r * rowBytes + (long long)(i / PARTS) * F::BYTES;
#pragma unroll
            for (int j = 0; j < MV_SLOTS; j++) {
                int a = t * k + s0 + j;
                if (s0 + j < k) {
                    float v[16];
                    F::decode(W + (long long)ids[a] * expertStride + b, i % PARTS, v);
                    part[j] = dot16(v, H + (long long)a * hStride + 16 * i, part[j]);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < MV_SLOTS; j++) {
            int a = t * k + s0 + j;
            if (s0 + j < k) {
                float term = __fmul_rn(warp_sum(part[j]), weights[a]);
                total = s0 + j == 0 ? term : __fadd_rn(total, term);
            }
        }
    }
    if (lane == 0) *y = total;
}

// ---------------------------------------------------------------- matrix-vector with 8-bit activations (decode)

// For Q3_K, Q4_K, Q5_K and Q6_K weights (q8k.cuh): each block rounds its activation row(s) to Q8_K in shared memory
// (as the CPU backend rounds them), then its warps walk rows with a grid stride, so that a large matrix
// (the LM head) does not round the same row tens of thousands of times. A warp's first row's weight loads
// are issued before the rounding, so that their latency overlaps it. The *_rounded_* kernels (one-token steps,
// right after a norm) read rows that add_rms_norm_rounded rounded once instead.

// Units of a row a lane loads at a time before it multiplies them (pairs: half as many per matrix). Two, not four:
// Q3_K's matrix-vector kernel needs 72 registers a thread instead of 115 and Q6_K's 72 instead of 110, so more warps
// stay resident; on an H200 generation went from 274 to 296 tok/s with it (30B shape), and 16 layers of the 235B
// shape from 3534 to 3108 us a token. Their launch bounds ask for 4 blocks of 4 warps (combine: 2 of 8) per
// multiprocessor: without them ptxas gives the deeper Q6_K kernels ~160 registers (the first row's loads are live
// across the rounding).
#define MVQ_UNROLL 2

// Up to UNROLL units of one row, units u0, u0 + 32, ...: loaded together, then multiplied.
template <class U, int UNROLL>
struct RowUnits {
    U w[UNROLL];

    __device__ __forceinline__ void load(const uint8_t* row, int units, int u0) {
#pragma unroll
        for (int i = 0; i < UNROLL; i++) {
            int u = u0 + i * WARP;
            if (u < units) w[i].load(row + (long long)(u >> 3) * U::BYTES, u & 7);
        }
    }

    // acc + the units' products, each scaled by its activation block's d
    __device__ __forceinline__ float dot(int units, int u0, const int8_t* xq, const int* xs, const float* xd,
                                         float acc) const {
#pragma unroll
        for (int i = 0; i < UNROLL; i++) {
            int u = u0 + i * WARP;
            if (u < units) {
                int b = u >> 3;
                acc = fmaf(xd[b], w[i].dot(u & 7, xq + 256 * b, xs + 16 * b), acc);
            }
        }
        return acc;
    }
};

// y[a][r] = dot(W_e row r, x[a / xDiv]) with e = ids[a] (or 0 without ids); blockIdx.y = a, and this block is
// block bx of the gx that walk the rows. Dynamic shared memory: the rounded row (q8k.cuh). PAIR: y = silu(dot(W
// row r, x)) * dot(W2 row r, x), the SwiGLU gate and up rows.
// ROUNDED: the activation rows come rounded already (add_rms_norm_rounded's R, rounded_row_bytes(K) apart) and are
// read where they lie, with no rounding and no barrier in the block; otherwise each block rounds its row into shared
// memory. Separate kernels, so that the rounding ones keep their shared-memory addressing.
template <class F, bool PAIR, bool ROUNDED = false>
__device__ __forceinline__ void mvq_body(const uint8_t* W, const uint8_t* W2, long long expertStride,
                                         long long rowBytes, int K, int rows, int experts, const float* X,
                                         int xStride, int xDiv, const int* ids, float* Y, int yStride, int bx,
                                         int gx, const uint8_t* R = nullptr) {
    using U = typename Q8KUnitOf<F>::type;
    constexpr int UNROLL = PAIR ? MVQ_UNROLL / 2 : MVQ_UNROLL;
    extern __shared__ __align__(16) uint8_t smem[];
    int lane = threadIdx.x & (WARP - 1);
    int a = blockIdx.y;
    const uint8_t* rounded = ROUNDED ? R + (a / xDiv) * rounded_row_bytes(K) : smem;
    const int8_t* xq = reinterpret_cast<const int8_t*>(rounded);
    const int* xs = reinterpret_cast<const int*>(rounded + K);
    const float* xd = reinterpret_cast<const float*>(rounded + K + K / 4);
    if (ids != nullptr) pdl_wait();  // the expert ids come from the kernels before
    int e = ids != nullptr ? ids[a] : 0;
    bool valid = e >= 0 && e < experts;  // a router that saw no finite probability: NaN, never a wild read
    int units = K >> 5;
    long long base = (long long)(valid ? e : 0) * expertStride;
    int r = bx * MV_WARPS + (threadIdx.x >> 5);
    int stride = gx * MV_WARPS;
    RowUnits<U, UNROLL> wg, wu;
    if (valid && r < rows) {
        wg.load(W + base + (long long)r * rowBytes, units, lane);
        if (PAIR) wu.load(W2 + base + (long long)r * rowBytes, units, lane);
    }
    pdl_enter();  // a dense product's first weights are on their way while the kernel before finishes
    if (!ROUNDED) {
        quantize_q8k(X + (long long)(a / xDiv) * xStride, 0, 1, K, reinterpret_cast<int8_t*>(smem),
                     reinterpret_cast<int*>(smem + K), reinterpret_cast<float*>(smem + K + K / 4));
    }
    float* y = Y + (long long)a * yStride;
    for (bool first = true; r < rows; r += stride, first = false) {
        if (!valid) {
            if (lane == 0) y[r] = __int_as_float(0x7fc00000);
            continue;
        }
        long long off = base + (long long)r * rowBytes;
        float g = 0.f;
        float u = 0.f;
        for (int u0 = lane; u0 < units; u0 += UNROLL * WARP) {
            if (!first || u0 != lane) {
                wg.load(W + off, units, u0);
                if (PAIR) wu.load(W2 + off, units, u0);
            }
            g = wg.dot(units, u0, xq, xs, xd, g);
            if (PAIR) u = wu.dot(units, u0, xq, xs, xd, u);
        }
        float acc = PAIR ? __fmul_rn(silu(warp_sum(g)), warp_sum(u)) : warp_sum(g);
        if (lane == 0) y[r] = acc;
    }
}

// Up to three matrices of one format times one input (a layer's query, key and value projections) in one
// launch, so that the small ones do not each pay a launch and a wait: blocks 0..blocks0-1 walk W0's rows,
// the next blocks1 W1's and the rest W2's (rows2 = 0: two matrices); blockIdx.y is the token, as in mvq_.
template <class F, bool ROUNDED = false>
__device__ __forceinline__ void mvq_multi_body(const uint8_t* W0, long long rowBytes0, int rows0, float* Y0,
                                               int yStride0, int blocks0, const uint8_t* W1, long long rowBytes1,
                                               int rows1, float* Y1, int yStride1, int blocks1, const uint8_t* W2,
                                               long long rowBytes2, int rows2, float* Y2, int yStride2, int K,
                                               const float* X, int xStride, const uint8_t* R = nullptr) {
    int b = blockIdx.x;
    if (b < blocks0) {
        mvq_body<F, false, ROUNDED>(W0, nullptr, 0, rowBytes0, K, rows0, 1, X, xStride, 1,
                                                 nullptr, Y0, yStride0, b, blocks0, R);
        return;
    }
    b -= blocks0;
    if (b < blocks1) {
        mvq_body<F, false, ROUNDED>(W1, nullptr, 0, rowBytes1, K, rows1, 1, X, xStride, 1,
                                                 nullptr, Y1, yStride1, b, blocks1, R);
        return;
    }
    b -= blocks1;
    int blocks2 = gridDim.x - blocks0 - blocks1;
    mvq_body<F, false, ROUNDED>(W2, nullptr, 0, rowBytes2, K, rows2, 1, X, xStride, 1,
                                             nullptr, Y2, yStride2, b, blocks2, R);
}

#define MVQ_COMBINE_WARPS 8

// out[t][r] = sum over slots s of weight[t*k+s] * dot(W_e row r, h[t*k+s]), e = ids[t*k+s]: the expert down
// projections and the weighted sum of a token's experts in one pass; blockIdx.y = t, MVQ_COMBINE_WARPS warps.
// The lanes take the (slot, unit) pairs of a row in turn, so that all 32 are busy for short rows (768 values
// are 24 units). Dynamic shared memory: the k rounded rows (q8k.cuh). UNROLL: the (slot, unit) pairs a lane loads
// at a time: 2, with fewer registers than 4, as the other matrix-vector kernels since version 11 (H200, run 19: the
// 235B shape's down projection 34.3 -> 26.7 us a layer; the 30B shape level).
// ROUNDED: the k rows come rounded already, each in its own row of R (round_rows, add_rms_norm_rounded's layout), and
// are read where they lie instead of rounded into shared memory by every block (mvq_combine_rounded_*,
// the default for decode steps since run 19; -Dmoe4j.cuda.combineRoundsOnce=false turns it off).
template <class F, int UNROLL, bool ROUNDED = false>
__device__ __forceinline__ void mvq_combine_body(const uint8_t* W, long long expertStride, long long rowBytes,
                                                 int K, int rows, int experts, const float* H, int hStride,
                                                 const int* ids, const float* weights, int k, float* Y,
                                                 int yStride, const uint8_t* R = nullptr) {
    using U = typename Q8KUnitOf<F>::type;
    extern __shared__ __align__(16) uint8_t smem[];
    int8_t* xq = reinterpret_cast<int8_t*>(smem);
    int* xs = reinterpret_cast<int*>(smem + k * K);
    float* xd = reinterpret_cast<float*>(smem + k * K + k * K / 4);
    long long rrb = rounded_row_bytes(K);
    pdl_enter();  // the expert ids come from the kernels before
    int lane = threadIdx.x & (WARP - 1);
    int t = blockIdx.y;
    const int* tid = ids + t * k;
    const float* tw = weights + t * k;
    bool valid = true;
    for (int s = 0; s < k; s++) valid &= tid[s] >= 0 && tid[s] < experts;
    int units = K >> 5;
    int total = k * units;
    int r = blockIdx.x * MVQ_COMBINE_WARPS + (threadIdx.x >> 5);
    int stride = gridDim.x * MVQ_COMBINE_WARPS;
    U w[UNROLL];
    int slot[UNROLL];
    int unit[UNROLL];
    // f / units as the high word of f times ceil(2^32 / units): exact for f < 2^32 / units (the product's excess,
    // under f / 2^32, stays below the 1 / units that separates f / units from the next integer), one multiply where
    // a division by the run-time `units` took about 16 instructions a pair
    unsigned perUnit = 0xFFFFFFFFu / (unsigned)units + 1u;
    // the (slot, unit) pairs f0, f0 + 32, ... of row `row`: which they are, and their weights' loads
    auto load = [&](int f0, int row) {
#pragma unroll
        for (int i = 0; i < UNROLL; i++) {
            int f = f0 + i * WARP;
            slot[i] = (int)__umulhi((unsigned)f, perUnit);
            unit[i] = f - slot[i] * units;
            if (f < total) {
                w[i].load(W + (long long)tid[slot[i]] * expertStride + (long long)row * rowBytes
                          + (long long)(unit[i] >> 3) * U::BYTES, unit[i] & 7);
            }
        }
    };
    if (valid && r < rows) load(lane, r);
    if (!ROUNDED) quantize_q8k(H + (long long)t * k * hStride, hStride, k, K, xq, xs, xd);
    float* y = Y + (long long)t * yStride;
    for (bool first = true; r < rows; r += stride, first = false) {
        if (!valid) {
            if (lane == 0) y[r] = __int_as_float(0x7fc00000);
            continue;
        }
        float acc = 0.f;
        for (int f0 = lane; f0 < total; f0 += UNROLL * WARP) {
            if (!first || f0 != lane) load(f0, r);
#pragma unroll
            for (int i = 0; i < UNROLL; i++) {
                if (f0 + i * WARP < total) {
                    int s = slot[i];
                    if (ROUNDED) {  // row t*k + s of R, its 256-value block unit >> 3
                        int bl = unit[i] >> 3;
                        const uint8_t* row = R + (long long)(t * k + s) * rrb;
                        float scale = __fmul_rn(tw[s], reinterpret_cast<const float*>(row + K + K / 4)[bl]);
                        acc = fmaf(scale, w[i].dot(unit[i] & 7, reinterpret_cast<const int8_t*>(row) + 256 * bl,
                                                   reinterpret_cast<const int*>(row + K) + 16 * bl), acc);
                    } else {
                        int b = s * (K >> 8) + (unit[i] >> 3);
                        float scale = __fmul_rn(tw[s], xd[b]);
                        acc = fmaf(scale, w[i].dot(unit[i] & 7, xq + 256 * b, xs + 16 * b), acc);
                    }
                }
            }
        }
        acc = warp_sum(acc);
        if (lane == 0) y[r] = acc;
    }
}

// Y[t] = X[t] rounded to Q8_K and decoded again (d * q, as the CPU's ActivationRounding.Q8_K), for the batched
// products of the formats whose matrix-vector kernels round so: a prompt then sees the same activations as
// one-token steps. `width` a multiple of 256; may run in place. 16 threads per 256-value block.
extern "C" __global__ void __launch_bounds__(256)
    round_q8k(const float* X, int xStride, int rows, int width, float* Y, int yStride) {
    pdl_enter();
    int perRow = width >> 4;
    long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= (long long)rows * perRow) return;  // whole half warps: perRow is a multiple of 16
    int row = (int)(g / perRow);
    int col = 16 * (int)(g - (long long)row * perRow);
    unsigned half = 0xFFFFu << (threadIdx.x & 16);
    Q8KGroup r = round_q8k_group(X + (long long)row * xStride + col, half);
    float4* y4 = reinterpret_cast<float4*>(Y + (long long)row * yStride + col);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        y4[i] = make_float4(__fmul_rn(r.d, (float)r.q[4 * i]), __fmul_rn(r.d, (float)r.q[4 * i + 1]),
                            __fmul_rn(r.d, (float)r.q[4 * i + 2]), __fmul_rn(r.d, (float)r.q[4 * i + 3]));
    }
}

// The experts' gate and up products reading rows rounded once (one-token steps), compiled for BLOCKS blocks a
// multiprocessor.
#define MVQ_PAIR_ROUNDED_KERNEL(KERNEL, F, BLOCKS)                                                                   \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, BLOCKS)                                            \
        KERNEL(const uint8_t* W, const uint8_t* W2, long long expertStride, long long rowBytes, int K, int rows,     \
               int experts, const uint8_t* R, int xDiv, const int* ids, float* Y, int yStride) {                    \
        mvq_body<F, true, true>(W, W2, expertStride, rowBytes, K, rows, experts, nullptr, 0, xDiv, ids, Y,           \
                                yStride, blockIdx.x, gridDim.x, R);                                                  \
    }

#define Q8K_KERNELS(NAME, F)                                                                                         \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, 4)                                                 \
        mvq_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows, int experts,       \
                   const float* X, int xStride, int xDiv, const int* ids, float* Y, int yStride) {                   \
        mvq_body<F, false>(W, nullptr, expertStride, rowBytes, K, rows, experts, X, xStride, xDiv, ids,              \
                           Y, yStride, blockIdx.x, gridDim.x);                                                       \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, 4)                                                 \
        mvq_rounded_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows,            \
                           int experts, const uint8_t* R, int xDiv, float* Y, int yStride) {                         \
        mvq_body<F, false, true>(W, nullptr, expertStride, rowBytes, K, rows, experts, nullptr, 0, xDiv,             \
                                 nullptr, Y, yStride, blockIdx.x, gridDim.x, R);                                     \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, 4)                                                 \
        mvq_multi_##NAME(const uint8_t* W0, long long rowBytes0, int rows0, float* Y0, int yStride0,                 \
                         int blocks0, const uint8_t* W1, long long rowBytes1, int rows1, float* Y1,                  \
                         int yStride1, int blocks1, const uint8_t* W2, long long rowBytes2, int rows2,               \
                         float* Y2, int yStride2, int K, const float* X, int xStride) {                              \
        mvq_multi_body<F, false>(W0, rowBytes0, rows0, Y0, yStride0, blocks0, W1, rowBytes1, rows1, Y1, yStride1,    \
                                 blocks1, W2, rowBytes2, rows2, Y2, yStride2, K, X, xStride);                        \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, 4)                                                 \
        mvq_multi_rounded_##NAME(const uint8_t* W0, long long rowBytes0, int rows0, float* Y0, int yStride0,         \
                                 int blocks0, const uint8_t* W1, long long rowBytes1, int rows1, float* Y1,          \
                                 int yStride1, int blocks1, const uint8_t* W2, long long rowBytes2, int rows2,       \
                                 float* Y2, int yStride2, int K, const uint8_t* R) {                                 \
        mvq_multi_body<F, true>(W0, rowBytes0, rows0, Y0, yStride0, blocks0, W1, rowBytes1, rows1, Y1, yStride1,     \
                                blocks1, W2, rowBytes2, rows2, Y2, yStride2, K, nullptr, 0, R);                      \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP, 4)                                                 \
        mvq_pair_##NAME(const uint8_t* W, const uint8_t* W2, long long expertStride, long long rowBytes, int K,      \
                        int rows, int experts, const float* X, int xStride, int xDiv, const int* ids, float* Y,      \
                        int yStride) {                                                                               \
        mvq_body<F, true, false>(W, W2, expertStride, rowBytes, K, rows, experts, X, xStride, xDiv, ids, Y,          \
                                 yStride, blockIdx.x, gridDim.x);                                                    \
    }                                                                                                                \
    MVQ_PAIR_ROUNDED_KERNEL(mvq_pair_rounded_##NAME, F, 4)                                                           \
    /* the same with 8 blocks a multiprocessor asked of ptxas (-Dmoe4j.cuda.pairOccupancy=8): at most 64 registers */ \
    MVQ_PAIR_ROUNDED_KERNEL(mvq_pair_rounded_o8_##NAME, F, 8)                                                        \
    extern "C" __global__ void __launch_bounds__(MVQ_COMBINE_WARPS * WARP, 2)                                        \
        mvq_combine_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows,            \
                           int experts, const float* H, int hStride, const int* ids, const float* weights,           \
                           int k, float* Y, int yStride) {                                                           \
        mvq_combine_body<F, 2>(W, expertStride, rowBytes, K, rows, experts, H, hStride, ids, weights, k, Y,          \
                               yStride);                                                                             \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MVQ_COMBINE_WARPS * WARP, 2)                                        \
        mvq_combine_rounded_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows,    \
                                   int experts, const uint8_t* R, const int* ids, const float* weights, int k,       \
                                   float* Y, int yStride) {                                                          \
        mvq_combine_body<F, 2, true>(W, expertStride, rowBytes, K, rows, experts, nullptr, 0, ids, weights, k, Y,    \
                                     yStride, R);                                                                    \
    }

Q8K_KERNELS(q3_k, Q3_K)
Q8K_KERNELS(q3_kp, Q3_KP)
Q8K_KERNELS(q4_k, Q4_K)
Q8K_KERNELS(q5_k, Q5_K)
Q8K_KERNELS(q6_k, Q6_K)
Q8K_KERNELS(q6_kp, Q6_KP)

// ---------------------------------------------------------------- tiled matrix-matrix (prompt batches)

#define MM_BM 128
#define MM_BN 64
#define MM_BK 32
#define MM_THREADS 256

// The token rows of blockIdx.y's tile of a batched product: (expert, first row, row count) as moe_group wrote them
// in tiles, or, without tiles, rows y * tokens .. of the whole batch of n with expert 0.
struct TokenTile {
    int expert, first, count;
};

__device__ __forceinline__ TokenTile token_tile(const int* tiles, int tokens, int n) {
    if (tiles != nullptr) {
        return {tiles[3 * blockIdx.y], tiles[3 * blockIdx.y + 1], tiles[3 * blockIdx.y + 2]};
    }
    int first = blockIdx.y * tokens;
    return {0, first, min(tokens, n - first)};
}

// Y[t][r] = dot(W_e row r, X[t]) for a tile of 128 rows and up to 64 token rows. Without tiles, tile y
// covers rows y*64.. of X and Y with expert 0; with tiles, tile y is (expert, first row, row count) as
// written by moe_group. Each step dequantizes a 128 x 32 weight tile into shared memory (transposed, so
// a thread reads its 8 rows as two float4) next to the 64 x 32 activation tile; each thread accumulates
// 8 rows x 4 tokens.
template <class F>
__device__ __forceinline__ void mm_body(const uint8_t* W, long long expertStride, long long rowBytes, int K,
                                        int rows, int experts, const float* X, int xStride, float* Y,
                                        int yStride, int n, const int* tiles) {
    __shared__ __align__(16) float Ws[MM_BK][MM_BM + 4];
    __shared__ __align__(16) float Xs[MM_BK][MM_BN + 4];
    constexpr int PARTS = F::QK / 16;
    int tid = threadIdx.x;
    int row0 = blockIdx.x * MM_BM;
    TokenTile tile = token_tile(tiles, MM_BN, n);
    int e = tile.expert, t0 = tile.first, count = tile.count;
    if (count <= 0) return;
    int tx = tid & 15;  // rows tx*8 .. tx*8+7
    int ty = tid >> 4;  // tokens ty*4 .. ty*4+3
    if (e < 0 || e >= experts) {
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) {
                int r = row0 + tx * 8 + i, tok = ty * 4 + j;
                if (r < rows && tok < count) Y[(long long)(t0 + tok) * yStride + r] = __int_as_float(0x7fc00000);
            }
        return;
    }
    const uint8_t* Wb = W + (long long)e * expertStride;
    int parts = K >> 4;
    int lr = tid & (MM_BM - 1);  // the row this thread decodes
    int lh = tid >> 7;           // and which of the two 16-value parts of the step
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < K; k0 += MM_BK) {
        float v[16];
        int part = (k0 >> 4) + lh;
        if (row0 + lr < rows && part < parts) {
            F::decode(Wb + (long long)(row0 + lr) * rowBytes + (long long)(part / PARTS) * F::BYTES, part % PARTS, v);
        } else {
#pragma unroll
            for (int l = 0; l < 16; l++) v[l] = 0.f;
        }
#pragma unroll
        for (int l = 0; l < 16; l++) Ws[16 * lh + l][lr] = v[l];
        for (int q = tid; q < MM_BN * MM_BK / 4; q += MM_THREADS) {
            int tok = q >> 3;
            int c = (q & 7) * 4;
            float4 xv = make_float4(0.f, 0.f, 0.f, 0.f);
            if (tok < count && k0 + c < K) {
                xv = *reinterpret_cast<const float4*>(X + (long long)(t0 + tok) * xStride + k0 + c);
            }
            Xs[c][tok] = xv.x;
            Xs[c + 1][tok] = xv.y;
            Xs[c + 2][tok] = xv.z;
            Xs[c + 3][tok] = xv.w;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < MM_BK; kk++) {
            float4 a0 = *reinterpret_cast<const float4*>(&Ws[kk][tx * 8]);
            float4 a1 = *reinterpret_cast<const float4*>(&Ws[kk][tx * 8 + 4]);
            float4 b = *reinterpret_cast<const float4*>(&Xs[kk][ty * 4]);
            float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            float bb[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], bb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int tok = ty * 4 + j;
        if (tok >= count) continue;
        float* y = Y + (long long)(t0 + tok) * yStride;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int r = row0 + tx * 8 + i;
            if (r < rows) y[r] = acc[i][j];
        }
    }
}

// ---------------------------------------------------------------- tensor-core products (prompt batches)

// Activations of `rows` rows rounded to Q8_K into global memory for mmq_*: XQ (K int8 a row), XD (K/256 floats
// a row), XS (the sum of every 16 q, K/16 ints a row). 16 threads per 256-value block; K a multiple of 256.
extern "C" __global__ void __launch_bounds__(256)
    quantize_q8k_rows(const float* X, int xStride, int rows, int K, int8_t* XQ, float* XD, int* XS) {
    pdl_enter();
    int perRow = K >> 4;
    long long g = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= (long long)rows * perRow) return;  // whole half warps: perRow is a multiple of 16
    int row = (int)(g / perRow);
    int col = 16 * (int)(g - (long long)row * perRow);
    unsigned half = 0xFFFFu << (threadIdx.x & 16);
    Q8KGroup r = round_q8k_group(X + (long long)row * xStride + col, half);
    XS[(long long)row * perRow + (col >> 4)] = store_q8k_group(r, XQ + (long long)row * K + col);
    if ((col & 255) == 0) XD[(long long)row * (K >> 8) + (col >> 8)] = r.d;
}

#define MMQ_ROWS 64
#define MMQ_TOKENS 64
#define MMQ_THREADS 256

// One int8 product on the tensor cores with the fragment layout the PTX ISA fixes for mma.m16n8k16 (.s8): lane
// l holds a0 = A[l/4][4(l%4) .. +3] and a1 = the same columns of row l/4 + 8, b = B[4(l%4) .. +3][l/4] (column
// l/4 of the 16x8 B), and gets c0, c1 = C[l/4][2(l%4) + 0, 1] and c2, c3 = C[l/4 + 8][same columns]. Knowing
// where each product lands lets the scales apply in registers, where WMMA's opaque fragments go through shared
// memory.
__device__ __forceinline__ void mma_s8_16x8x16(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                 "{%7, %7, %7, %7};"
                 : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
                 : "r"(a0), "r"(a1), "r"(b), "r"(0));
}

// Y[t][r] = dot(W_e row r, x[t]) for a tile of 64 weight rows and up to 64 token rows, x rounded to Q8_K
// (quantize_q8k_rows), tiles as mm_body's. Each step unpacks half a super-block (128 values) of the 64 rows to
// int8 and copies the tokens' 128 int8 into shared memory, group of 16 values after group; each warp then takes
// 32 rows x 16 tokens of the tile through the eight groups: per group two 16-row by two 8-token int8 products on
// the tensor cores (mma_s8_16x8x16), each added to its float accumulators in registers as scale(row, group) *
// d(token) * product - min(row, group) * d(token) * sum(token, group). (The WMMA version of this kernel, whose
// opaque fragments went through shared memory to be scaled, processed prompts at 0.58x of this one's speed.)
template <class F>
__device__ __forceinline__ void mmq_body(const uint8_t* W, long long expertStride, long long rowBytes, int K,
                                         int rows, int experts, const int8_t* XQ, const float* XD, const int* XS,
                                         float* Y, int yStride, int n, const int* tiles) {
    using U = typename MmqHalfOf<F>::type;
    __shared__ __align__(16) int8_t As[8][MMQ_ROWS][16];
    __shared__ __align__(16) int8_t Bs[8][MMQ_TOKENS][16];
    __shared__ float scale[8][MMQ_ROWS];  // group-major: the 8 rows a warp reads at once lie in 8 banks
    __shared__ float minimum[8][MMQ_ROWS];
    __shared__ int sums[8][MMQ_TOKENS];
    __shared__ float xd[MMQ_TOKENS];
    int tid = threadIdx.x;
    int lane = tid & (WARP - 1);
    int warp = tid >> 5;
    int gid = lane >> 2;  // the fragments' row (A, C) or column (B) of this lane
    int tig = lane & 3;
    int row0 = blockIdx.x * MMQ_ROWS;
    TokenTile tile = token_tile(tiles, MMQ_TOKENS, n);
    int e = tile.expert, t0 = tile.first, count = tile.count;
    if (count <= 0) return;
    int wr = (warp & 1) * 32;   // this warp's rows wr .. wr + 31 of the tile
    int wt = (warp >> 1) * 16;  // and tokens wt .. wt + 15
    if (e < 0 || e >= experts) {
        for (int i = tid; i < MMQ_ROWS * MMQ_TOKENS; i += MMQ_THREADS) {
            int r = row0 + i % MMQ_ROWS, tok = i / MMQ_ROWS;
            if (r < rows && tok < count) Y[(long long)(t0 + tok) * yStride + r] = __int_as_float(0x7fc00000);
        }
        return;
    }
    const uint8_t* Wb = W + (long long)e * expertStride;
    float acc[2][2][4];  // [16-row half][8-token half][c0..c3]
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[m][t][i] = 0.f;
    int unpackRow = tid >> 2;  // the row this thread unpacks, and which quarter of its half block
    int part = tid & 3;
    int copyTok = tid >> 2;    // the token whose 32 int8 this thread copies
    int quarter = tid & 3;
    for (int k0 = 0; k0 < K; k0 += 128) {
        __syncthreads();  // the previous step's products are done with the tiles
        int block = k0 >> 8;
        int h = (k0 >> 7) & 1;
        if (row0 + unpackRow < rows) {
            HalfUnpacked u = U::unpack(Wb + (long long)(row0 + unpackRow) * rowBytes + (long long)block * U::BYTES, h,
                                       part);
            *reinterpret_cast<uint4*>(&As[u.gLo][unpackRow][0]) = u.lo;
            *reinterpret_cast<uint4*>(&As[u.gHi][unpackRow][0]) = u.hi;
            scale[u.gLo][unpackRow] = u.scaleLo;
            minimum[u.gLo][unpackRow] = u.minLo;
            scale[u.gHi][unpackRow] = u.scaleHi;
            minimum[u.gHi][unpackRow] = u.minHi;
        } else {
#pragma unroll
            for (int g = 2 * part; g < 2 * part + 2; g++) {
                *reinterpret_cast<uint4*>(&As[g][unpackRow][0]) = make_uint4(0, 0, 0, 0);
                scale[g][unpackRow] = 0.f;
                minimum[g][unpackRow] = 0.f;
            }
        }
        if (copyTok < count) {
            const int8_t* xq = XQ + (long long)(t0 + copyTok) * K + k0 + 32 * quarter;
            *reinterpret_cast<uint4*>(&Bs[2 * quarter][copyTok][0]) = *reinterpret_cast<const uint4*>(xq);
            *reinterpret_cast<uint4*>(&Bs[2 * quarter + 1][copyTok][0]) = *reinterpret_cast<const uint4*>(xq + 16);
            const int* xs = XS + (long long)(t0 + copyTok) * (K >> 4) + (k0 >> 4) + 2 * quarter;
            sums[2 * quarter][copyTok] = xs[0];
            sums[2 * quarter + 1][copyTok] = xs[1];
            if (quarter == 0) xd[copyTok] = XD[(long long)(t0 + copyTok) * (K >> 8) + block];
        } else {
            *reinterpret_cast<uint4*>(&Bs[2 * quarter][copyTok][0]) = make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4*>(&Bs[2 * quarter + 1][copyTok][0]) = make_uint4(0, 0, 0, 0);
            sums[2 * quarter][copyTok] = 0;
            sums[2 * quarter + 1][copyTok] = 0;
            if (quarter == 0) xd[copyTok] = 0.f;
        }
        __syncthreads();
        float dTok[2][2];  // d of tokens wt + 8t + 2tig + j
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int j = 0; j < 2; j++) dTok[t][j] = xd[wt + 8 * t + 2 * tig + j];
#pragma unroll
        for (int g = 0; g < 8; g++) {
            uint32_t a[2][2];
            float sc[2][2], mn[2][2];
#pragma unroll
            for (int m = 0; m < 2; m++)
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    int r = wr + 16 * m + gid + 8 * i;
                    a[m][i] = *reinterpret_cast<const uint32_t*>(&As[g][r][4 * tig]);
                    sc[m][i] = scale[g][r];
                    mn[m][i] = minimum[g][r];
                }
            uint32_t b[2];
            float sm[2][2];
#pragma unroll
            for (int t = 0; t < 2; t++) {
                b[t] = *reinterpret_cast<const uint32_t*>(&Bs[g][wt + 8 * t + gid][4 * tig]);
#pragma unroll
                for (int j = 0; j < 2; j++) sm[t][j] = (float)sums[g][wt + 8 * t + 2 * tig + j];
            }
#pragma unroll
            for (int m = 0; m < 2; m++)
#pragma unroll
                for (int t = 0; t < 2; t++) {
                    int c[4];
                    mma_s8_16x8x16(c, a[m][0], a[m][1], b[t]);
#pragma unroll
                    for (int i = 0; i < 4; i++) {  // c[i]: row gid + 8(i/2), token 2tig + i%2
                        float term = sc[m][i >> 1] * (float)c[i] - mn[m][i >> 1] * sm[t][i & 1];
                        acc[m][t][i] = fmaf(dTok[t][i & 1], term, acc[m][t][i]);
                    }
                }
        }
    }
#pragma unroll
    for (int m = 0; m < 2; m++)
#pragma unroll
        for (int t = 0; t < 2; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int r = row0 + wr + 16 * m + gid + 8 * (i >> 1);
                int tok = wt + 8 * t + 2 * tig + (i & 1);
                if (r < rows && tok < count) Y[(long long)(t0 + tok) * yStride + r] = acc[m][t][i];
            }
}

#define MMQ_KERNEL(NAME, F)                                                                                          \
    extern "C" __global__ void __launch_bounds__(MMQ_THREADS)                                                        \
        mmq_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows, int experts,       \
                   const int8_t* XQ, const float* XD, const int* XS, float* Y, int yStride, int n,                   \
                   const int* tiles) {                                                                               \
        pdl_enter();                                                                                                 \
        mmq_body<F>(W, expertStride, rowBytes, K, rows, experts, XQ, XD, XS, Y, yStride, n, tiles);                  \
    }

MMQ_KERNEL(q3_k, Q3_K)
MMQ_KERNEL(q3_kp, Q3_KP)
MMQ_KERNEL(q4_k, Q4_K)
MMQ_KERNEL(q5_k, Q5_K)
MMQ_KERNEL(q6_k, Q6_K)
MMQ_KERNEL(q6_kp, Q6_KP)

// ---------------------------------------------------------------- row lookup (embedding)

// Y[t] = row ids[t] of W, decoded; a row of NaN for an id outside 0..rows-1 (the host checks ids, but in a
// replayed decode graph the id comes from device memory).
template <class F>
__device__ __forceinline__ void rows_body(const uint8_t* W, long long rowBytes, int K, int rows, const int* ids,
                                          float* Y, int yStride) {
    constexpr int PARTS = F::QK / 16;
    int t = blockIdx.x;
    int id = ids[t];
    float* y = Y + (long long)t * yStride;
    if (id < 0 || id >= rows) {
        for (int i = threadIdx.x; i < K; i += blockDim.x) y[i] = __int_as_float(0x7fc00000);
        return;
    }
    const uint8_t* row = W + (long long)id * rowBytes;
    for (int i = threadIdx.x; i < (K >> 4); i += blockDim.x) {
        float v[16];
        F::decode(row + (long long)(i / PARTS) * F::BYTES, i % PARTS, v);
        float4* y4 = reinterpret_cast<float4*>(y + 16 * i);
#pragma unroll
        for (int q = 0; q < 4; q++) y4[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    }
}

#define FORMAT_KERNELS(NAME, F)                                                                                  \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP)                                                \
        mv_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows, int experts,   \
                  const float* X, int xStride, int xDiv, const int* ids, float* Y, int yStride) {               \
        pdl_enter();                                                                                           \
        mv_body<F, false>(W, nullptr, expertStride, rowBytes, K, rows, experts, X, xStride, xDiv, ids, Y,      \
                          yStride);                                                                              \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP)                                                \
        mv_pair_##NAME(const uint8_t* W, const uint8_t* W2, long long expertStride, long long rowBytes, int K,  \
                       int rows, int experts, const float* X, int xStride, int xDiv, const int* ids, float* Y,  \
                       int yStride) {                                                                            \
        pdl_enter();                                                                                           \
        mv_body<F, true>(W, W2, expertStride, rowBytes, K, rows, experts, X, xStride, xDiv, ids, Y, yStride);  \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP)                                                \
        mv_combine_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows,        \
                          int experts, const float* H, int hStride, const int* ids, const float* weights, int k, \
                          float* Y, int yStride) {                                                               \
        pdl_enter();                                                                                           \
        mv_combine_body<F>(W, expertStride, rowBytes, K, rows, experts, H, hStride, ids, weights, k, Y,        \
                           yStride);                                                                             \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(MM_THREADS)                                                     \
        mm_##NAME(const uint8_t* W, long long expertStride, long long rowBytes, int K, int rows, int experts,   \
                  const float* X, int xStride, float* Y, int yStride, int n, const int* tiles) {                \
        pdl_enter();                                                                                           \
        mm_body<F>(W, expertStride, rowBytes, K, rows, experts, X, xStride, Y, yStride, n, tiles);             \
    }                                                                                                            \
    extern "C" __global__ void rows_##NAME(const uint8_t* W, long long rowBytes, int K, int rows, const int* ids, \
                                           float* Y, int yStride) {                                              \
        pdl_enter();                                                                                             \
        rows_body<F>(W, rowBytes, K, rows, ids, Y, yStride);                                                     \
    }

FORMAT_KERNELS(f32, F32)
FORMAT_KERNELS(f16, F16)
FORMAT_KERNELS(bf16, BF16)
FORMAT_KERNELS(q4_0, Q4_0)
FORMAT_KERNELS(q4_1, Q4_1)
FORMAT_KERNELS(q5_0, Q5_0)
FORMAT_KERNELS(q5_1, Q5_1)
FORMAT_KERNELS(q8_0, Q8_0)
FORMAT_KERNELS(q2_k, Q2_K)
FORMAT_KERNELS(q3_k, Q3_K)
FORMAT_KERNELS(q3_kp, Q3_KP)
FORMAT_KERNELS(q4_k, Q4_K)
FORMAT_KERNELS(q5_k, Q5_K)
FORMAT_KERNELS(q6_k, Q6_K)
FORMAT_KERNELS(q6_kp, Q6_KP)
FORMAT_KERNELS(iq4_nl, IQ4_NL)
FORMAT_KERNELS(iq4_xs, IQ4_XS)

// ---------------------------------------------------------------- normalization, RoPE, element-wise

// The norms stage up to NORM_PER of a thread's values (and gains) in registers, so that all their loads are
// in flight at once: in a plain loop every load waits for the previous element's store, which the compiler
// cannot prove to be elsewhere (y may be x). Longer rows take the plain loop; the arithmetic is the same.
#define NORM_PER 16

// 1 / sqrt(mean + eps) of a group of `group` values, from each thread's double sum of squares; every thread
// of the block (of at most 256) gets it. The warps' sums are added in warp order, so the result depends
// only on the block size, not on which kernel asks.
__device__ __forceinline__ float block_rms_scale(double sum, int group, float eps) {
    __shared__ double partial[8];
    __shared__ float scale;
    sum = warp_sum(sum);
    int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) partial[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += partial[w];
        float mean = (float)(total / group);
        scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
    }
    __syncthreads();
    return scale;
}

// One block per group of `group` values (a whole row or one head): x * (1 / sqrt(mean(x^2) + eps)) * gain,
// the sum of squares in double as the CPU backend forms it. out may be x.
extern "C" __global__ void __launch_bounds__(256)
    rms_norm(const float* X, int xStride, const float* gain, int group, int groups, float eps, float* Y, int yStride) {
    prefetch_l2(gain, 4LL * group, threadIdx.x, blockDim.x);
    pdl_enter();
    int t = blockIdx.x / groups;
    int g = blockIdx.x % groups;
    const float* x = X + (long long)t * xStride + (long long)g * group;
    float* y = Y + (long long)t * yStride + (long long)g * group;
    double sum = 0.0;
    if (group <= NORM_PER * (int)blockDim.x) {  // the same for the whole block
        float v[NORM_PER];
        float gv[NORM_PER];
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < group) {
                v[j] = x[i];
                gv[j] = gain[i];
            }
        }
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            if (threadIdx.x + j * blockDim.x < group) sum += (double)__fmul_rn(v[j], v[j]);
        }
        float s = block_rms_scale(sum, group, eps);
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < group) y[i] = __fmul_rn(__fmul_rn(v[j], s), gv[j]);
        }
        return;
    }
    for (int i = threadIdx.x; i < group; i += blockDim.x) {
        float v = x[i];
        sum += (double)__fmul_rn(v, v);
    }
    float s = block_rms_scale(sum, group, eps);
    for (int i = threadIdx.x; i < group; i += blockDim.x) y[i] = __fmul_rn(__fmul_rn(x[i], s), gain[i]);
}

// Row y of `width` values rounded to Q8_K into r, laid out as the Q8_K matrix-vector kernels keep a row in
// shared memory (q8k.cuh), by the whole block after it stored y: those kernels then read it instead of rounding
// it again in every block (-Dmoe4j.cuda.roundOnce). The same rounding, so the same integers.
__device__ __forceinline__ void round_row_once(const float* y, int width, uint8_t* r) {
    __syncthreads();  // y, stored by the block's threads
    quantize_q8k(y, 0, 1, width, reinterpret_cast<int8_t*>(r), reinterpret_cast<int*>(r + width),
                 reinterpret_cast<float*>(r + width + width / 4));
}

// acc += x, then y = rms_norm(acc) over rows of `width`, one block per row: the residual add and the next
// norm in one pass, with the results of add_inplace and rms_norm (same arithmetic, same block size). ROUND (width a
// multiple of 256): row t of y also rounded to Q8_K at R + t * rounded_row_bytes(width), read back from y (staging
// the normed row in shared memory instead measured no faster on an H200, run 19).
template <bool ROUND>
__device__ __forceinline__ void add_rms_norm_body(float* A, int aStride, const float* X, int xStride,
                                                  const float* gain, int width, float eps, float* Y, int yStride,
                                                  uint8_t* R) {
    int t = blockIdx.x;
    float* a = A + (long long)t * aStride;
    const float* x = X + (long long)t * xStride;
    float* y = Y + (long long)t * yStride;
    double sum = 0.0;
    if (width <= NORM_PER * (int)blockDim.x) {  // the same for the whole block
        float v[NORM_PER];
        float gv[NORM_PER];
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < width) {
                v[j] = __fadd_rn(a[i], x[i]);
                gv[j] = gain[i];
            }
        }
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < width) {
                a[i] = v[j];
                sum += (double)__fmul_rn(v[j], v[j]);
            }
        }
        float s = block_rms_scale(sum, width, eps);
#pragma unroll
        for (int j = 0; j < NORM_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < width) {
                y[i] = __fmul_rn(__fmul_rn(v[j], s), gv[j]);
            }
        }
    } else {
        for (int i = threadIdx.x; i < width; i += blockDim.x) {
            float v = __fadd_rn(a[i], x[i]);
            a[i] = v;
            sum += (double)__fmul_rn(v, v);
        }
        float s = block_rms_scale(sum, width, eps);
        for (int i = threadIdx.x; i < width; i += blockDim.x) {
            y[i] = __fmul_rn(__fmul_rn(a[i], s), gain[i]);
        }
    }
    if (ROUND) round_row_once(y, width, R + t * rounded_row_bytes(width));
}

extern "C" __global__ void __launch_bounds__(256)
    add_rms_norm(float* A, int aStride, const float* X, int xStride, const float* gain, int width, float eps, float* Y,
                 int yStride) {
    prefetch_l2(gain, 4LL * width, threadIdx.x, blockDim.x);
    pdl_enter();
    add_rms_norm_body<false>(A, aStride, X, xStride, gain, width, eps, Y, yStride, nullptr);
}

extern "C" __global__ void __launch_bounds__(256)
    add_rms_norm_rounded(float* A, int aStride, const float* X, int xStride, const float* gain, int width, float eps,
                         float* Y, int yStride, uint8_t* R) {
    prefetch_l2(gain, 4LL * width, threadIdx.x, blockDim.x);
    pdl_enter();
    add_rms_norm_body<true>(A, aStride, X, xStride, gain, width, eps, Y, yStride, R);
}

// Row blockIdx.x of X (`width` values, a multiple of 256) rounded to Q8_K into its own row of R, laid out as
// add_rms_norm_rounded lays out a row and with the same rounding: the experts' SwiGLU rows of a small batch (the direct
// path's at most 32 assignments), once, for mvq_combine_rounded_* (-Dmoe4j.cuda.combineRoundsOnce, on by default).
extern "C" __global__ void __launch_bounds__(256) round_rows(const float* X, int xStride, int width, uint8_t* R) {
    pdl_enter();
    round_row_once(X + (long long)blockIdx.x * xStride, width, R + blockIdx.x * rounded_row_bytes(width));
}

// The first position of a batch: startPos, plus *posDev when given (a replayed decode graph reads the
// position from device memory, so one recording serves every position).
__device__ __forceinline__ int first_position(int startPos, const int* posDev) {
    return posDev != nullptr ? startPos + *posDev : startPos;
}

// cos and sin of the RoPE angles of pairs 0..half-1 at position pos into cs/sn (shared), by the whole
// block. The angle of pair j starts at the position and is multiplied by thetaScale j times in float, as
// moe4j.kernels.Rope.angles does; cos and sin are taken in double and rounded, like java.lang.Math's.
__device__ __forceinline__ void rope_angles(float* cs, float* sn, int half, int pos, float thetaScale, float freqScale,
                                            float extFactor, float rampLow, float rampHigh, float mscale) {
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        float thetaExtrap = (float)pos;
        for (int i = 0; i < j; i++) thetaExtrap = __fmul_rn(thetaExtrap, thetaScale);
        float thetaInterp = __fmul_rn(freqScale, thetaExtrap);
        float theta = thetaInterp;
        if (extFactor != 0.f) {
            float y = __fdiv_rn(__fsub_rn((float)j, rampLow), fmaxf(0.001f, __fsub_rn(rampHigh, rampLow)));
            float rampMix = __fmul_rn(__fsub_rn(1.f, fminf(1.f, fmaxf(0.f, y))), extFactor);
            theta = __fadd_rn(__fmul_rn(thetaInterp, __fsub_rn(1.f, rampMix)), __fmul_rn(thetaExtrap, rampMix));
        }
        cs[j] = __fmul_rn((float)cos((double)theta), mscale);
        sn[j] = __fmul_rn((float)sin((double)theta), mscale);
    }
}

__device__ __forceinline__ void rope_pair(float x0, float x1, float c, float s, float* y0, float* y1) {
    *y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    *y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}

// RoPE of row blockIdx.x (position first_position + blockIdx.x), all heads in place.
extern "C" __global__ void __launch_bounds__(256)
    rope(float* X, int xStride, int heads, int headDim, int dims, int neox, int startPos, const int* posDev,
         float thetaScale, float freqScale, float extFactor, float rampLow, float rampHigh, float mscale) {
    pdl_enter();
    __shared__ float cs[512];
    __shared__ float sn[512];
    int half = dims >> 1;
    int t = blockIdx.x;
    rope_angles(cs, sn, half, first_position(startPos, posDev) + t, thetaScale, freqScale, extFactor, rampLow,
                rampHigh, mscale);
    __syncthreads();
    float* x = X + (long long)t * xStride;
    for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
        int h = idx / half;
        int j = idx % half;
        int i0 = neox ? h * headDim + j : h * headDim + 2 * j;
        int i1 = neox ? i0 + half : i0 + 1;
        rope_pair(x[i0], x[i1], cs[j], sn[j], &x[i0], &x[i1]);
    }
}

// rms_norm of one head x (gain of headDim values), then RoPE at position pos, in place, by the whole block:
// the results of rms_norm then rope (same arithmetic, same block size of 256).
__device__ __forceinline__ void rms_norm_rope_head(float* x, const float* gain, int headDim, float eps, int dims,
                                                   int neox, int pos, float thetaScale, float freqScale,
                                                   float extFactor, float rampLow, float rampHigh, float mscale) {
    __shared__ float cs[512];
    __shared__ float sn[512];
    int half = dims >> 1;
    rope_angles(cs, sn, half, pos, thetaScale, freqScale, extFactor, rampLow, rampHigh, mscale);
    double sum = 0.0;
    for (int i = threadIdx.x; i < headDim; i += blockDim.x) {
        float v = x[i];
        sum += (double)__fmul_rn(v, v);
    }
    float s = block_rms_scale(sum, headDim, eps);  // its barriers also publish cs and sn
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        int i0 = neox ? j : 2 * j;
        int i1 = neox ? j + half : i0 + 1;
        float x0 = __fmul_rn(__fmul_rn(x[i0], s), gain[i0]);
        float x1 = __fmul_rn(__fmul_rn(x[i1], s), gain[i1]);
        rope_pair(x0, x1, cs[j], sn[j], &x[i0], &x[i1]);
    }
    for (int i = dims + threadIdx.x; i < headDim; i += blockDim.x) x[i] = __fmul_rn(__fmul_rn(x[i], s), gain[i]);
}

// rms_norm_rope_head of every head of every row: one block per (row, head), blockIdx.x = row * heads + head.
extern "C" __global__ void __launch_bounds__(256)
    rms_norm_rope(float* X, int xStride, const float* gain, int heads, int headDim, float eps, int dims, int neox,
                  int startPos, const int* posDev, float thetaScale, float freqScale, float extFactor, float rampLow,
                  float rampHigh, float mscale) {
    prefetch_l2(gain, 4LL * headDim, threadIdx.x, blockDim.x);
    pdl_enter();
    int t = blockIdx.x / heads;
    int h = blockIdx.x % heads;
    rms_norm_rope_head(X + (long long)t * xStride + (long long)h * headDim, gain, headDim, eps, dims, neox,
                       first_position(startPos, posDev) + t, thetaScale, freqScale, extFactor, rampLow, rampHigh,
                       mscale);
}

// acc += x over count floats
extern "C" __global__ void add_inplace(float* acc, const float* x, long long count) {
    pdl_enter();
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) acc[i] = __fadd_rn(acc[i], x[i]);
}

// gate = silu(gate) * up over count floats
extern "C" __global__ void silu_mul(float* gate, const float* up, long long count) {
    pdl_enter();
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) gate[i] = __fmul_rn(silu(gate[i]), up[i]);
}

// ---------------------------------------------------------------- KV cache and attention

__device__ __forceinline__ float kv_load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float kv_load(const __half* p, long long i) { return __half2float(p[i]); }
__device__ __forceinline__ void kv_store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void kv_store(__half* p, long long i, float v) { p[i] = __float2half_rn(v); }

#define KV_PER 8

// Row t of k and v goes to position startPos + t of the layer's key and value planes.
template <typename KV>
__device__ __forceinline__ void store_kv_body(KV* kPlane, KV* vPlane, const float* K, int kStride, const float* V,
                                              int vStride, int kvDim, int startPos, const int* posDev) {
    int t = blockIdx.x;
    long long pos = (long long)(first_position(startPos, posDev) + t) * kvDim;
    if (kvDim <= KV_PER * (int)blockDim.x) {  // all loads before the stores, as in the norms
        float k[KV_PER];
        float v[KV_PER];
#pragma unroll
        for (int j = 0; j < KV_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < kvDim) {
                k[j] = K[(long long)t * kStride + i];
                v[j] = V[(long long)t * vStride + i];
            }
        }
#pragma unroll
        for (int j = 0; j < KV_PER; j++) {
            int i = threadIdx.x + j * blockDim.x;
            if (i < kvDim) {
                kv_store(kPlane, pos + i, k[j]);
                kv_store(vPlane, pos + i, v[j]);
            }
        }
        return;
    }
    for (int i = threadIdx.x; i < kvDim; i += blockDim.x) {
        kv_store(kPlane, pos + i, K[(long long)t * kStride + i]);
        kv_store(vPlane, pos + i, V[(long long)t * vStride + i]);
    }
}

// The attention inputs of a row in one launch: rms_norm_rope_head of each query head (blocks row * (heads +
// kvHeads) + h, h < heads) and of each key head, whose block then stores that head's keys and values at the
// row's position in the cache (store_kv's layout: position-major, kvHeads * headDim values a position).
template <typename KV>
__device__ __forceinline__ void norm_rope_store_body(float* Q, int qStride, const float* qGain, int heads, float* K,
                                                     int kStride, const float* kGain, int kvHeads, const float* V,
                                                     int vStride, KV* kPlane, KV* vPlane, int headDim, float eps,
                                                     int dims, int neox, int startPos, const int* posDev,
                                                     float thetaScale, float freqScale, float extFactor,
                                                     float rampLow, float rampHigh, float mscale) {
    int perRow = heads + kvHeads;
    int t = blockIdx.x / perRow;
    int h = blockIdx.x % perRow;
    int pos = first_position(startPos, posDev) + t;
    if (h < heads) {
        rms_norm_rope_head(Q + (long long)t * qStride + (long long)h * headDim, qGain, headDim, eps, dims, neox, pos,
                           thetaScale, freqScale, extFactor, rampLow, rampHigh, mscale);
        return;
    }
    h -= heads;
    float* k = K + (long long)t * kStride + (long long)h * headDim;
    rms_norm_rope_head(k, kGain, headDim, eps, dims, neox, pos, thetaScale, freqScale, extFactor, rampLow, rampHigh,
                       mscale);
    __syncthreads();  // the head's keys, written by the block's threads
    const float* v = V + (long long)t * vStride + (long long)h * headDim;
    long long base = (long long)pos * kvHeads * headDim + (long long)h * headDim;
    for (int i = threadIdx.x; i < headDim; i += blockDim.x) {
        kv_store(kPlane, base + i, k[i]);
        kv_store(vPlane, base + i, v[i]);
    }
}

#define NORM_ROPE_STORE_KERNEL(NAME, KV)                                                                         \
    extern "C" __global__ void __launch_bounds__(256)                                                            \
        NAME(float* Q, int qStride, const float* qGain, int heads, float* K, int kStride, const float* kGain,   \
             int kvHeads, const float* V, int vStride, KV* kPlane, KV* vPlane, int headDim, float eps, int dims, \
             int neox, int startPos, const int* posDev, float thetaScale, float freqScale, float extFactor,      \
             float rampLow, float rampHigh, float mscale) {                                                      \
        prefetch_l2(qGain, 4LL * headDim, threadIdx.x, blockDim.x);                                        \
        prefetch_l2(kGain, 4LL * headDim, threadIdx.x, blockDim.x);                                        \
        pdl_enter();                                                                                            \
        norm_rope_store_body<KV>(Q, qStride, qGain, heads, K, kStride, kGain, kvHeads, V, vStride, kPlane,      \
                                 vPlane, headDim, eps, dims, neox, startPos, posDev, thetaScale, freqScale,     \
                                 extFactor, rampLow, rampHigh, mscale);                                          \
    }

NORM_ROPE_STORE_KERNEL(norm_rope_store_f16, __half)
NORM_ROPE_STORE_KERNEL(norm_rope_store_f32, float)

#define ATT_WARPS 4
#define ATT_DECODE_WARPS 16
#define ATT_MAX_HEAD 256
#define ATT_BATCH 8

// Causal attention of query row blockIdx.y (position startPos + blockIdx.y), head blockIdx.x, over cached
// positions 0..startPos+blockIdx.y. Each of the WARPS warps runs an online softmax over every WARPS-th
// position (lane i holds elements i, i+32, ... of the head: SLOTS of them); the warps' partial results are
// merged at the end. Prompt batches have a block per (head, token) and use 4 warps; a decoded token has only
// a block per head, so it uses 16. EXACT: the head has exactly 32 * SLOTS elements, so no lane needs a bound.
// A warp takes ATT_BATCH of its positions at a time with loads that depend on nothing in the batch (a position
// past the end reads the last one and adds nothing), so that a batch costs two trips to memory, the keys' and the
// values', where one position at a time cost two each (~1.5 us a position on an H100).
template <typename KV, int WARPS, int SLOTS, bool EXACT>
__device__ __forceinline__ void attention_body(const float* Q, int qStride, const KV* kPlane, const KV* vPlane,
                                               int kvDim, int headDim, int group, float scale, int startPos,
                                               const int* posDev, float* O, int oStride) {
    __shared__ float q[ATT_MAX_HEAD];
    __shared__ float wm[WARPS];
    __shared__ float wl[WARPS];
    __shared__ float wacc[WARPS][ATT_MAX_HEAD];
    int h = blockIdx.x;
    int t = blockIdx.y;
    int kvh = h / group;
    int len = first_position(startPos, posDev) + t + 1;
    int lane = threadIdx.x & 31;
    int warp = threadIdx.x >> 5;
    for (int i = threadIdx.x; i < headDim; i += blockDim.x) q[i] = Q[(long long)t * qStride + h * headDim + i];
    __syncthreads();
    float qr[SLOTS];
#pragma unroll
    for (int i = 0; i < SLOTS; i++) {
        int d = lane + WARP * i;
        qr[i] = EXACT || d < headDim ? q[d] : 0.f;
    }
    const KV* kHead = kPlane + (long long)kvh * headDim;
    const KV* vHead = vPlane + (long long)kvh * headDim;
    float m = -INFINITY;
    float l = 0.f;
    float acc[SLOTS];
#pragma unroll
    for (int i = 0; i < SLOTS; i++) acc[i] = 0.f;
    for (int p0 = warp; p0 < len; p0 += WARPS * ATT_BATCH) {
        float s[ATT_BATCH];
#pragma unroll
        for (int j = 0; j < ATT_BATCH; j++) {
            const KV* k = kHead + (long long)min(p0 + j * WARPS, len - 1) * kvDim;
            float part = 0.f;
#pragma unroll
            for (int i = 0; i < SLOTS; i++) {
                int d = lane + WARP * i;
                if (EXACT || d < headDim) part = fmaf(qr[i], kv_load(k, d), part);
            }
            s[j] = part;
        }
        float mNew = m;
#pragma unroll
        for (int j = 0; j < ATT_BATCH; j++) {
            s[j] = p0 + j * WARPS < len ? warp_sum(s[j]) * scale : -INFINITY;
            mNew = fmaxf(mNew, s[j]);
        }
        float c = __expf(m - mNew);
        l *= c;
#pragma unroll
        for (int i = 0; i < SLOTS; i++) acc[i] *= c;
#pragma unroll
        for (int j = 0; j < ATT_BATCH; j++) {
            bool valid = p0 + j * WARPS < len;   // the same for the whole warp
            float pe = __expf(s[j] - mNew);
            l += pe;
            const KV* v = vHead + (long long)min(p0 + j * WARPS, len - 1) * kvDim;
#pragma unroll
            for (int i = 0; i < SLOTS; i++) {
                int d = lane + WARP * i;
                if (EXACT || d < headDim) {
                    float value = kv_load(v, d);   // loaded either way, so that the batch's loads go out together
                    acc[i] = valid ? fmaf(pe, value, acc[i]) : acc[i];   // a repeated last value (inf) adds nothing
                }
            }
        }
        m = mNew;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < SLOTS; i++) {
        int d = lane + WARP * i;
        if (EXACT || d < headDim) wacc[warp][d] = acc[i];
    }
    __syncthreads();
    float mAll = wm[0];
    for (int w = 1; w < WARPS; w++) mAll = fmaxf(mAll, wm[w]);
    float lAll = 0.f;
    float f[WARPS];
    for (int w = 0; w < WARPS; w++) {
        f[w] = wl[w] > 0.f ? __expf(wm[w] - mAll) : 0.f;
        lAll += wl[w] * f[w];
    }
    float inv = 1.f / lAll;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.f;
        for (int w = 0; w < WARPS; w++) o += wacc[w][d] * f[w];
        O[(long long)t * oStride + h * headDim + d] = o * inv;
    }
}

extern "C" __global__ void store_kv_f16(__half* kPlane, __half* vPlane, const float* K, int kStride, const float* V,
                                        int vStride, int kvDim, int startPos, const int* posDev) {
    pdl_enter();
    store_kv_body<__half>(kPlane, vPlane, K, kStride, V, vStride, kvDim, startPos, posDev);
}

extern "C" __global__ void store_kv_f32(float* kPlane, float* vPlane, const float* K, int kStride, const float* V,
                                        int vStride, int kvDim, int startPos, const int* posDev) {
    pdl_enter();
    store_kv_body<float>(kPlane, vPlane, K, kStride, V, vStride, kvDim, startPos, posDev);
}

// A one-token attention's prefetch_l2: the cache rows of both planes up to the token's position, spread over all the
// threads of the launch. The rows of earlier tokens were stored by launches that completed before the kernel before
// this one passed its own wait; the position (posDev) is written by the host before a replay. Batches of tokens are
// left alone (each token's blocks would ask for the same rows).
template <class KV>
__device__ __forceinline__ void prefetch_cache(const KV* kPlane, const KV* vPlane, int kvDim, int startPos,
                                               const int* posDev) {
    if (c_prefetch == 0 || gridDim.y != 1) return;
    long long bytes = (long long)(first_position(startPos, posDev) + 1) * kvDim * sizeof(KV);
    int thread = blockIdx.x * blockDim.x + threadIdx.x;
    int threads = gridDim.x * blockDim.x;
    prefetch_l2(kPlane, bytes, thread, threads);
    prefetch_l2(vPlane, bytes, thread, threads);
}

#define ATTENTION_KERNEL(NAME, KV, WARPS)                                                                        \
    extern "C" __global__ void __launch_bounds__(WARPS * WARP)                                                   \
        NAME(const float* Q, int qStride, const KV* kPlane, const KV* vPlane, int kvDim, int headDim, int group, \
             float scale, int startPos, const int* posDev, float* O, int oStride) {                             \
        prefetch_cache(kPlane, vPlane, kvDim, startPos, posDev);                                                 \
        pdl_enter();                                                                                              \
        if (headDim == 128) {  /* Qwen3's heads: no bounds */                                                     \
            attention_body<KV, WARPS, 4, true>(Q, qStride, kPlane, vPlane, kvDim, headDim, group, scale, startPos, \
                                               posDev, O, oStride);                                                \
        } else {                                                                                                 \
            attention_body<KV, WARPS, ATT_MAX_HEAD / WARP, false>(Q, qStride, kPlane, vPlane, kvDim, headDim,     \
                                                                   group, scale, startPos, posDev, O, oStride);  \
        }                                                                                                        \
    }

// Whether this block is the last of `arrivals` blocks to reach `counter` (each block calls it once, with all its
// threads, after storing what the last one reads): the block's stores are published before it counts, and the last
// block sees every other block's stores after. The last block resets the counter itself, once it no longer needs it.
__device__ __forceinline__ bool arrives_last(unsigned* counter, unsigned arrivals) {
    __shared__ bool last;
    __syncthreads();  // this block's stores are done
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(counter, 1u) == arrivals - 1;
        __threadfence();  // what the other blocks stored before they counted is visible to the reads after
    }
    __syncthreads();
    return last;
}

// After attention_body stored head blockIdx.x of row t (heads of 128): the 256-value group of heads 2g and 2g + 1 is
// complete once both blocks stored theirs; the second (counted in done[t * groups + g], which it resets) rounds the
// group to Q8_K into row t of R, laid out as add_rms_norm_rounded lays out a row and with the same function, so the
// output projection's mvq_rounded_* reads the attention output rounded once instead of in each of its blocks.
__device__ __forceinline__ void round_completed_group(const float* O, int oStride, int width, uint8_t* R,
                                                      unsigned* done) {
    __shared__ __align__(16) float group[256];
    int t = blockIdx.y;
    int g = blockIdx.x >> 1;
    unsigned* counter = done + t * (width >> 8) + g;
    if (!arrives_last(counter, 2)) return;
    const float* src = O + (long long)t * oStride + 256 * g;
    for (int i = threadIdx.x; i < 256; i += blockDim.x) group[i] = __ldcg(src + i);
    __syncthreads();
    if (threadIdx.x < 16) {  // a half warp, as quantize_q8k rounds a 256-value block
        uint8_t* row = R + t * rounded_row_bytes(width);
        Q8KGroup r = round_q8k_group(group + 16 * threadIdx.x, 0xFFFFu);
        int gi = 16 * g + threadIdx.x;
        reinterpret_cast<int*>(row + width)[gi] = store_q8k_group(r, reinterpret_cast<int8_t*>(row) + 16 * gi);
        if (threadIdx.x == 0) {
            reinterpret_cast<float*>(row + width + width / 4)[g] = r.d;
            *counter = 0;
        }
    }
}

// attention_decode_* for heads of 128 that also round their row's output once (the default since run 19;
// -Dmoe4j.cuda.attentionRounds=false turns it off): gridDim.x heads, an even number.
#define ATTENTION_DECODE_ROUNDED_KERNEL(NAME, KV)                                                                 \
    extern "C" __global__ void __launch_bounds__(ATT_DECODE_WARPS * WARP)                                        \
        NAME(const float* Q, int qStride, const KV* kPlane, const KV* vPlane, int kvDim, int group, float scale,  \
             int startPos, const int* posDev, float* O, int oStride, uint8_t* R, unsigned* done) {               \
        prefetch_cache(kPlane, vPlane, kvDim, startPos, posDev);                                                 \
        pdl_enter();                                                                                              \
        attention_body<KV, ATT_DECODE_WARPS, 4, true>(Q, qStride, kPlane, vPlane, kvDim, 128, group, scale,      \
                                                      startPos, posDev, O, oStride);                              \
        round_completed_group(O, oStride, gridDim.x * 128, R, done);                                             \
    }

ATTENTION_DECODE_ROUNDED_KERNEL(attention_decode_rounded_f16, __half)
ATTENTION_DECODE_ROUNDED_KERNEL(attention_decode_rounded_f32, float)

ATTENTION_KERNEL(attention_f16, __half, ATT_WARPS)
ATTENTION_KERNEL(attention_f32, float, ATT_WARPS)
ATTENTION_KERNEL(attention_decode_f16, __half, ATT_DECODE_WARPS)
ATTENTION_KERNEL(attention_decode_f32, float, ATT_DECODE_WARPS)

#define ATT_TILE_ROWS 16
#define ATT_TILE_POSITIONS 32
#define ATT_TILE_THREADS 256
#define ATT_TILE_PITCH 132  // floats per staged key row: 16-byte aligned, and lane j's float4 at row j meets no other

// Causal attention of query rows blockIdx.y * 16 .. + 15 of head blockIdx.x over cached positions 0..their own, for
// prompts with heads of exactly 128 values. attention_body walks the cache once per query row; here the block stages
// 32 positions' keys and values in shared memory at a time and all of its 16 rows use them, so the cache is read
// once per 16 rows. Each warp keeps the online softmax of two rows: lane j scores position j of the staged tile, then
// every lane adds the tile's weighted values to the four dimensions 4 lane .. 4 lane + 3 it owns.
template <typename KV>
__device__ __forceinline__ void attention_tiled_body(const float* Q, int qStride, const KV* kPlane, const KV* vPlane,
                                                     int kvDim, int group, float scale, int startPos,
                                                     const int* posDev, int n, float* O, int oStride) {
    __shared__ __align__(16) float qs[ATT_TILE_ROWS][128];
    __shared__ __align__(16) float ks[ATT_TILE_POSITIONS][ATT_TILE_PITCH];
    __shared__ __align__(16) float vs[ATT_TILE_POSITIONS][128];
    int h = blockIdx.x;
    int t0 = blockIdx.y * ATT_TILE_ROWS;
    int rowsHere = min(ATT_TILE_ROWS, n - t0);
    int kvh = h / group;
    int first = first_position(startPos, posDev);
    int lane = threadIdx.x & (WARP - 1);
    int warp = threadIdx.x >> 5;
    for (int i = threadIdx.x; i < ATT_TILE_ROWS * 128; i += ATT_TILE_THREADS) {
        int r = i >> 7;
        qs[r][i & 127] = r < rowsHere ? Q[(long long)(t0 + r) * qStride + h * 128 + (i & 127)] : 0.f;
    }
    const KV* kHead = kPlane + (long long)kvh * 128;
    const KV* vHead = vPlane + (long long)kvh * 128;
    int end = first + t0 + rowsHere;  // the tile's rows see positions 0 .. end - 1 between them
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.f, 0.f};
    float acc[2][4];
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
#pragma unroll
        for (int i = 0; i < 4; i++) acc[rr][i] = 0.f;
    for (int p0 = 0; p0 < end; p0 += ATT_TILE_POSITIONS) {
        __syncthreads();  // the last tile is used up (and the queries are staged, the first time)
        for (int i = threadIdx.x; i < ATT_TILE_POSITIONS * 128; i += ATT_TILE_THREADS) {
            int j = i >> 7;
            int d = i & 127;
            long long p = min(p0 + j, end - 1);  // past the end: the last position again, never scored
            ks[j][d] = kv_load(kHead + p * kvDim, d);
            vs[j][d] = kv_load(vHead + p * kvDim, d);
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            int r = 2 * warp + rr;
            if (r >= rowsHere) break;  // the same for the whole warp
            int pos = first + t0 + r;
            const float4* q4 = reinterpret_cast<const float4*>(qs[r]);
            const float4* k4 = reinterpret_cast<const float4*>(ks[lane]);
            float s = 0.f;
#pragma unroll 8
            for (int d = 0; d < 32; d++) {
                float4 a = q4[d];
                float4 b = k4[d];
                s = fmaf(a.x, b.x, s);
                s = fmaf(a.y, b.y, s);
                s = fmaf(a.z, b.z, s);
                s = fmaf(a.w, b.w, s);
            }
            bool valid = p0 + lane <= pos;
            s = valid ? s * scale : -INFINITY;
            float mNew = fmaxf(m[rr], warp_max(s));  // finite: position 0 of the first tile is valid for every row
            float c = __expf(m[rr] - mNew);
            float pe = valid ? __expf(s - mNew) : 0.f;
            l[rr] = l[rr] * c + warp_sum(pe);
#pragma unroll
            for (int i = 0; i < 4; i++) acc[rr][i] *= c;
            // only the row's own positions: a masked one's weight is 0, but 0 times an infinite or NaN value
            // (an f16 overflow, a NaN token) would still poison the row, which attention_body never reads
            int seen = min(ATT_TILE_POSITIONS, pos - p0 + 1);  // the same for the whole warp
#pragma unroll 8
            for (int j = 0; j < seen; j++) {
                float pj = __shfl_sync(FULL_MASK, pe, j);
                float4 v = reinterpret_cast<const float4*>(vs[j])[lane];
                acc[rr][0] = fmaf(pj, v.x, acc[rr][0]);
                acc[rr][1] = fmaf(pj, v.y, acc[rr][1]);
                acc[rr][2] = fmaf(pj, v.z, acc[rr][2]);
                acc[rr][3] = fmaf(pj, v.w, acc[rr][3]);
            }
            m[rr] = mNew;
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int r = 2 * warp + rr;
        if (r < rowsHere) {
            float inv = 1.f / l[rr];
            float4 o = make_float4(acc[rr][0] * inv, acc[rr][1] * inv, acc[rr][2] * inv, acc[rr][3] * inv);
            reinterpret_cast<float4*>(O + (long long)(t0 + r) * oStride + h * 128)[lane] = o;
        }
    }
}

#define ATTENTION_TILED_KERNEL(NAME, KV)                                                                             \
    extern "C" __global__ void __launch_bounds__(ATT_TILE_THREADS)                                                   \
        NAME(const float* Q, int qStride, const KV* kPlane, const KV* vPlane, int kvDim, int group, float scale,     \
             int startPos, const int* posDev, int n, float* O, int oStride) {                                        \
        pdl_enter();                                                                                                 \
        attention_tiled_body<KV>(Q, qStride, kPlane, vPlane, kvDim, group, scale, startPos, posDev, n, O, oStride); \
    }

ATTENTION_TILED_KERNEL(attention_tiled_f16, __half)
ATTENTION_TILED_KERNEL(attention_tiled_f32, float)

// ---------------------------------------------------------------- mixture-of-experts routing

#define ROUTE_MAX_EXPERTS 1024

// The better of two (probability, expert) candidates: the larger probability, the lower index on a tie; an
// index below 0 is no candidate. A total order, so a butterfly of shuffles leaves every lane the same winner.
__device__ __forceinline__ void better_candidate(float& v, int& i, float ov, int oi) {
    if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i))) {
        v = ov;
        i = oi;
    }
}

// One warp routes the token whose logits are l: softmax over the experts (float exponentials, double sum, scaled by
// the float reciprocal), then k rounds of arg-max (the lowest index wins a tie) over the probabilities not yet taken,
// then the chosen probabilities divided by their sum (clamped below at 2^-14). Lane j owns experts j, j+32,
// ... and keeps its best remaining one in registers, so that a round is one butterfly of shuffles and a
// rescan by the winning lane alone: no barriers (four warps and two block barriers a round took ~6 us for
// one token; ranking every expert against all at once cost more, twice). The result stays on the device: ids[s]
// (-1 when no probability is finite) and weights[s] of that token.
__device__ __forceinline__ void route_topk_warp(const float* l, int experts, int k, int* ids, float* weights) {
    __shared__ float p[ROUTE_MAX_EXPERTS];
    __shared__ float chosen[ROUTE_MAX_EXPERTS];
    int lane = threadIdx.x & (WARP - 1);
    float mx = -INFINITY;
    for (int e = lane; e < experts; e += WARP) {
        p[e] = __ldcg(l + e);  // from L2: route_f32's other blocks wrote them
        mx = fmaxf(mx, p[e]);
    }
    mx = warp_max(mx);
    double sum = 0.0;
    for (int e = lane; e < experts; e += WARP) {
        float v = (float)exp((double)__fsub_rn(p[e], mx));
        p[e] = v;
        sum += v;
    }
    float inv = (float)(1.0 / warp_sum(sum));
    float bv = -1.f;
    int bi = -1;
    for (int e = lane; e < experts; e += WARP) {  // ascending e per lane: ties keep the lower index
        float v = __fmul_rn(p[e], inv);
        p[e] = v;
        if (v >= 0.f) better_candidate(bv, bi, v, e);
    }
    double chosenSum = 0.0;
    for (int s = 0; s < k; s++) {
        float v = bv;
        int idx = bi;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            better_candidate(v, idx, __shfl_xor_sync(FULL_MASK, v, o), __shfl_xor_sync(FULL_MASK, idx, o));
        }
        if (lane == 0) {
            ids[s] = idx;
            chosen[s] = v;
        }
        if (idx < 0) continue;
        chosenSum += v;
        if ((idx & (WARP - 1)) == lane) {  // the winner's owner takes it out and finds its next best
            p[idx] = -1.f;
            bv = -1.f;
            bi = -1;
            for (int e = lane; e < experts; e += WARP) {
                float pe = p[e];
                if (pe >= 0.f) better_candidate(bv, bi, pe, e);
            }
        }
    }
    __syncwarp();
    float norm = fmaxf((float)chosenSum, 6.103515625e-5f);
    for (int s = lane; s < k; s += WARP) weights[s] = __fdiv_rn(chosen[s], norm);
}

extern "C" __global__ void __launch_bounds__(WARP)
    route_topk(const float* logits, int lStride, int experts, int k, int* ids, float* weights) {
    pdl_enter();
    int t = blockIdx.x;
    route_topk_warp(logits + (long long)t * lStride, experts, k, ids + t * k, weights + t * k);
}

// The router's product (float32 weights, as mv_f32 computes it) and route_topk in one launch: blockIdx.y is the
// token; each block computes WARPS logits, and the block that finishes a token's row last (counted in done[t],
// which it resets for the next launch) picks that token's experts from them. One launch and one wait per layer
// fewer than the two kernels, with the same results. route_f32_w1 (one-token steps since run 19;
// -Dmoe4j.cuda.routeWarps=4 for route_f32): a warp per block, so that a token's 128 rows spread over 128
// multiprocessors instead of 32; every row's sum is still one warp's, in the same order.
template <int WARPS>
__device__ __forceinline__ void route_f32_body(const uint8_t* W, long long rowBytes, int K, int experts,
                                               const float* X, int xStride, float* logits, int lStride, int k,
                                               int* ids, float* weights, unsigned* done) {
    int t = blockIdx.y;
    mv_body<F32, false, WARPS>(W, nullptr, 0, rowBytes, K, experts, 1, X, xStride, 1, nullptr, logits, lStride);
    if (!arrives_last(done + t, gridDim.x)) return;
    if (threadIdx.x < WARP) {
        route_topk_warp(logits + (long long)t * lStride, experts, k, ids + t * k, weights + t * k);
        if (threadIdx.x == 0) done[t] = 0;
    }
}

// Each warp of route_f32_body asks L2 for its router row (prefetch_l2).
template <int WARPS>
__device__ __forceinline__ void route_prefetch(const uint8_t* W, long long rowBytes, int experts) {
    int r = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r < experts) prefetch_l2(W + r * rowBytes, rowBytes, threadIdx.x & (WARP - 1), WARP);
}

extern "C" __global__ void __launch_bounds__(MV_WARPS * WARP)
    route_f32(const uint8_t* W, long long rowBytes, int K, int experts, const float* X, int xStride, float* logits,
              int lStride, int k, int* ids, float* weights, unsigned* done) {
    route_prefetch<MV_WARPS>(W, rowBytes, experts);
    pdl_enter();
    route_f32_body<MV_WARPS>(W, rowBytes, K, experts, X, xStride, logits, lStride, k, ids, weights, done);
}

extern "C" __global__ void __launch_bounds__(WARP)
    route_f32_w1(const uint8_t* W, long long rowBytes, int K, int experts, const float* X, int xStride,
                 float* logits, int lStride, int k, int* ids, float* weights, unsigned* done) {
    route_prefetch<1>(W, rowBytes, experts);
    pdl_enter();
    route_f32_body<1>(W, rowBytes, K, experts, X, xStride, logits, lStride, k, ids, weights, done);
}

// One block: groups the n*k assignments by expert into order[] (the assignments of expert 0, then of expert
// 1, ...; within an expert in no particular order: each row of a tiled product is computed alone, so the
// order changes no result), its inverse into position[] (-1 for an assignment without a valid expert), and
// cuts each expert's run into tiles of at most tileRows rows: tiles[3*i] = expert, [3*i+1] = first row,
// [3*i+2] = rows; the unused tiles up to maxTiles get 0 rows. Everything stays on the device. Counting and
// placing use shared-memory atomics (one serial pass per expert over all assignments took ~260 us for a
// 512-token prompt).
extern "C" __global__ void __launch_bounds__(256)
    moe_group(const int* ids, int assignments, int experts, int* order, int* position, int* tiles, int maxTiles,
              int tileRows) {
    pdl_enter();
    __shared__ int start[ROUTE_MAX_EXPERTS + 1];
    __shared__ int next[ROUTE_MAX_EXPERTS];
    for (int e = threadIdx.x; e < experts; e += blockDim.x) next[e] = 0;
    __syncthreads();
    for (int a = threadIdx.x; a < assignments; a += blockDim.x) {
        int e = ids[a];
        if (e >= 0 && e < experts) atomicAdd(&next[e], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        start[0] = 0;
        for (int e = 0; e < experts; e++) {
            start[e + 1] = start[e] + next[e];
            next[e] = start[e];
        }
        int tile = 0;
        for (int e = 0; e < experts && tile < maxTiles; e++) {
            for (int r = start[e]; r < start[e + 1] && tile < maxTiles; r += tileRows) {
                tiles[3 * tile] = e;
                tiles[3 * tile + 1] = r;
                tiles[3 * tile + 2] = min(tileRows, start[e + 1] - r);
                tile++;
            }
        }
        for (; tile < maxTiles; tile++) {
            tiles[3 * tile] = 0;
            tiles[3 * tile + 1] = 0;
            tiles[3 * tile + 2] = 0;
        }
    }
    __syncthreads();
    // rows past the valid assignments (a router that saw no finite probability) gather token 0, harmlessly
    for (int i = start[experts] + threadIdx.x; i < assignments; i += blockDim.x) order[i] = 0;
    for (int a = threadIdx.x; a < assignments; a += blockDim.x) {
        int e = ids[a];
        if (e >= 0 && e < experts) {
            int slot = atomicAdd(&next[e], 1);
            order[slot] = a;
            position[a] = slot;
        } else {
            position[a] = -1;
        }
    }
}

// xs[i] = x[order[i] / k]: each assignment's token row, in expert order. Block i, rows of `width` floats.
extern "C" __global__ void moe_gather(const float* X, int xStride, const int* order, int k, int rows, float* XS,
                                      int xsStride, int width) {
    pdl_enter();
    int i = blockIdx.x;
    if (i >= rows) return;
    const float* x = X + (long long)(order[i] / k) * xStride;
    float* y = XS + (long long)i * xsStride;
    for (int j = threadIdx.x; j < width; j += blockDim.x) y[j] = x[j];
}

// out[t] = sum over s of weights[t*k+s] * y[position[t*k+s]], in slot order. Block t.
extern "C" __global__ void moe_combine(const float* Yx, int yStride, const int* position, const float* weights,
                                       int k, float* O, int oStride, int width) {
    pdl_enter();
    int t = blockIdx.x;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        float total = 0.f;
        for (int s = 0; s < k; s++) {
            int pos = position[t * k + s];
            if (pos < 0) {
                total = __int_as_float(0x7fc00000);
                break;
            }
            float term = __fmul_rn(Yx[(long long)pos * yStride + j], weights[t * k + s]);
            total = s == 0 ? term : __fadd_rn(total, term);
        }
        O[(long long)t * oStride + j] = total;
    }
}

// ---------------------------------------------------------------- profiling

// Waits about `nanos` on the device clock: put before each timed kernel (-Dmoe4j.cuda.profile=true), it keeps
// the GPU busy while the host enqueues the kernel and its events, so that the events time the kernel, not the
// host's launch.
extern "C" __global__ void profile_delay(long long nanos) {
    pdl_enter();
    unsigned long long start;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    unsigned long long now = start;
    while (now - start < (unsigned long long)nanos) {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    }
}
