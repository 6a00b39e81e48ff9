// Integer dot products of K-quant weights with activations rounded to Q8_K, for the matrix-vector
// kernels of decoding. The CPU backend rounds activations exactly so before multiplying them with K-quant
// weights (moe4j.kernels.quant.ActivationRounding.Q8_K, as llama.cpp's CPU backend does): with the same
// 8-bit activations the weights' small integers multiply by dp4a, four products per instruction, and
// the float scales apply once per 16 or 32 values instead of a conversion, a multiply and a subtraction
// per weight, which is what held the float kernels far under the memory bandwidth.
//
// A row is cut into units of 32 values, 8 per 256-value block; a unit's weight bytes are loaded first
// (load) and multiplied later (dot), so that a lane has several units' loads in flight.
#pragma once

#include <stdint.h>
#include <cuda_fp16.h>

namespace moe4j {

// Activations rounded to Q8_K live in shared memory as q (an int8 per value), the sum of every 16 consecutive
// q (an int each) and d per 256 values (a float each), so that value i is d[i / 256] * q[i]: values + values/4
// + values/64 bytes (CudaBackend.q8kSharedBytes).

// Bytes from one such row to the next where rows are kept rounded in global memory (add_rms_norm_rounded, the
// mvq_*_rounded kernels): padded to 16 bytes for the 16-byte loads and stores (CudaActivations.roundedRowBytes).
__host__ __device__ __forceinline__ long long rounded_row_bytes(int width) {
    return ((long long)width + width / 4 + width / 64 + 15) & ~15LL;
}

// The larger magnitude of two values, the same for both arguments' orders (ties: the larger value), so that
// every thread of a reduction agrees.
__device__ __forceinline__ float larger_magnitude(float a, float b) {
    float fa = fabsf(a), fb = fabsf(b);
    return fa > fb ? a : fb > fa ? b : fmaxf(a, b);
}

// One 16-value group of a 256-value Q8_K block, rounded as ActivationRounding.Q8_K: iscale = -127 / (the value
// of largest magnitude in the block), q = the nearest integer to iscale * x (ties to even) at most 127,
// d = 1 / iscale; an all-zero block has d = 0 and q = 0. Which of two values of equal magnitude and opposite
// sign is taken changes the signs of q and d together, not the rounded values. A block holding NaN gets
// d = NaN, so that every product with it is NaN, not a silently wrong number. The 16 threads of a half warp
// (`half` its lanes' mask) hold the block's 16 groups and call this together.
struct Q8KGroup {
    int q[16];
    float d;
};

__device__ __forceinline__ Q8KGroup round_q8k_group(const float* x16, unsigned half) {
    const float4* x4 = reinterpret_cast<const float4*>(x16);
    float v[16];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 f = x4[i];
        v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
    }
    float m = 0.f;
    int nan = 0;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        m = larger_magnitude(m, v[i]);
        nan |= isnan(v[i]) ? 1 : 0;
    }
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
        m = larger_magnitude(m, __shfl_xor_sync(half, m, o));
        nan |= __shfl_xor_sync(half, nan, o);
    }
    Q8KGroup g;
    float iscale = m != 0.f ? __fdiv_rn(-127.f, m) : 0.f;
#pragma unroll
    for (int i = 0; i < 16; i++) g.q[i] = min(127, __float2int_rn(__fmul_rn(iscale, v[i])));
    g.d = nan ? __int_as_float(0x7fc00000) : m != 0.f ? __fdiv_rn(1.f, iscale) : 0.f;
    return g;
}

// Stores a rounded group's 16 values as int8 at q (16-byte aligned); returns their sum.
__device__ __forceinline__ int store_q8k_group(const Q8KGroup& r, int8_t* q) {
    int s = 0;
    uint32_t packed[4];
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t word = 0;
#pragma unroll
        for (int b = 0; b < 4; b++) {
            s += r.q[4 * w + b];
            word |= (uint32_t)(r.q[4 * w + b] & 0xFF) << (8 * b);
        }
        packed[w] = word;
    }
    *reinterpret_cast<uint4*>(q) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
    return s;
}

