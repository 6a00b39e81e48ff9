package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import moe4j.gguf.GgmlType;

/** 32 4-bit indices into a fixed non-linear table, times one fp16 scale. */
public final class IQ4_NL extends BlockFormat {

    static final IQ4_NL INSTANCE = new IQ4_NL();

    /** ggml's {@code kvalues_iq4nl}: the 16 levels shared by IQ4_NL and IQ4_XS. */
    static final byte[] LEVELS = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

    /** {@link #LEVELS} as int lanes, for table lookups by index vector in the fused kernels. */
    static final IntVector LEVEL_VECTOR = Simd.FUSED
            ? IntVector.fromArray(Simd.I, new int[] {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}, 0)
            : null;

    private static final int QK = 32;
    private static final int BYTES = 18;

    private IQ4_NL() { super(GgmlType.IQ4_NL, 0); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 2 + j);
                dst[out + j] = d * LEVELS[q & 0xF];
                dst[out + j + QK / 2] = d * LEVELS[q >>> 4];
            }
        }
    }

    /** Fused dot product. Block {@code b} is groups {@code 2b, 2b+1}; see {@link Q4_K#dotBlocks}. */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int b = 0; b < count / QK; b++) {
            long block = srcOffset + (long) b * BYTES;
            float d = Halfs.readFp16(src, block);
            int e = xOffset + QK * b;
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q.and(0xF).selectFrom(LEVEL_VECTOR).convert(I2F, 0)).mul(d);
            FloatVector w1 = ((FloatVector) q.lanewise(ASHR, Simd.SHIFT_4).and(0xF).selectFrom(LEVEL_VECTOR).convert(I2F, 0)).mul(d);
            FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, x, e), a0);
            FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a0 = a2;
            a1 = a3;
            a2 = n0;
            a3 = n1;
        }
        return DecodedDot.combine(a0, a1, a2, a3);
    }
}
