// Tensor storage formats on the device. Every format decodes in units of 16 consecutive values (a
// "part"): a block of QK values holds QK/16 parts. The formulas, operation by operation, are those of
// moe4j.kernels.quant (and so ggml's dequantize_row_*); the explicit _rn intrinsics stop the compiler
// from fusing a multiply and an add into one rounding, which would make the values differ from the
// CPU's in the last bit.
#pragma once

#include <stdint.h>
#include <cuda_fp16.h>

namespace moe4j {

__device__ __forceinline__ float fp16_at(const uint8_t* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

__device__ __forceinline__ uint32_t u16_at(const uint8_t* p) {
    return *reinterpret_cast<const unsigned short*>(p);
}

// 16 bytes held in four registers; b(i) with a constant i is a shift and a mask.
struct Bytes16 {
    uint32_t w[4];
    __device__ __forceinline__ uint32_t b(int i) const { return (w[i >> 2] >> (8 * (i & 3))) & 0xFFu; }
};

// Loads 16 bytes with the widest accesses their address allows: block sizes such as 210 (Q6_K) or
// 34 (Q8_0) bytes leave many blocks only 2-byte aligned.
__device__ __forceinline__ Bytes16 load16(const uint8_t* p) {
    Bytes16 r;
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if ((a & 15) == 0) {
        uint4 v = *reinterpret_cast<const uint4*>(p);
        r.w[0] = v.x; r.w[1] = v.y; r.w[2] = v.z; r.w[3] = v.w;
    } else if ((a & 3) == 0) {
        const uint32_t* q = reinterpret_cast<const uint32_t*>(p);
#pragma unroll
        for (int i = 0; i < 4; i++) r.w[i] = q[i];
    } else if ((a & 1) == 0) {
        const unsigned short* q = reinterpret_cast<const unsigned short*>(p);
#pragma unroll
        for (int i = 0; i < 4; i++) r.w[i] = (uint32_t)q[2 * i] | ((uint32_t)q[2 * i + 1] << 16);
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            r.w[i] = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) | ((uint32_t)p[4 * i + 2] << 16)
                    | ((uint32_t)p[4 * i + 3] << 24);
        }
    }
    return r;
}

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float mul_sub(float a, float b, float c) { return __fsub_rn(__fmul_rn(a, b), c); }
__device__ __forceinline__ float mul_add(float a, float b, float c) { return __fadd_rn(__fmul_rn(a, b), c); }

__constant__ float IQ4_LEVELS[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ---------------------------------------------------------------- float formats (pseudo-blocks of 16)

struct F32 {
    static constexpr int QK = 16, BYTES = 64;
    __device__ __forceinline__ static void decode(const uint8_t* b, int, float* v) {
        const float4* p = reinterpret_cast<const float4*>(b);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float4 f = p[i];
            v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
        }
    }
};

struct F16 {
    static constexpr int QK = 16, BYTES = 32;
    __device__ __forceinline__ static void decode(const uint8_t* b, int, float* v) {
        const uint4* p = reinterpret_cast<const uint4*>(b);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            uint4 q = p[i];
            uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[8 * i + 2 * j] = __half2float(__ushort_as_half((unsigned short)(w[j] & 0xFFFFu)));
                v[8 * i + 2 * j + 1] = __half2float(__ushort_as_half((unsigned short)(w[j] >> 16)));
            }
        }
    }
};

struct BF16 {
    static constexpr int QK = 16, BYTES = 32;
    __device__ __forceinline__ static void decode(const uint8_t* b, int, float* v) {
        const uint4* p = reinterpret_cast<const uint4*>(b);
#pragma unroll
        for (int i = 0; i < 2; i++) {
            uint4 q = p[i];
            uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
                v[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xFFFF0000u);
            }
        }
    }
};

// ---------------------------------------------------------------- 32-value blocks

// d (fp16), 16 bytes: part 0 = low nibbles, part 1 = high nibbles; (q - 8) * d
struct Q4_0 {
    static constexpr int QK = 32, BYTES = 18;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        Bytes16 q = load16(b + 2);
        int sh = 4 * part;
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul((float)((int)((q.b(l) >> sh) & 0xF) - 8), d);
    }
};