// Rounds `rows` rows of `count` floats each (count a multiple of 256; rows 16-byte aligned, `stride` floats
// apart) to Q8_K, row after row in q/sum16/d, with all threads of the block (blockDim.x a multiple of 16).
// Ends with a barrier.
__device__ __forceinline__ void quantize_q8k(const float* x, long long stride, int rows, int count, int8_t* q,
                                             int* sum16, float* d) {
    int perRow = count >> 4;
    int groups = rows * perRow;
    unsigned half = 0xFFFFu << (threadIdx.x & 16);
    for (int g = threadIdx.x; g < groups; g += blockDim.x) {  // a half warp is in or out of the loop together
        int row = g / perRow;
        Q8KGroup r = round_q8k_group(x + row * stride + 16 * (g - row * perRow), half);
        sum16[g] = store_q8k_group(r, q + 16 * g);
        if ((g & 15) == 0) d[g >> 4] = r.d;
    }
    __syncthreads();
}

// 16 bytes at a 2-byte aligned address (Q6_K's 210-byte blocks), as five aligned words and funnel shifts:
// no branch on the alignment, which differs between neighbouring lanes. The fifth word may lie up to 4
// bytes past the range; callers keep it inside the block.
struct Words5 {
    uint32_t w[5];
    uint32_t shift;
};

__device__ __forceinline__ Words5 load16_b2(const uint8_t* p) {
    Words5 r;
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uint32_t* base = reinterpret_cast<const uint32_t*>(a & ~(uintptr_t)3);
#pragma unroll
    for (int i = 0; i < 5; i++) r.w[i] = base[i];
    r.shift = (uint32_t)(a & 3) * 8;
    return r;
}

__device__ __forceinline__ uint32_t word_of(const Words5& r, int i) {
    return __funnelshift_r(r.w[i], r.w[i + 1], r.shift);
}

