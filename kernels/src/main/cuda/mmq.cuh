// Prompt batches of K-quant weights on the tensor cores: weight tiles unpacked to int8 with a float scale and
// minimum per 16 values, activations rounded to Q8_K (the values the matrix-vector kernels see), 16x8x16
// int8 products accumulated in int32 per 16 values, then scaled into float32 accumulators (mmq_body).
//
// A half super-block (128 values) of a weight row is unpacked by four threads, 32 values each (Unpack::half):
// into int8 q and, per 16-value group g of the half, scale[g] and min[g] such that the weight is
// scale * q - min, exactly the CPU's decoding.
#pragma once

#include <stdint.h>
#include <cuda_fp16.h>

namespace moe4j {

struct HalfUnpacked {
    uint4 lo;        // 16 int8 values of group gLo
    uint4 hi;        // 16 int8 values of group gHi
    int gLo, gHi;    // groups 0..7 of the half
    float scaleLo, minLo, scaleHi, minHi;
};

// The groups, scales and minimums of part p of a Q4_K or Q5_K half (their shared layout: low nibbles in sub-block 2m,
// high nibbles in 2m + 1, 6-bit scales and minimums in bytes 4..15 of the 16-byte header hd, d and dmin in its first
// word): groups 64(p/2) + 16(p%2) .. of the half, /16, and that + 2.
__device__ __forceinline__ void set_k_groups(HalfUnpacked& r, const uint4& hd, int m, int p) {
    r.gLo = (64 * (p >> 1) + 16 * (p & 1)) >> 4;
    r.gHi = r.gLo + 2;
    KScales sc = k_scales(hd, m);
    float d = __half2float(__ushort_as_half((unsigned short)(hd.x & 0xFFFFu)));
    float dmin = __half2float(__ushort_as_half((unsigned short)(hd.x >> 16)));
    r.scaleLo = __fmul_rn(d, (float)sc.scLo);
    r.minLo = __fmul_rn(dmin, (float)sc.mnLo);
    r.scaleHi = __fmul_rn(d, (float)sc.scHi);
    r.minHi = __fmul_rn(dmin, (float)sc.mnHi);
}

// Q4_K, half h, part p (0..3): the 16 quant bytes at 16 + 32m + 16(p%2), m = 2h + p/2: low nibbles are values
// 64m + 16(p%2) + 0..15 of the block (sub-block 2m), high nibbles the same + 32 (sub-block 2m + 1).
struct Q4KHalf {
    static constexpr int BYTES = 144;

    __device__ __forceinline__ static HalfUnpacked unpack(const uint8_t* block, int h, int p) {
        HalfUnpacked r;
        int m = 2 * h + (p >> 1);
        uint4 hd = *reinterpret_cast<const uint4*>(block);
        uint4 q = *reinterpret_cast<const uint4*>(block + 16 + 32 * m + 16 * (p & 1));
        r.lo = make_uint4(q.x & 0x0F0F0F0Fu, q.y & 0x0F0F0F0Fu, q.z & 0x0F0F0F0Fu, q.w & 0x0F0F0F0Fu);
        r.hi = make_uint4((q.x >> 4) & 0x0F0F0F0Fu, (q.y >> 4) & 0x0F0F0F0Fu, (q.z >> 4) & 0x0F0F0F0Fu,
                          (q.w >> 4) & 0x0F0F0F0Fu);
        set_k_groups(r, hd, m, p);
        return r;
    }
};

// Q6_K, half h, part p (0..3): the 16 ql bytes at 64h + 16p hold values 128h + 16p + 0..15 (low nibbles, group p
// of the half) and 128h + 64 + 16p + 0..15 (high nibbles, group 4 + p), their top bits in the 16 qh bytes at
// 128 + 32h + 16(p%2), at bits 2(p/2) and 4 + 2(p/2); q - 32 is the int8 value, (d * scale) its scale. W and STRIDE
// as for Q6KUnitT: the file's 210-byte blocks (Words5) or blocks padded to 224 bytes (uint4, Q6_KP).
template <class W, int STRIDE>
struct Q6KHalfT {
    static constexpr int BYTES = STRIDE;

    __device__ __forceinline__ static HalfUnpacked unpack(const uint8_t* block, int h, int p) {
        HalfUnpacked r;
        W ql = load16_at<W>(block + 64 * h + 16 * p);
        W qh = load16_at<W>(block + 128 + 32 * h + 16 * (p & 1));
        int shift = 2 * (p >> 1);
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t l = word_of(ql, k);
            uint32_t hb = word_of(qh, k);
            uint32_t vlo = (l & 0x0F0F0F0Fu) | (((hb >> shift) & 0x03030303u) << 4);
            uint32_t vhi = ((l >> 4) & 0x0F0F0F0Fu) | (((hb >> (shift + 4)) & 0x03030303u) << 4);
            lo[k] = __vsub4(vlo, 0x20202020u);  // bytes 0..63 minus 32, as int8
            hi[k] = __vsub4(vhi, 0x20202020u);
        }
        r.lo = make_uint4(lo[0], lo[1], lo[2], lo[3]);
        r.hi = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        r.gLo = p;
        r.gHi = 4 + p;
        float d = __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(block + 208)));
        r.scaleLo = __fmul_rn(d, (float)(int8_t)block[192 + 8 * h + p]);
        r.scaleHi = __fmul_rn(d, (float)(int8_t)block[192 + 8 * h + 4 + p]);
        r.minLo = 0.f;
        r.minHi = 0.f;
        return r;
    }
};
using Q6KHalf = Q6KHalfT<Words5, 210>;