// d, m (fp16), 16 bytes; q * d + m
struct Q4_1 {
    static constexpr int QK = 32, BYTES = 20;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        float m = fp16_at(b + 2);
        Bytes16 q = load16(b + 4);
        int sh = 4 * part;
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul_add((float)((q.b(l) >> sh) & 0xF), d, m);
    }
};

// d (fp16), qh (32 high bits), 16 bytes; (q - 16) * d
struct Q5_0 {
    static constexpr int QK = 32, BYTES = 22;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        uint32_t qh = u16_at(b + 2) | (u16_at(b + 4) << 16);
        Bytes16 q = load16(b + 6);
        int sh = 4 * part;
        int hs = 16 * part;
#pragma unroll
        for (int l = 0; l < 16; l++) {
            int x = (int)(((q.b(l) >> sh) & 0xF) | (((qh >> (l + hs)) & 1) << 4));
            v[l] = mul((float)(x - 16), d);
        }
    }
};

// d, m (fp16), qh, 16 bytes; q * d + m
struct Q5_1 {
    static constexpr int QK = 32, BYTES = 24;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        float m = fp16_at(b + 2);
        uint32_t qh = u16_at(b + 4) | (u16_at(b + 6) << 16);
        Bytes16 q = load16(b + 8);
        int sh = 4 * part;
        int hs = 16 * part;
#pragma unroll
        for (int l = 0; l < 16; l++) {
            uint32_t x = ((q.b(l) >> sh) & 0xF) | (((qh >> (l + hs)) & 1) << 4);
            v[l] = mul_add((float)x, d, m);
        }
    }
};

// d (fp16), 32 signed bytes; q * d
struct Q8_0 {
    static constexpr int QK = 32, BYTES = 34;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        Bytes16 q = load16(b + 2 + 16 * part);
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul((float)(int8_t)q.b(l), d);
    }
};

// d (fp16), 16 bytes of nibble indices into the non-linear IQ4 levels
struct IQ4_NL {
    static constexpr int QK = 32, BYTES = 18;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        Bytes16 q = load16(b + 2);
        int sh = 4 * part;
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul(d, IQ4_LEVELS[(q.b(l) >> sh) & 0xF]);
    }
};

// ---------------------------------------------------------------- 256-value super-blocks

// Q4_K/Q5_K 6-bit scale and min of sub-block j (0..7); s = the 12 scale bytes
__device__ __forceinline__ int k_scale(const uint8_t* s, int j) {
    return j < 4 ? (s[j] & 63) : ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
}