// word i (0..3, a constant once unrolled) of 16 bytes loaded at an aligned address
__device__ __forceinline__ uint32_t word_of(const uint4& r, int i) {
    return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

// 16 bytes as W holds them: five aligned words of a 2-byte aligned address (Words5), or one aligned load (uint4)
template <class W>
__device__ __forceinline__ W load16_at(const uint8_t* p);
template <>
__device__ __forceinline__ Words5 load16_at<Words5>(const uint8_t* p) { return load16_b2(p); }
template <>
__device__ __forceinline__ uint4 load16_at<uint4>(const uint8_t* p) { return *reinterpret_cast<const uint4*>(p); }

// byte i (run-time 0..15) of a uint4
__device__ __forceinline__ int byte_of(const uint4& h, int i) {
    uint32_t w = i < 8 ? (i < 4 ? h.x : h.y) : (i < 12 ? h.z : h.w);
    return (int)((w >> (8 * (i & 3))) & 0xFFu);
}

// The 6-bit scales and mins of sub-blocks 2m and 2m + 1 of a Q4_K or Q5_K block, whose 12 scale bytes are
// bytes 4..15 of its 16-byte header h (k_scale and k_min of formats.cuh)
struct KScales {
    int scLo, mnLo, scHi, mnHi;
};

//
// With S the 12 scale bytes, sub-block j < 4 has scale S[j] & 63 and min S[j + 4] & 63; j >= 4 has scale
// (S[j + 4] & 15) | (S[j - 4] >> 6) << 4 and min (S[j + 4] >> 4) | (S[j] >> 6) << 4. For both sub-blocks of
// pair m that is bytes 2(m % 2) and 2(m % 2) + 1 of each scale word, taken as byte pairs by one permutation a
// word and worked on two at a time (a chain of selects a byte, for a run-time m, cost more).
__device__ __forceinline__ KScales k_scales(const uint4& h, int m) {
    uint32_t pick = 0x4410u + 0x11u * (uint32_t)(2 * (m & 1));  // bytes 2(m % 2) and 2(m % 2) + 1, then zeros
    uint32_t s0 = __byte_perm(h.y, 0, pick);                      // S[0..3]
    uint32_t s1 = __byte_perm(h.z, 0, pick);                      // S[4..7]
    uint32_t s2 = __byte_perm(h.w, 0, pick);                      // S[8..11]
    uint32_t sc = m < 2 ? s0 & 0x3F3Fu : (s2 & 0x0F0Fu) | ((s0 >> 2) & 0x3030u);
    uint32_t mn = m < 2 ? s1 & 0x3F3Fu : ((s2 >> 4) & 0x0F0Fu) | ((s1 >> 2) & 0x3030u);
    KScales r;
    r.scLo = (int)(sc & 0xFFu);
    r.scHi = (int)(sc >> 8);
    r.mnLo = (int)(mn & 0xFFu);
    r.mnHi = (int)(mn >> 8);
    return r;
}

// Q4_K: d, dmin (fp16), 12 bytes of 6-bit scales and mins, 128 quant bytes. Unit u (0..7) is the 16 quant
// bytes at 16 + 16u: low nibbles are values 64(u/2) + 16(u%2) + 0..15 (sub-block 2(u/2)), high nibbles the
// same positions + 32 (sub-block 2(u/2) + 1). Rows of 144-byte blocks in their own allocation keep the
// 16-byte alignment of the loads.
struct Q4KUnit {
    static constexpr int BYTES = 144;
    uint4 h;
    uint4 q;


    __device__ __forceinline__ void load(const uint8_t* block, int u) {
        h = *reinterpret_cast<const uint4*>(block);
        q = *reinterpret_cast<const uint4*>(block + 16 + 16 * u);
    }

    // sum over the unit's 32 values of weight * activation, without the activations' d
    __device__ __forceinline__ float dot(int u, const int8_t* xq, const int* xs) const {
        int m = u >> 1;
        int lo0 = 64 * m + 16 * (u & 1);
        uint4 xl = *reinterpret_cast<const uint4*>(xq + lo0);
        uint4 xh = *reinterpret_cast<const uint4*>(xq + lo0 + 32);
        int lo = 0, hi = 0;
        lo = __dp4a((int)(q.x & 0x0F0F0F0Fu), (int)xl.x, lo);
        lo = __dp4a((int)(q.y & 0x0F0F0F0Fu), (int)xl.y, lo);
        lo = __dp4a((int)(q.z & 0x0F0F0F0Fu), (int)xl.z, lo);
        lo = __dp4a((int)(q.w & 0x0F0F0F0Fu), (int)xl.w, lo);
        hi = __dp4a((int)((q.x >> 4) & 0x0F0F0F0Fu), (int)xh.x, hi);
        hi = __dp4a((int)((q.y >> 4) & 0x0F0F0F0Fu), (int)xh.y, hi);
        hi = __dp4a((int)((q.z >> 4) & 0x0F0F0F0Fu), (int)xh.z, hi);
        hi = __dp4a((int)((q.w >> 4) & 0x0F0F0F0Fu), (int)xh.w, hi);
        KScales sc = k_scales(h, m);
        float d = __half2float(__ushort_as_half((unsigned short)(h.x & 0xFFFFu)));
        float dmin = __half2float(__ushort_as_half((unsigned short)(h.x >> 16)));
        int sums = sc.mnLo * xs[lo0 >> 4] + sc.mnHi * xs[(lo0 >> 4) + 2];
        return d * (float)(sc.scLo * lo + sc.scHi * hi) - dmin * (float)sums;
    }
};

// Q6_K: ql (128), qh (64), 16 signed 8-bit scales, d (fp16); value (d * scale) * (q - 32) with q 6 bits.
// Unit u (0..7), half h = u/4, j0 = 16(u%4): the 16 ql bytes at 64h + j0 hold values 128h + j0 + 0..15 (low
// nibbles) and 128h + 64 + j0 + 0..15 (high), whose top two bits are in the 16 qh bytes at 128 + 32h + j0%32
// (bits 2(j0/32) and 4 + 2(j0/32)). The file's blocks of 210 bytes are only 2-byte aligned (W = Words5: five words
// and funnel shifts a run); padded to 224 bytes (Q6_KP, -Dmoe4j.cuda.padQ6k) each run is one aligned load (uint4).
template <class W, int STRIDE>
struct Q6KUnitT {
    static constexpr int BYTES = STRIDE;
    W ql;
    W qh;
    int scLo, scHi;
    unsigned short dBits;

    __device__ __forceinline__ void load(const uint8_t* block, int u) {
        int half = u >> 2;
        int j0 = 16 * (u & 3);
        ql = load16_at<W>(block + 64 * half + j0);
        qh = load16_at<W>(block + 128 + 32 * half + (j0 & 31));
        scLo = (int8_t)block[192 + 8 * half + (u & 3)];
        scHi = (int8_t)block[192 + 8 * half + 4 + (u & 3)];
        dBits = *reinterpret_cast<const unsigned short*>(block + 208);
    }

    __device__ __forceinline__ float dot(int u, const int8_t* xq, const int* xs) const {
        int half = u >> 2;
        int j0 = 16 * (u & 3);
        int lo0 = 128 * half + j0;
        uint4 xl = *reinterpret_cast<const uint4*>(xq + lo0);
        uint4 xh = *reinterpret_cast<const uint4*>(xq + lo0 + 64);
        int xlw[4] = {(int)xl.x, (int)xl.y, (int)xl.z, (int)xl.w};
        int xhw[4] = {(int)xh.x, (int)xh.y, (int)xh.z, (int)xh.w};
        int shift = 2 * (j0 >> 5);
        int lo = 0, hi = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t l = word_of(ql, k);
            uint32_t hb = word_of(qh, k);
            uint32_t vlo = (l & 0x0F0F0F0Fu) | (((hb >> shift) & 0x03030303u) << 4);
            uint32_t vhi = ((l >> 4) & 0x0F0F0F0Fu) | (((hb >> (shift + 4)) & 0x03030303u) << 4);
            lo = __dp4a((int)vlo, xlw[k], lo);
            hi = __dp4a((int)vhi, xhw[k], hi);
        }
        // (q - 32) . x = q . x - 32 * sum(x)
        int total = scLo * (lo - 32 * xs[lo0 >> 4]) + scHi * (hi - 32 * xs[(lo0 >> 4) + 4]);
        return __half2float(__ushort_as_half(dBits)) * (float)total;
    }
};
using Q6KUnit = Q6KUnitT<Words5, 210>;
using Q6KUnitPadded = Q6KUnitT<uint4, 224>;

