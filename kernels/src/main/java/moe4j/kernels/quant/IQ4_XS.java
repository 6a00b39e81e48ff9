package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static jdk.incubator.vector.VectorOperators.LSHR;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of 4-bit indices into the IQ4_NL table; eight 32-element sub-blocks with
 * 6-bit signed scales (offset 32) times one fp16 super-scale.
 */
public final class IQ4_XS extends BlockFormat {

    static final IQ4_XS INSTANCE = new IQ4_XS();

    private static final int QK = 256;
    private static final int BYTES = 136;
    private static final int D = 0;
    private static final int SCALES_H = 2;
    private static final int SCALES_L = 4;
    private static final int QS = 8;

    private IQ4_XS() { super(GgmlType.IQ4_XS, D); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        byte[] levels = IQ4_NL.LEVELS;
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
            for (int ib = 0; ib < QK / 32; ib++) {
                int ls = ((u8(src, block + SCALES_L + ib / 2) >>> (4 * (ib % 2))) & 0xF)
                        | (((scalesH >>> (2 * ib)) & 3) << 4);
                float dl = d * (ls - 32);
                long qs = block + QS + 16L * ib;
                for (int j = 0; j < 16; j++) {
                    int q = u8(src, qs + j);
                    dst[out + 32 * ib + j] = dl * levels[q & 0xF];
                    dst[out + 32 * ib + 16 + j] = dl * levels[q >>> 4];
                }
            }
        }
    }

    /** Fused dot product: sub-block {@code ib} is groups {@code 2ib, 2ib+1}; see {@link Q4_K#dotBlocks}. */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        float[] state = DecodedDot.fusedState();
        for (int b = 0; b < count / QK; b++) {
            accumulateBlock(src, srcOffset + (long) b * BYTES, x, xOffset + QK * b, state);
        }
        return DecodedDot.combine(state);
    }

    /** Adds one block's products to the accumulators in {@code state}. */
    private static void accumulateBlock(MemorySegment src, long block, float[] x, int xBlock, float[] state) {
        FloatVector a0 = FloatVector.fromArray(Simd.F, state, 0);
        FloatVector a1 = FloatVector.fromArray(Simd.F, state, Simd.L);
        FloatVector a2 = FloatVector.fromArray(Simd.F, state, 2 * Simd.L);
        FloatVector a3 = FloatVector.fromArray(Simd.F, state, 3 * Simd.L);
        float d = Halfs.readFp16(src, block + D);
        int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
        int scalesL = src.get(Layouts.INT_LE, block + SCALES_L);
        for (int ib = 0; ib < QK / 32; ib++) {
            int ls = ((scalesL >>> (4 * ib)) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
            float dl = d * (ls - 32);
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 16L * ib, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector levels0 = q.and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR);
            IntVector levels1 = q.lanewise(ASHR, Simd.SHIFT_4).and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR);
            FloatVector w0 = ((FloatVector) levels0.convert(I2F, 0)).mul(dl);
            FloatVector w1 = ((FloatVector) levels1.convert(I2F, 0)).mul(dl);
            int e = xBlock + 32 * ib;
            FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, x, e), a0);
            FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a0 = a2;
            a1 = a3;
            a2 = n0;
            a3 = n1;
        }
        a0.intoArray(state, 0);
        a1.intoArray(state, Simd.L);
        a2.intoArray(state, 2 * Simd.L);
        a3.intoArray(state, 3 * Simd.L);
    }

    /** No minimums: the sixteen minimum terms are zero. */
    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        float d = Halfs.readFp16(src, block + D);
        int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
        FloatVector.zero(Simd.F).intoMemorySegment(s.mins, 64L * slot, ScaledDot.NATIVE);
        MemorySegment w = s.w;
        long wo = 1024L * slot;
        for (int ib = 0; ib < QK / 32; ib++) {
            int ls = ((u8(src, block + SCALES_L + ib / 2) >>> (4 * (ib % 2))) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
            float dl = d * (ls - 32);
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 16L * ib, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            ((FloatVector) q.and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .intoMemorySegment(w, wo + 128L * ib, ScaledDot.NATIVE);
            ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .intoMemorySegment(w, wo + 128L * ib + 64, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean fusesScaled() { return true; }

    /**
     * {@link #decodeScaled} and {@link ScaledDot}'s accumulation in one: sub-block {@code ib} is groups
     * {@code 2ib, 2ib+1}, accumulators (0,1) for even {@code ib} and (2,3) for odd, so the loop swaps the pairs.
     */
    @Override
    void accumulateScaled(MemorySegment src, long block, float[] x, int xo, float[] sums, int so, float[] state,
            ScaledDot.Scratch s) {
        float d = Halfs.readFp16(src, block + D);
        int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
        int scalesL = src.get(Layouts.INT_LE, block + SCALES_L);
        FloatVector a0 = FloatVector.fromArray(Simd.F, state, 0);
        FloatVector a1 = FloatVector.fromArray(Simd.F, state, Simd.L);
        FloatVector a2 = FloatVector.fromArray(Simd.F, state, 2 * Simd.L);
        FloatVector a3 = FloatVector.fromArray(Simd.F, state, 3 * Simd.L);
        for (int ib = 0; ib < QK / 32; ib++) {
            int ls = ((scalesL >>> (4 * ib)) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
            FloatVector dl = FloatVector.broadcast(Simd.F, d * (ls - 32));
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 16L * ib, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            int e = xo + 32 * ib;
            FloatVector n0 = ((FloatVector) q.and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .fma(FloatVector.fromArray(Simd.F, x, e), a0);
            FloatVector n1 = ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a0 = a2;
            a1 = a3;
            a2 = n0;
            a3 = n1;
        }
        a0.intoArray(state, 0);
        a1.intoArray(state, Simd.L);
        a2.intoArray(state, 2 * Simd.L);
        a3.intoArray(state, 3 * Simd.L);
    }
}
