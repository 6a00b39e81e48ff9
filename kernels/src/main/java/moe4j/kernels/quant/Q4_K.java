package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of unsigned 4-bit quants in eight 32-element sub-blocks, each with a 6-bit
 * scale and 6-bit min multiplied by the fp16 super-scales: {@code y = (d*sc)*q - dmin*m}.
 */
public final class Q4_K extends BlockFormat {

    static final Q4_K INSTANCE = new Q4_K();

    private static final int QK = 256;
    private static final int BYTES = 144;
    private static final int D = 0;
    private static final int DMIN = 2;
    private static final int SCALES = 4;
    private static final int QS = 16;

    private Q4_K() { super(GgmlType.Q4_K, D, DMIN); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            float dmin = Halfs.readFp16(src, block + DMIN);
            for (int j = 0; j < 8; j++) {
                float dl = d * KQuantScales.scale(src, block + SCALES, j);
                float ml = dmin * KQuantScales.min(src, block + SCALES, j);
                int shift = 4 * (j & 1);
                long qs = block + QS + 32L * (j >>> 1);
                for (int l = 0; l < 32; l++) {
                    dst[out + 32 * j + l] = dl * ((u8(src, qs + l) >>> shift) & 0xF) - ml;
                }
            }
        }
    }

    /**
     * Fused dot product, one block per {@code accumulateBlock} call (see {@link Simd} for why). Each 32
     * quant bytes hold two sub-blocks (low nibbles sub-block {@code 2c}, high nibbles {@code 2c+1});
     * sub-block {@code j} is element groups {@code 2j, 2j+1}, so even sub-blocks feed accumulators 0 and 1
     * and odd ones 2 and 3 ({@link DecodedDot}'s order), and the loop swaps the pairs after each sub-block.
     */
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
        int scales = src.get(Layouts.INT_LE, block + D);
        KQuantScales.scaleMinProducts(src, block, Simd.fp16(scales, 0), Simd.fp16(scales, 1), state, DecodedDot.FUSED_SCRATCH);
        for (int j = 0; j < 8; j++) {
            FloatVector dl = FloatVector.broadcast(Simd.F, state[DecodedDot.FUSED_SCRATCH + j]);
            FloatVector ml = FloatVector.broadcast(Simd.F, state[DecodedDot.FUSED_SCRATCH + 8 + j]);
            IntVector shift = IntVector.broadcast(Simd.I, 4 * (j & 1));
            long qs = block + QS + 32L * (j >>> 1);
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q0.lanewise(ASHR, shift).and(0xF).convert(I2F, 0)).mul(dl).sub(ml);
            FloatVector w1 = ((FloatVector) q1.lanewise(ASHR, shift).and(0xF).convert(I2F, 0)).mul(dl).sub(ml);
            int e = xBlock + 32 * j;
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

    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        int scales = src.get(Layouts.INT_LE, block + D);
        KQuantScales.scaleProductsAndMins(src, block, Simd.fp16(scales, 0), Simd.fp16(scales, 1), s.scales);
        FloatVector.fromArray(Simd.F, s.scales, 16).intoMemorySegment(s.mins, 64L * slot, ScaledDot.NATIVE);
        MemorySegment w = s.w;
        long wo = 1024L * slot;
        for (int c = 0; c < 4; c++) {
            long qs = QS + 32L * c;
            FloatVector low = FloatVector.broadcast(Simd.F, s.scales[2 * c]);
            FloatVector high = FloatVector.broadcast(Simd.F, s.scales[2 * c + 1]);
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qs, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qs + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            long e = wo + 256L * c;
            ((FloatVector) q0.and(0xF).convert(I2F, 0)).mul(low).intoMemorySegment(w, e, ScaledDot.NATIVE);
            ((FloatVector) q1.and(0xF).convert(I2F, 0)).mul(low).intoMemorySegment(w, e + 64, ScaledDot.NATIVE);
            ((FloatVector) q0.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(high).intoMemorySegment(w, e + 128, ScaledDot.NATIVE);
            ((FloatVector) q1.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(high).intoMemorySegment(w, e + 192, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean fusesScaled() { return true; }

    /** {@link #decodeScaled} and {@link ScaledDot}'s accumulation in one: groups {@code 4c..4c+3} feed accumulators 0..3. */
    @Override
    void accumulateScaled(MemorySegment src, long block, float[] x, int xo, float[] sums, int so, float[] state,
            ScaledDot.Scratch s) {
        int scales = src.get(Layouts.INT_LE, block + D);
        KQuantScales.scaleProductsAndMins(src, block, Simd.fp16(scales, 0), Simd.fp16(scales, 1), s.scales);
        FloatVector a0 = FloatVector.fromArray(Simd.F, state, 0);
        FloatVector a1 = FloatVector.fromArray(Simd.F, state, Simd.L);
        FloatVector a2 = FloatVector.fromArray(Simd.F, state, 2 * Simd.L);
        FloatVector a3 = FloatVector.fromArray(Simd.F, state, 3 * Simd.L);
        for (int c = 0; c < 4; c++) {
            long qs = QS + 32L * c;
            FloatVector low = FloatVector.broadcast(Simd.F, s.scales[2 * c]);
            FloatVector high = FloatVector.broadcast(Simd.F, s.scales[2 * c + 1]);
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qs, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qs + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            int e = xo + 64 * c;
            a0 = ((FloatVector) q0.and(0xF).convert(I2F, 0)).mul(low)
                    .fma(FloatVector.fromArray(Simd.F, x, e), a0);
            a1 = ((FloatVector) q1.and(0xF).convert(I2F, 0)).mul(low)
                    .fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a2 = ((FloatVector) q0.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(high)
                    .fma(FloatVector.fromArray(Simd.F, x, e + 32), a2);
            a3 = ((FloatVector) q1.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(high)
                    .fma(FloatVector.fromArray(Simd.F, x, e + 48), a3);
        }
        a0.intoArray(state, 0);
        a1.intoArray(state, Simd.L);
        a2.intoArray(state, 2 * Simd.L);
        a3.intoArray(state, 3 * Simd.L);
        FloatVector.fromArray(Simd.F, s.scales, 16)
                .fma(FloatVector.fromArray(Simd.F, sums, so), FloatVector.fromArray(Simd.F, state, 4 * Simd.L))
                .intoArray(state, 4 * Simd.L);
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q4_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        KQuantizer q = new KQuantizer(15, -1.f, 0.1f, 20);
        for (int b = 0; b < blocks; b++) {
            long block = dstOffset + (long) b * BYTES;
            int[] levels = q.quantizeSuperBlock(src, srcOffset + b * QK, dst, block + D, block + DMIN, block + SCALES);
            for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                    int packed = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
                    dst.set(Layouts.BYTE, block + QS + 32L * c + l, (byte) packed);
                }
            }
        }
    }
}