// Q5_K: d, dmin (fp16), 12 bytes of 6-bit scales and mins, qh (32), qs (128): Q4_K's layout with a fifth bit,
// bit 2(u/2) (low nibbles) or 2(u/2) + 1 (high) of qh byte i for quant byte i of a 32-byte chunk. Unit u as
// Q4_K's: the 16 quant bytes at 48 + 16u and the 16 qh bytes at 16 + 16(u%2). Blocks of 176 bytes.
struct Q5KUnit {
    static constexpr int BYTES = 176;
    uint4 h;
    uint4 hb;
    uint4 q;

    __device__ __forceinline__ void load(const uint8_t* block, int u) {
        h = *reinterpret_cast<const uint4*>(block);
        hb = *reinterpret_cast<const uint4*>(block + 16 + 16 * (u & 1));
        q = *reinterpret_cast<const uint4*>(block + 48 + 16 * u);
    }

    __device__ __forceinline__ float dot(int u, const int8_t* xq, const int* xs) const {
        int m = u >> 1;
        int lo0 = 64 * m + 16 * (u & 1);
        uint4 xl = *reinterpret_cast<const uint4*>(xq + lo0);
        uint4 xh = *reinterpret_cast<const uint4*>(xq + lo0 + 32);
        uint32_t qw[4] = {q.x, q.y, q.z, q.w};
        uint32_t hw[4] = {hb.x, hb.y, hb.z, hb.w};
        int xlw[4] = {(int)xl.x, (int)xl.y, (int)xl.z, (int)xl.w};
        int xhw[4] = {(int)xh.x, (int)xh.y, (int)xh.z, (int)xh.w};
        int lo = 0, hi = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t vlo = (qw[k] & 0x0F0F0F0Fu) | (((hw[k] >> (2 * m)) & 0x01010101u) << 4);
            uint32_t vhi = ((qw[k] >> 4) & 0x0F0F0F0Fu) | (((hw[k] >> (2 * m + 1)) & 0x01010101u) << 4);
            lo = __dp4a((int)vlo, xlw[k], lo);
            hi = __dp4a((int)vhi, xhw[k], hi);
        }
        KScales sc = k_scales(h, m);
        float d = __half2float(__ushort_as_half((unsigned short)(h.x & 0xFFFFu)));
        float dmin = __half2float(__ushort_as_half((unsigned short)(h.x >> 16)));
        int sums = sc.mnLo * xs[lo0 >> 4] + sc.mnHi * xs[(lo0 >> 4) + 2];
        return d * (float)(sc.scLo * lo + sc.scHi * hi) - dmin * (float)sums;
    }
};

