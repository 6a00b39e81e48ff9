package moe4j.kernels.quant;

import java.util.Arrays;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

import moe4j.gguf.GgmlType;

/**
 * How llama.cpp's CPU backend rounds an activation row before multiplying it with weights of a given
 * type (its {@code vec_dot_type}, quant-formats spec §4.1/§4.2). Rounding the activations the same way
 * keeps results close to llama.cpp's: the rounding error of 8-bit activations is far larger than any
 * difference in summation order. Each row becomes the values its quantized form decodes to.
 */
public enum ActivationRounding {

    /** F32 weights: activations unchanged. */
    NONE(1),
    /** F16 weights: each value rounded to fp16. */
    F16(1),
    /** BF16 weights: each value rounded to bfloat16 (nearest even). */
    BF16(1),
    /**
     * Q8_0 per 32 values, as llama.cpp's x86 build quantizes: {@code d = amax/127} stored as fp16,
     * {@code q = rint(x * 127/amax)}. Also used for Q8_1 (Q4_1/Q5_1 weights), whose values round the same.
     */
    Q8_0(32),
    /**
     * Q8_K per 256 values: {@code iscale = -127/mx} for the signed value of largest magnitude, {@code d = 1/iscale};
     * a block holding NaN becomes all NaN (llama.cpp's integer rounding would turn the NaN into 0).
     */
    Q8_K(256);

    private final int blockSize;

    ActivationRounding(int blockSize) {
        this.blockSize = blockSize;
    }

    /** Values per quantization block; row lengths must be a multiple of it. */
    public int blockSize() { return blockSize; }

    /** The rounding llama.cpp applies to activations multiplied with weights of {@code type}. */
    public static ActivationRounding forWeights(GgmlType type) {
        return switch (type) {
            case F32 -> NONE;
            case F16 -> F16;
            case BF16 -> BF16;
            case Q4_0, Q5_0, Q8_0, IQ4_NL, Q4_1, Q5_1 -> Q8_0;
            default -> Q8_K;
        };
    }

    /** Writes the rounded {@code src[srcOffset .. srcOffset + count)} to {@code dst[dstOffset ..]} (may be the same range). */
    public void round(float[] src, int srcOffset, float[] dst, int dstOffset, int count) {
        if (count % blockSize != 0) {
            throw new IllegalArgumentException(count + " values is not a whole number of " + this + " blocks of "
                    + blockSize);
        }
        switch (this) {
            case NONE -> System.arraycopy(src, srcOffset, dst, dstOffset, count);
            case F16 -> {
                for (int i = 0; i < count; i++) {
                    dst[dstOffset + i] = Float.float16ToFloat(Float.floatToFloat16(src[srcOffset + i]));
                }
            }
            case BF16 -> {
                for (int i = 0; i < count; i++) {
                    dst[dstOffset + i] = Halfs.bf16ToFloat(Halfs.floatToBf16(src[srcOffset + i]));
                }
            }
            case Q8_0 -> {
                for (int b = 0; b < count; b += 32) {
                    roundQ8_0(src, srcOffset + b, dst, dstOffset + b, null, 0);
                }
            }
            case Q8_K -> {
                for (int b = 0; b < count; b += 256) {
                    roundQ8_K(src, srcOffset + b, dst, dstOffset + b, null, 0);
                }
            }
        }
    }

    /**
     * {@link #Q8_0} or {@link #Q8_K} rounding as {@link #round} does it, also writing each value's 8-bit code
     * ({@code -127..127}) to {@code codes[codesOffset ..]} and each block's scale to {@code scales[scalesOffset ..]}, so
     * that value = scale * code: the integer form llama.cpp's kernels multiply. An all-zero block has scale 0; a block
     * holding NaN (or, for Q8_0, an infinity) has codes 0 and a scale that is not finite, so that products with it are
     * not finite either.
     */
    void roundToCodes(float[] src, int srcOffset, float[] dst, int dstOffset, int count, int[] codes, int codesOffset,
            float[] scales, int scalesOffset) {
        if (this != Q8_0 && this != Q8_K) {
            throw new IllegalStateException("only Q8_0 and Q8_K rounding have 8-bit codes, not " + this);
        }
        if (count % blockSize != 0) {
            throw new IllegalArgumentException(count + " values is not a whole number of " + this + " blocks of "
                    + blockSize);
        }
        for (int b = 0; b < count; b += blockSize) {
            scales[scalesOffset + b / blockSize] = this == Q8_0
                    ? roundQ8_0(src, srcOffset + b, dst, dstOffset + b, codes, codesOffset + b)
                    : roundQ8_K(src, srcOffset + b, dst, dstOffset + b, codes, codesOffset + b);
        }
    }

