package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of signed 6-bit quants (4 low bits plus 2 high bits), sixteen int8 group
 * scales and one fp16 super-scale: {@code y = (d*sc)*q}.
 */
public final class Q6_K extends BlockFormat {

    static final Q6_K INSTANCE = new Q6_K();

    private static final int QK = 256;
    private static final int BYTES = 210;
    private static final int QL = 0;
    private static final int QH = 128;
    private static final int SCALES = 192;
    private static final int D = 208;

    private Q6_K() { super(GgmlType.Q6_K, D); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            for (int g = 0; g < QK / 16; g++) {
                float dl = d * i8(src, block + SCALES + g);
                // group g: half h = g/8, quarter k = (g/2)%4, bytes l0..l0+15 within the quarter
                int half = g >>> 3;
                int k = (g >>> 1) & 3;
                int l0 = 16 * (g & 1);
                long ql = block + QL + 64L * half + 32L * (k & 1);
                int lowShift = 4 * (k >>> 1);
                long qh = block + QH + 32L * half;
                int highShift = 2 * k;
                for (int l = l0; l < l0 + 16; l++) {
                    int q = (((u8(src, ql + l) >>> lowShift) & 0xF) | (((u8(src, qh + l) >>> highShift) & 3) << 4)) - 32;
                    dst[out + 16 * g + l - l0] = dl * q;
                }
            }
        }
    }

    /**
     * Fused dot product. Iteration {@code (h, k)} covers groups {@code 8h+2k} and {@code 8h+2k+1}, so
     * accumulator pairs alternate with {@code k} and the loop swaps them; see {@link Q4_K#dotBlocks}.
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
        float d = Halfs.readFp16(src, block + D);
        IntVector groupScales = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE).convertShape(B2I, Simd.I, 0);
        ((FloatVector) groupScales.convert(I2F, 0)).mul(d).intoArray(state, DecodedDot.FUSED_SCRATCH);
        for (int hk = 0; hk < 8; hk++) {
            int half = hk >>> 2;
            int k = hk & 3;
            int g = 8 * half + 2 * k;
            IntVector lowShift = IntVector.broadcast(Simd.I, 4 * (k >>> 1));
            IntVector highShift = IntVector.broadcast(Simd.I, 2 * k);
            long ql = block + QL + 64L * half + 32L * (k & 1);
            long qh = block + QH + 32L * half;
            IntVector l0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, ql, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector l1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, ql + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector h0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qh, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector h1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qh + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q0 = l0.lanewise(ASHR, lowShift).and(0xF).or(h0.lanewise(ASHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
            IntVector q1 = l1.lanewise(ASHR, lowShift).and(0xF).or(h1.lanewise(ASHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
            FloatVector w0 = ((FloatVector) q0.sub(32).convert(I2F, 0)).mul(state[DecodedDot.FUSED_SCRATCH + g]);
            FloatVector w1 = ((FloatVector) q1.sub(32).convert(I2F, 0)).mul(state[DecodedDot.FUSED_SCRATCH + g + 1]);
            int e = xBlock + 16 * g;
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

    /**
     * Quants are kept unsigned (0..63); the offset of 32 becomes the minimum term {@code 32*d*sc} of each
     * 16-element group.
     */
    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        float d = Halfs.readFp16(src, block + D);
        FloatVector dl = ((FloatVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                .convertShape(B2I, Simd.I, 0).convert(I2F, 0)).mul(d);
        dl.intoArray(s.scales, 0);
        dl.mul(32f).intoMemorySegment(s.mins, 64L * slot, ScaledDot.NATIVE);
        MemorySegment w = s.w;
        long wo = 1024L * slot;
        for (int half = 0; half < 2; half++) {
            long ql = QL + 64L * half;
            long qhAt = QH + 32L * half;
            IntVector h0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qhAt, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector h1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qhAt + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            for (int k = 0; k < 4; k++) {
                IntVector lowShift = IntVector.broadcast(Simd.I, 4 * (k >>> 1));
                IntVector highShift = IntVector.broadcast(Simd.I, 2 * k);
                long l = ql + 32L * (k & 1);
                IntVector l0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + l, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector l1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + l + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                int g = 8 * half + 2 * k;
                IntVector q0 = l0.lanewise(LSHR, lowShift).and(0xF).or(h0.lanewise(LSHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
                IntVector q1 = l1.lanewise(LSHR, lowShift).and(0xF).or(h1.lanewise(LSHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
                ((FloatVector) q0.convert(I2F, 0)).mul(s.scales[g]).intoMemorySegment(w, wo + 64L * g, ScaledDot.NATIVE);
                ((FloatVector) q1.convert(I2F, 0)).mul(s.scales[g + 1]).intoMemorySegment(w, wo + 64L * g + 64, ScaledDot.NATIVE);
            }
        }
    }

    @Override
    boolean fusesScaled() { return true; }

    /**
     * {@link #decodeScaled} and {@link ScaledDot}'s accumulation in one. Iteration {@code (half, k)} covers groups
     * {@code g = 8*half + 2k} and {@code g+1}, which feed accumulators {@code g % 4} and {@code (g+1) % 4}: pairs
     * (0,1) for even {@code k}, (2,3) for odd, so the loop swaps the pairs after each iteration.
     */
    @Override
    void accumulateScaled(MemorySegment src, long block, float[] x, int xo, float[] sums, int so, float[] state,
            ScaledDot.Scratch s) {
        float d = Halfs.readFp16(src, block + D);
        FloatVector dl = ((FloatVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                .convertShape(B2I, Simd.I, 0).convert(I2F, 0)).mul(d);
        dl.intoArray(s.scales, 0);
        FloatVector a0 = FloatVector.fromArray(Simd.F, state, 0);
        FloatVector a1 = FloatVector.fromArray(Simd.F, state, Simd.L);
        FloatVector a2 = FloatVector.fromArray(Simd.F, state, 2 * Simd.L);
        FloatVector a3 = FloatVector.fromArray(Simd.F, state, 3 * Simd.L);
        for (int half = 0; half < 2; half++) {
            long ql = QL + 64L * half;
            long qhAt = QH + 32L * half;
            IntVector h0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qhAt, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector h1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + qhAt + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            for (int k = 0; k < 4; k++) {
                IntVector lowShift = IntVector.broadcast(Simd.I, 4 * (k >>> 1));
                IntVector highShift = IntVector.broadcast(Simd.I, 2 * k);
                long l = ql + 32L * (k & 1);
                IntVector l0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + l, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector l1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + l + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                int g = 8 * half + 2 * k;
                IntVector q0 = l0.lanewise(LSHR, lowShift).and(0xF).or(h0.lanewise(LSHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
                IntVector q1 = l1.lanewise(LSHR, lowShift).and(0xF).or(h1.lanewise(LSHR, highShift).and(3).lanewise(LSHL, Simd.SHIFT_4));
                int e = xo + 16 * g;
                FloatVector n0 = ((FloatVector) q0.convert(I2F, 0)).mul(s.scales[g])
                        .fma(FloatVector.fromArray(Simd.F, x, e), a0);
                FloatVector n1 = ((FloatVector) q1.convert(I2F, 0)).mul(s.scales[g + 1])
                        .fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
                a0 = a2;
                a1 = a3;
                a2 = n0;
                a3 = n1;
            }
        }
        a0.intoArray(state, 0);
        a1.intoArray(state, Simd.L);
        a2.intoArray(state, 2 * Simd.L);
        a3.intoArray(state, 3 * Simd.L);
        dl.mul(32f).fma(FloatVector.fromArray(Simd.F, sums, so), FloatVector.fromArray(Simd.F, state, 4 * Simd.L))
                .intoArray(state, 4 * Simd.L);
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q6_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        int[] levels = new int[QK];
        float[] scales = new float[QK / 16];
        for (int b = 0; b < blocks; b++) {
            int x = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float maxScale = 0;
            float maxAbsScale = 0;
            for (int g = 0; g < QK / 16; ++g) {
                float scale = QuantMath.makeQxQuantsRmse1(16, 32, src, x + 16 * g, levels, 16 * g);
                scales[g] = scale;
                float absScale = Math.abs(scale);
                if (absScale > maxAbsScale) {
                    maxAbsScale = absScale;
                    maxScale = scale;
                }
            }
            if (maxAbsScale < QuantMath.GROUP_MAX_EPS) {
                dst.asSlice(block, BYTES).fill((byte) 0);
                continue;
            }
            float iscale = -128.f / maxScale;
            float d = Halfs.writeFp16(dst, block + D, 1 / iscale);
            for (int g = 0; g < QK / 16; ++g) {
                byte sc = (byte) Math.min(127, QuantMath.nearestInt(iscale * scales[g]));
                dst.set(Layouts.BYTE, block + SCALES + g, sc);
                float dg = d * sc;
                if (dg == 0) {
                    continue;
                }
                for (int i = 0; i < 16; ++i) {
                    int l = QuantMath.nearestInt(src[x + 16 * g + i] / dg);
                    levels[16 * g + i] = Math.max(-32, Math.min(31, l)) + 32;
                }
            }
            for (int half = 0; half < 2; half++) {
                int e = 128 * half;
                for (int l = 0; l < 32; ++l) {
                    int q1 = levels[e + l];
                    int q2 = levels[e + l + 32];
                    int q3 = levels[e + l + 64];
                    int q4 = levels[e + l + 96];
                    dst.set(Layouts.BYTE, block + QL + 64L * half + l, (byte) ((q1 & 0xF) | ((q3 & 0xF) << 4)));
                    dst.set(Layouts.BYTE, block + QL + 64L * half + 32 + l, (byte) ((q2 & 0xF) | ((q4 & 0xF) << 4)));
                    int high = (q1 >>> 4) | ((q2 >>> 4) << 2) | ((q3 >>> 4) << 4) | ((q4 >>> 4) << 6);
                    dst.set(Layouts.BYTE, block + QH + 32L * half + l, (byte) high);
                }
            }
        }
    }
}