// Q3_K: hmask (32), qs (64), 12 bytes of 6-bit scales (offset by 32), d (fp16); value
// d * (scale - 32) * (q2 - (high bit ? 0 : 4)). Value 128h + 32j + i (i < 32) has its two low bits at bit 2j
// of qs byte 32h + i and its high bit at bit 4h + j of hmask byte i; its 16-value group is 8h + 2j + i/16.
// Unit u (0..7), h = u/4, j0 = 2((u/2)%2), l0 = 16(u%2): the 16 qs bytes at 32 + 32h + l0 and hmask bytes at
// l0 give the values 128h + 32j + l0 + 0..15 for j = j0 and j0 + 1.
//
// byte `g` (0..15) of the 16 six-bit scales: low four bits from byte g % 8 (high nibble for g >= 8), top two bits
// from byte 8 + g % 4 at 2(g / 4)
__device__ __forceinline__ int q3k_scale(int lowByte, int highByte, int g) {
    int low = g < 8 ? (lowByte & 0xF) : (lowByte >> 4);
    int high = (highByte >> (2 * (g >> 2))) & 3;
    return (low | (high << 4)) - 32;
}

// The scales of unit u's groups g0 = 8h + 4p + o and g0 + 2 (h = u/4, p = (u/2)%2, o = u%2), plus 32, in bits 0-5
// and 8-13, from two byte pairs: lowPair the scale bytes g0 % 8 and g0 % 8 + 2 (their low nibbles where h = 0, high
// where h = 1), highPair bytes 8 + o and 10 + o (both groups' top two bits at bit 2(2h + p)). Two pairs at a time
// instead of four bytes picked and two scales assembled one by one.
__device__ __forceinline__ uint32_t q3k_scale_pair(uint32_t lowPair, uint32_t highPair, int u) {
    int half = u >> 2;
    int p = (u >> 1) & 1;
    return ((lowPair >> (4 * half)) & 0x0F0Fu) | (((highPair >> (2 * (2 * half + p))) & 0x0303u) << 4);
}

// Unit u's sum over its 32 values of weight * activation, without the activations' d; q and hm the unit's 16 quant
// and 16 hmask bytes (W: Words5 for the file's 2-byte aligned blocks, uint4 for padded ones); scales its two
// groups' scales as q3k_scale_pair gives them.
template <class W>
__device__ __forceinline__ float q3k_unit_dot(int u, const W& q, const W& hm, uint32_t scales, unsigned short dBits,
                                              const int8_t* xq, const int* xs) {
    int half = u >> 2;
    int j0 = 2 * ((u >> 1) & 1);
    int l0 = 16 * (u & 1);
    int x0 = 128 * half + 32 * j0 + l0;
    uint4 xa = *reinterpret_cast<const uint4*>(xq + x0);
    uint4 xb = *reinterpret_cast<const uint4*>(xq + x0 + 32);
    int xaw[4] = {(int)xa.x, (int)xa.y, (int)xa.z, (int)xa.w};
    int xbw[4] = {(int)xb.x, (int)xb.y, (int)xb.z, (int)xb.w};
    int hbit = 4 * half + j0;
    int a = 0, b = 0;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t qw = word_of(q, k);
        uint32_t hw = word_of(hm, k);
        // q2 + 4 * high bit, 0..7; minus 4 below
        uint32_t va = ((qw >> (2 * j0)) & 0x03030303u) | (((hw >> hbit) & 0x01010101u) << 2);
        uint32_t vb = ((qw >> (2 * j0 + 2)) & 0x03030303u) | (((hw >> (hbit + 1)) & 0x01010101u) << 2);
        a = __dp4a((int)va, xaw[k], a);
        b = __dp4a((int)vb, xbw[k], b);
    }
    int g0 = x0 >> 4;
    int sc0 = (int)(scales & 0xFFu) - 32;
    int sc1 = (int)(scales >> 8) - 32;
    int total = sc0 * (a - 4 * xs[g0]) + sc1 * (b - 4 * xs[g0 + 2]);
    return __half2float(__ushort_as_half(dBits)) * (float)total;
}