    /**
     * Rounds one block, writing its codes to {@code codes[c ..]} unless {@code codes} is null; returns its scale. A NaN
     * or infinite magnitude makes the codes 0 (the NaN {@code x * id} rounds to 0) and the scale NaN or infinite.
     */
    private static float roundQ8_0(float[] src, int s, float[] dst, int o, int[] codes, int c) {
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            amax = Math.max(amax, Math.abs(src[s + i]));
        }
        float d = Float.float16ToFloat(Float.floatToFloat16(amax / 127));
        float id = amax != 0 ? 127 / amax : 0;
        for (int i = 0; i < 32; i++) {
            int q = QuantMath.nearestInt(src[s + i] * id);
            dst[o + i] = d * q;
            if (codes != null) {
                codes[c + i] = q;
            }
        }
        return d;
    }

    /** Rounds one block, writing its codes to {@code codes[c ..]} unless {@code codes} is null; returns its scale. */
    private static float roundQ8_K(float[] src, int s, float[] dst, int o, int[] codes, int c) {
        if (Simd.FUSED) {
            float d = roundQ8_KVector(src, s, dst, o, codes, c);
            if (d == d) {
                return d;
            }
        }
        float amax = 0;
        float max = 0;
        for (int i = 0; i < 256; i++) {
            float a = Math.abs(src[s + i]);
            if (Float.isNaN(a)) {  // every value of the block NaN, as its scale would be: never rounded to numbers
                Arrays.fill(dst, o, o + 256, Float.NaN);
                zeroCodes(codes, c);
                return Float.NaN;
            }
            if (a > amax) {
                amax = a;
                max = src[s + i];
            }
        }
        float iscale = -127f / max;
        if (Float.isInfinite(iscale)) {
            // an all-zero block, or every magnitude below 127 / Float.MAX_VALUE (about 3.7e-37): the scale 1/iscale is 0
            // and the codes would be meaningless, so the block rounds to zeros (llama.cpp's values are zeros too)
            Arrays.fill(dst, o, o + 256, 0f);
            zeroCodes(codes, c);
            return 0;
        }
        float d = 1 / iscale;
        for (int i = 0; i < 256; i++) {
            int q = Math.min(127, QuantMath.nearestInt(iscale * src[s + i]));
            dst[o + i] = d * q;
            if (codes != null) {
                codes[c + i] = q;
            }
        }
        return d;
    }

    private static void zeroCodes(int[] codes, int c) {
        if (codes != null) {
            Arrays.fill(codes, c, c + 256, 0);
        }
    }

    /**
     * {@link #roundQ8_K}'s results with vectors (the scalar form cost about 1.5% of a prompt): the largest magnitude
     * is a maximum, exact in any order, and the value kept is the first that has it, as in the scalar scan; the
     * rounding is {@link QuantMath#nearestInt}'s add and bit mask on every lane. Returns the scale, or NaN, writing
     * nothing, for an all-zero block, one holding NaN or one too small for a finite {@code iscale}, which the scalar
     * scan handles.
     */
    private static float roundQ8_KVector(float[] src, int s, float[] dst, int o, int[] codes, int c) {
        FloatVector amaxes = FloatVector.zero(Simd.F);
        for (int i = 0; i < 256; i += Simd.L) {
            amaxes = amaxes.max(FloatVector.fromArray(Simd.F, src, s + i).abs());
        }
        float amax = amaxes.reduceLanes(VectorOperators.MAX);
        if (amax == 0 || Float.isNaN(amax)) {
            return Float.NaN;
        }
        float max = 0;
        for (int i = 0; i < 256; i += Simd.L) {
            int lane = FloatVector.fromArray(Simd.F, src, s + i).abs().compare(VectorOperators.EQ, amax).firstTrue();
            if (lane < Simd.L) {
                max = src[s + i + lane];
                break;
            }
        }
        float iscale = -127f / max;
        if (Float.isInfinite(iscale)) {
            return Float.NaN;
        }
        float d = 1 / iscale;
        IntVector mantissa = IntVector.broadcast(Simd.I, 0x007FFFFF);
        IntVector half = IntVector.broadcast(Simd.I, 0x00400000);
        IntVector top = IntVector.broadcast(Simd.I, 127);
        for (int i = 0; i < 256; i += Simd.L) {
            IntVector q = FloatVector.fromArray(Simd.F, src, s + i).mul(iscale).add(12582912f).reinterpretAsInts()
                    .and(mantissa).sub(half).min(top);
            ((FloatVector) q.convert(VectorOperators.I2F, 0)).mul(d).intoArray(dst, o + i);
            if (codes != null) {
                q.intoArray(codes, c + i);
            }
        }
        return d;
    }
}