__device__ __forceinline__ int k_min(const uint8_t* s, int j) {
    return j < 4 ? (s[j + 4] & 63) : ((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
}

// scales (16: low nibble scale, high nibble min), qs (64), d, dmin; 16-value groups: dl * q - ml
struct Q2_K {
    static constexpr int QK = 256, BYTES = 84;
    __device__ __forceinline__ static void decode(const uint8_t* b, int g, float* v) {
        float d = fp16_at(b + 80);
        float dmin = fp16_at(b + 82);
        int sc = b[g];
        float dl = mul(d, (float)(sc & 0xF));
        float ml = mul(dmin, (float)(sc >> 4));
        Bytes16 q = load16(b + 16 + 32 * (g >> 3) + 16 * (g & 1));
        int shift = 2 * ((g >> 1) & 3);
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul_sub(dl, (float)((q.b(l) >> shift) & 3), ml);
    }
};

// hmask (32), qs (64), scales (12, 6-bit signed), d; dl * (q2 - (high bit ? 0 : 4)). STRIDE: bytes from one block
// to the next, the file's 110 (Q3_K) or 112 where the CUDA backend pads every block to keep 16-byte alignment (Q3_KP).
template <int STRIDE>
struct Q3_KS {
    static constexpr int QK = 256, BYTES = STRIDE;
    __device__ __forceinline__ static void decode(const uint8_t* b, int g, float* v) {
        float d = fp16_at(b + 108);
        const uint8_t* s = b + 96;
        int low = g < 8 ? (s[g] & 0xF) : (s[g - 8] >> 4);
        int high = (s[8 + (g & 3)] >> (2 * (g >> 2))) & 3;
        float dl = mul(d, (float)((low | (high << 4)) - 32));
        int half = g >> 3;
        int k = (g >> 1) & 3;
        int l0 = 16 * (g & 1);
        Bytes16 q = load16(b + 32 + 32 * half + l0);
        Bytes16 hm = load16(b + l0);
        int shift = 2 * k;
        int hbit = 4 * half + k;
#pragma unroll
        for (int l = 0; l < 16; l++) {
            int q2 = (int)((q.b(l) >> shift) & 3);
            int hi = (int)((hm.b(l) >> hbit) & 1);
            v[l] = mul(dl, (float)(q2 - (hi != 0 ? 0 : 4)));
        }
    }
};
using Q3_K = Q3_KS<110>;
using Q3_KP = Q3_KS<112>;

// d, dmin, scales (12), qs (128); sub-block j = part / 2: (d * sc) * q - dmin * m
struct Q4_K {
    static constexpr int QK = 256, BYTES = 144;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        float dmin = fp16_at(b + 2);
        int j = part >> 1;
        float dl = mul(d, (float)k_scale(b + 4, j));
        float ml = mul(dmin, (float)k_min(b + 4, j));
        Bytes16 q = load16(b + 16 + 32 * (j >> 1) + 16 * (part & 1));
        int shift = 4 * (j & 1);
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul_sub(dl, (float)((q.b(l) >> shift) & 0xF), ml);
    }
};

// d, dmin, scales (12), qh (32), qs (128): Q4_K with a fifth bit from qh
struct Q5_K {
    static constexpr int QK = 256, BYTES = 176;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        float dmin = fp16_at(b + 2);
        int j = part >> 1;
        int l0 = 16 * (part & 1);
        float dl = mul(d, (float)k_scale(b + 4, j));
        float ml = mul(dmin, (float)k_min(b + 4, j));
        Bytes16 q = load16(b + 48 + 32 * (j >> 1) + l0);
        Bytes16 h = load16(b + 16 + l0);
        int shift = 4 * (j & 1);
#pragma unroll
        for (int l = 0; l < 16; l++) {
            uint32_t x = ((q.b(l) >> shift) & 0xF) + (((h.b(l) >> j) & 1) << 4);
            v[l] = mul_sub(dl, (float)x, ml);
        }
    }
};

// ql (128), qh (64), scales (16 signed bytes), d; 16-value groups: (d * sc) * (q - 32). STRIDE: the bytes from one
// block to the next, the file's 210 or 224 where the CUDA backend pads every block to keep 16-byte alignment (Q6_KP).
template <int STRIDE>
struct Q6_KS {
    static constexpr int QK = 256, BYTES = STRIDE;
    __device__ __forceinline__ static void decode(const uint8_t* b, int g, float* v) {
        float d = fp16_at(b + 208);
        float dl = mul(d, (float)(int8_t)b[192 + g]);
        int half = g >> 3;
        int k = (g >> 1) & 3;
        int l0 = 16 * (g & 1);
        Bytes16 ql = load16(b + 64 * half + 32 * (k & 1) + l0);
        Bytes16 qh = load16(b + 128 + 32 * half + l0);
        int lowShift = 4 * (k >> 1);
        int highShift = 2 * k;
#pragma unroll
        for (int l = 0; l < 16; l++) {
            int q = (int)(((ql.b(l) >> lowShift) & 0xF) | (((qh.b(l) >> highShift) & 3) << 4)) - 32;
            v[l] = mul(dl, (float)q);
        }
    }
};
using Q6_K = Q6_KS<210>;
using Q6_KP = Q6_KS<224>;

// d, scales_h (16 bits), scales_l (4 bytes), qs (128): eight 32-value sub-blocks of IQ4 levels
struct IQ4_XS {
    static constexpr int QK = 256, BYTES = 136;
    __device__ __forceinline__ static void decode(const uint8_t* b, int part, float* v) {
        float d = fp16_at(b);
        uint32_t scalesH = u16_at(b + 2);
        int ib = part >> 1;
        int ls = (int)(((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((scalesH >> (2 * ib)) & 3) << 4));
        float dl = mul(d, (float)(ls - 32));
        Bytes16 q = load16(b + 8 + 16 * ib);
        int sh = 4 * (part & 1);
#pragma unroll
        for (int l = 0; l < 16; l++) v[l] = mul(dl, IQ4_LEVELS[(q.b(l) >> sh) & 0xF]);
    }
};

}  // namespace moe4j