// The two scales (q3k_scale_pair) and d of unit u of a Q3_K block as W holds its 16-byte runs: the file's 110-byte
// blocks, only 2-byte aligned (Words5), take four scale bytes and d alone; blocks padded to 112 bytes (uint4; Nsight
// Compute, run 13: the file's layout costs about one load instruction per weight byte, and the Q3_K products ran at
// two thirds of Q4_K's bytes per second) take their 16-byte tail (the 12 scale bytes, d and two bytes of padding) in
// one aligned load and each scale byte pair out of it with one byte permutation.
template <class W>
__device__ __forceinline__ void q3k_tail(const uint8_t* block, int u, uint32_t& scales, unsigned short& dBits);

template <>
__device__ __forceinline__ void q3k_tail<Words5>(const uint8_t* block, int u, uint32_t& scales,
                                                 unsigned short& dBits) {
    int g = 4 * ((u >> 1) & 1) + (u & 1);  // g0 % 8
    const uint8_t* s = block + 96;
    scales = q3k_scale_pair((uint32_t)s[g] | ((uint32_t)s[g + 2] << 8),
                            (uint32_t)s[8 + (u & 1)] | ((uint32_t)s[10 + (u & 1)] << 8), u);
    dBits = *reinterpret_cast<const unsigned short*>(block + 108);
}

template <>
__device__ __forceinline__ void q3k_tail<uint4>(const uint8_t* block, int u, uint32_t& scales, unsigned short& dBits) {
    int o = u & 1;
    uint4 tail = *reinterpret_cast<const uint4*>(block + 96);
    uint32_t pick = (uint32_t)o | ((uint32_t)(o + 2) << 4) | 0x4400u;  // bytes o and o + 2, then zeros
    scales = q3k_scale_pair(__byte_perm((u >> 1) & 1 ? tail.y : tail.x, 0, pick), __byte_perm(tail.z, 0, pick), u);
    dBits = (unsigned short)(tail.w & 0xFFFFu);
}

// A unit of Q3_K blocks STRIDE bytes apart, their 16-byte runs loaded as W: the file's layout (Q3KUnit) or blocks
// padded to 16-byte alignment (Q3KUnitPadded, Q3_KP), with the same arithmetic.
template <class W, int STRIDE>
struct Q3KUnitT {
    static constexpr int BYTES = STRIDE;
    W q;
    W hm;
    uint32_t scales;
    unsigned short dBits;

    __device__ __forceinline__ void load(const uint8_t* block, int u) {
        int half = u >> 2;
        int l0 = 16 * (u & 1);
        q = load16_at<W>(block + 32 + 32 * half + l0);
        hm = load16_at<W>(block + l0);
        q3k_tail<W>(block, u, scales, dBits);
    }

    __device__ __forceinline__ float dot(int u, const int8_t* xq, const int* xs) const {
        return q3k_unit_dot(u, q, hm, scales, dBits, xq, xs);
    }
};
using Q3KUnit = Q3KUnitT<Words5, 110>;
using Q3KUnitPadded = Q3KUnitT<uint4, 112>;

template <class F>
struct Q8KUnitOf;
template <>
struct Q8KUnitOf<Q4_K> {
    using type = Q4KUnit;
};
template <>
struct Q8KUnitOf<Q6_K> {
    using type = Q6KUnit;
};
template <>
struct Q8KUnitOf<Q5_K> {
    using type = Q5KUnit;
};
template <>
struct Q8KUnitOf<Q3_K> {
    using type = Q3KUnit;
};
template <>
struct Q8KUnitOf<Q6_KP> {
    using type = Q6KUnitPadded;
};
template <>
struct Q8KUnitOf<Q3_KP> {
    using type = Q3KUnitPadded;
};

}  // namespace moe4j