// Q5_K, half h, part p (0..3), laid out as Q4_K's with the fifth bits: the 16 quant bytes at 48 + 32m + 16(p%2),
// m = 2h + p/2, and the 16 qh bytes at 16 + 16(p%2), whose bit 2m tops the low nibbles and bit 2m + 1 the high.
struct Q5KHalf {
    static constexpr int BYTES = 176;

    __device__ __forceinline__ static HalfUnpacked unpack(const uint8_t* block, int h, int p) {
        HalfUnpacked r;
        int m = 2 * h + (p >> 1);
        uint4 hd = *reinterpret_cast<const uint4*>(block);
        uint4 q = *reinterpret_cast<const uint4*>(block + 48 + 32 * m + 16 * (p & 1));
        uint4 qh = *reinterpret_cast<const uint4*>(block + 16 + 16 * (p & 1));
        uint32_t qw[4] = {q.x, q.y, q.z, q.w};
        uint32_t hw[4] = {qh.x, qh.y, qh.z, qh.w};
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            lo[k] = (qw[k] & 0x0F0F0F0Fu) | (((hw[k] >> (2 * m)) & 0x01010101u) << 4);
            hi[k] = ((qw[k] >> 4) & 0x0F0F0F0Fu) | (((hw[k] >> (2 * m + 1)) & 0x01010101u) << 4);
        }
        r.lo = make_uint4(lo[0], lo[1], lo[2], lo[3]);
        r.hi = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        set_k_groups(r, hd, m, p);
        return r;
    }
};

// Q3_K, half h, part p (0..3): groups 2p and 2p + 1 of the half, values 128h + 32p + 0..15 and + 16..31, are the
// bits 2p..2p+1 of the quant bytes at 32 + 32h + 0..15 and + 16..31, topped by bit 4h + p of the hmask bytes
// 0..15 and 16..31; q2 + 4 * high bit - 4 is the int8 value, d * (6-bit scale - 32) its scale (q3k_scale).
// Blocks of 110 bytes are only 2-byte aligned; STRIDE: the bytes from one block to the next (112: Q3_KP).
template <int STRIDE>
struct Q3KHalf {
    static constexpr int BYTES = STRIDE;

    __device__ __forceinline__ static HalfUnpacked unpack(const uint8_t* block, int h, int p) {
        HalfUnpacked r;
        Words5 qa = load16_b2(block + 32 + 32 * h);
        Words5 qb = load16_b2(block + 32 + 32 * h + 16);
        Words5 ha = load16_b2(block);
        Words5 hb = load16_b2(block + 16);
        int shift = 2 * p;
        int bit = 4 * h + p;
        uint32_t lo[4], hi[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t va = ((word_of(qa, k) >> shift) & 0x03030303u) | (((word_of(ha, k) >> bit) & 0x01010101u) << 2);
            uint32_t vb = ((word_of(qb, k) >> shift) & 0x03030303u) | (((word_of(hb, k) >> bit) & 0x01010101u) << 2);
            lo[k] = __vsub4(va, 0x04040404u);  // bytes 0..7 minus 4, as int8
            hi[k] = __vsub4(vb, 0x04040404u);
        }
        r.lo = make_uint4(lo[0], lo[1], lo[2], lo[3]);
        r.hi = make_uint4(hi[0], hi[1], hi[2], hi[3]);
        r.gLo = 2 * p;
        r.gHi = 2 * p + 1;
        const uint8_t* s = block + 96;
        int gLo = 8 * h + r.gLo;
        int gHi = gLo + 1;
        float d = __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(block + 108)));
        r.scaleLo = __fmul_rn(d, (float)q3k_scale(s[gLo & 7], s[8 + (gLo & 3)], gLo));
        r.scaleHi = __fmul_rn(d, (float)q3k_scale(s[gHi & 7], s[8 + (gHi & 3)], gHi));
        r.minLo = 0.f;
        r.minHi = 0.f;
        return r;
    }
};

template <class F>
struct MmqHalfOf;
template <>
struct MmqHalfOf<Q3_K> {
    using type = Q3KHalf<110>;
};
template <>
struct MmqHalfOf<Q3_KP> {
    using type = Q3KHalf<112>;
};
template <>
struct MmqHalfOf<Q5_K> {
    using type = Q5KHalf;
};
template <>
struct MmqHalfOf<Q4_K> {
    using type = Q4KHalf;
};
template <>
struct MmqHalfOf<Q6_K> {
    using type = Q6KHalf;
};
template <>
struct MmqHalfOf<Q6_KP> {
    using type = Q6KHalfT<uint4, 224>;
};

}  // namespace moe4j
