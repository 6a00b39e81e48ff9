package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static jdk.incubator.vector.VectorOperators.LSHR;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of 2-bit quants; each 16-element group has a 4-bit scale and 4-bit min
 * multiplied by the fp16 super-scales {@code d} and {@code dmin}.
 */
public final class Q2_K extends BlockFormat {

    static final Q2_K INSTANCE = new Q2_K();

    private static final int QK = 256;
    private static final int BYTES = 84;
    private static final int SCALES = 0;
    private static final int QS = 16;
    private static final int D = 80;
    private static final int DMIN = 82;

    private Q2_K() { super(GgmlType.Q2_K, D, DMIN); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            float dmin = Halfs.readFp16(src, block + DMIN);
            for (int g = 0; g < QK / 16; g++) {
                int sc = u8(src, block + SCALES + g);
                float dl = d * (sc & 0xF);
                float ml = dmin * (sc >>> 4);
                // group g covers elements 16g..16g+15: half h = g/8, shift pair k = (g/2)%4, bytes l0..l0+15
                int half = g >>> 3;
                int shift = 2 * ((g >>> 1) & 3);
                long qs = block + QS + 32L * half + 16L * (g & 1);
                if (vectors && Simd.BYTE_LANES) {
                    dequantizeRun(src, qs, shift, 3, dl, ml, dst, out + 16 * g, 16);
                    continue;
                }
                for (int l = 0; l < 16; l++) {
                    int q = (u8(src, qs + l) >>> shift) & 3;
                    dst[out + 16 * g + l] = dl * q - ml;
                }
            }
        }
    }

    /** Fused dot product, iterating like {@link Q6_K#dotBlocks}. */
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
        int dd = src.get(Layouts.INT_LE, block + D);
        IntVector scales = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE).convertShape(B2I, Simd.I, 0);
        ((FloatVector) scales.and(0xF).convert(I2F, 0)).mul(Simd.fp16(dd, 0)).intoArray(state, DecodedDot.FUSED_SCRATCH);
        ((FloatVector) scales.lanewise(ASHR, Simd.SHIFT_4).and(0xF).convert(I2F, 0)).mul(Simd.fp16(dd, 1))
                .intoArray(state, DecodedDot.FUSED_SCRATCH + 16);
        for (int hk = 0; hk < 8; hk++) {
            int half = hk >>> 2;
            int k = hk & 3;
            int g = 8 * half + 2 * k;
            IntVector shift = IntVector.broadcast(Simd.I, 2 * k);
            long qs = block + QS + 32L * half;
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q0.lanewise(ASHR, shift).and(3).convert(I2F, 0))
                    .mul(state[DecodedDot.FUSED_SCRATCH + g]).sub(state[DecodedDot.FUSED_SCRATCH + 16 + g]);
            FloatVector w1 = ((FloatVector) q1.lanewise(ASHR, shift).and(3).convert(I2F, 0))
                    .mul(state[DecodedDot.FUSED_SCRATCH + g + 1]).sub(state[DecodedDot.FUSED_SCRATCH + 17 + g]);
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

    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        IntVector sc = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        ((FloatVector) sc.and(0xF).convert(I2F, 0)).mul(Halfs.readFp16(src, block + D)).intoArray(s.scales, 0);
        ((FloatVector) sc.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-Halfs.readFp16(src, block + DMIN))
                .intoArray(s.scales, 16);
        MemorySegment w = s.w;
        long wo = s.at[slot];
        long gb = s.groupBytes;
        for (int half = 0; half < 2; half++) {
            IntVector l0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 32L * half, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector l1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 32L * half + 16, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            for (int k = 0; k < 4; k++) {
                IntVector shift = IntVector.broadcast(Simd.I, 2 * k);
                int g = 8 * half + 2 * k;
                long e = wo + g * gb;
                ((FloatVector) l0.lanewise(LSHR, shift).and(3).convert(I2F, 0)).fma(s.scales[g], s.scales[16 + g])
                        .intoMemorySegment(w, e, ScaledDot.NATIVE);
                ((FloatVector) l1.lanewise(LSHR, shift).and(3).convert(I2F, 0)).fma(s.scales[g + 1], s.scales[17 + g])
                        .intoMemorySegment(w, e + gb, ScaledDot.NATIVE);
            }
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    /** The 2-bit quants are packed as Q3_K's low bits, so its order of pairs serves. */
    @Override
    public LaneOrder laneOrder() { return Q3_K.PAIRS; }

    static final IntVector SHIFT_18 = Simd.FUSED ? IntVector.broadcast(Simd.I, 18) : null;
    static final IntVector SHIFT_20 = Simd.FUSED ? IntVector.broadcast(Simd.I, 20) : null;
    private static final ShortVector SHORT_SHIFT_6 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 6) : null;
    private static final ShortVector SHORT_SHIFT_14 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 14) : null;

    /**
     * The dot products of decoding, two blocks per iteration (fewer loop and address instructions a block: this kernel
     * is bound by how many instructions it issues), in integers as {@link Q3_K#dotRows} computes them without the high
     * bit: one 64-byte load, bytes 1 and 3 of each lane moved down by one 16-bit shift; bit pair {@code k} is masked
     * in place, at {@code 4^k} times the quant (up to 16 * 4 * 3 * 128 in a product's 16-bit upper half), and the shift
     * that takes the upper half goes {@code 2k} bits further, which removes the factor exactly; the last pair is
     * shifted down (its bytes 1 and 3 need no mask). Group scales are applied in float, minimums as a float term
     * against the activations' 16-element sums.
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        int width = x.width();
        if (width > PreparedActivations.BYTE_PAIRS_FROM) {
            dotRowsWide(src, srcOffset, rowBytes, rows, x, token, out, outOffset);
            return;
        }
        int blocks = width / QK;
        int[] xp = x.codePairs();
        float[] xd = x.codeScales();
        float[] sums = x.sumsArray();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        int sRow = token * width / PreparedActivations.SUM_GROUP;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            int b = 0;
            for (; b + 1 < blocks; b += 2) {
                long block = row + (long) b * BYTES;
                int pair = src.get(Layouts.INT_LE, block + D);
                float dx = Float.float16ToFloat((short) pair) * xd[dRow + b];
                float dmin = Float.float16ToFloat((short) (pair >>> 16));
                IntVector sc = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl = ((FloatVector) sc.and(0xF).convert(I2F, 0)).mul(dx);
                a1 = ((FloatVector) sc.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e = pRow + b * LaneOrder.PAIRS;
                IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                IntVector qh = (IntVector) q.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s = q.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e))
                        .add(qh.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e + 16)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_0), a0);
                s = q.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e + 32))
                        .add(qh.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e + 48)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_1), a1);
                s = q.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e + 64))
                        .add(qh.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e + 80)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_2), a0);
                s = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(IntVector.fromArray(Simd.I, xp, e + 96))
                        .add(((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(IntVector.fromArray(Simd.I, xp, e + 112)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_3), a1);
                long block2 = row + (long) (b + 1) * BYTES;
                int pair2 = src.get(Layouts.INT_LE, block2 + D);
                float dx2 = Float.float16ToFloat((short) pair2) * xd[dRow + b + 1];
                float dmin2 = Float.float16ToFloat((short) (pair2 >>> 16));
                IntVector sc2 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block2 + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl2 = ((FloatVector) sc2.and(0xF).convert(I2F, 0)).mul(dx2);
                a1 = ((FloatVector) sc2.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin2)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + (b + 1) * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e2 = pRow + (b + 1) * LaneOrder.PAIRS;
                IntVector q2 = IntVector.fromMemorySegment(Simd.I, src, block2 + QS, Simd.LE);
                IntVector qh2 = (IntVector) q2.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s2 = q2.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e2))
                        .add(qh2.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e2 + 16)));
                a0 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_0), a0);
                s2 = q2.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e2 + 32))
                        .add(qh2.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e2 + 48)));
                a1 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_1), a1);
                s2 = q2.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e2 + 64))
                        .add(qh2.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e2 + 80)));
                a0 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_2), a0);
                s2 = ((IntVector) q2.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(IntVector.fromArray(Simd.I, xp, e2 + 96))
                        .add(((IntVector) q2.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(IntVector.fromArray(Simd.I, xp, e2 + 112)));
                a1 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_3), a1);
            }
            // an odd last block: the same code once more (a branch or a conditional second block inside the loop above
            // cost 12-20%, measured)
            for (; b < blocks; b++) {
                long block = row + (long) b * BYTES;
                int pair = src.get(Layouts.INT_LE, block + D);
                float dx = Float.float16ToFloat((short) pair) * xd[dRow + b];
                float dmin = Float.float16ToFloat((short) (pair >>> 16));
                IntVector sc = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl = ((FloatVector) sc.and(0xF).convert(I2F, 0)).mul(dx);
                a1 = ((FloatVector) sc.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e = pRow + b * LaneOrder.PAIRS;
                IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                IntVector qh = (IntVector) q.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s = q.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e))
                        .add(qh.and(0x00030003).mul(IntVector.fromArray(Simd.I, xp, e + 16)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_0), a0);
                s = q.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e + 32))
                        .add(qh.and(0x000C000C).mul(IntVector.fromArray(Simd.I, xp, e + 48)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_1), a1);
                s = q.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e + 64))
                        .add(qh.and(0x00300030).mul(IntVector.fromArray(Simd.I, xp, e + 80)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_2), a0);
                s = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(IntVector.fromArray(Simd.I, xp, e + 96))
                        .add(((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(IntVector.fromArray(Simd.I, xp, e + 112)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_3), a1);
            }
            FloatVector v = a0.add(a1);
            v = v.add(v.rearrange(Simd.FOLD_8));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            v = v.add(v.rearrange(Simd.FOLD_1));
            out[outOffset + r] = v.lane(0);
        }
    }

    /**
     * {@link #dotRows} for rows longer than {@link PreparedActivations#BYTE_PAIRS_FROM}, the activations' pairs read a
     * byte a value, as {@link Q4_K}'s (same operations in the same order otherwise, so the same bits). A copy, where the
     * other row kernels choose their pairs' source by a flag in one loop: this loop, two blocks an iteration, grew past
     * what C1 compiles with both loads in it ("out of virtual registers in linear scan"; 0.1 GB/s).
     */
    private void dotRowsWide(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        byte[] xb = x.bytePairs();
        float[] xd = x.codeScales();
        float[] sums = x.sumsArray();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        int sRow = token * width / PreparedActivations.SUM_GROUP;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            int b = 0;
            for (; b + 1 < blocks; b += 2) {
                long block = row + (long) b * BYTES;
                int pair = src.get(Layouts.INT_LE, block + D);
                float dx = Float.float16ToFloat((short) pair) * xd[dRow + b];
                float dmin = Float.float16ToFloat((short) (pair >>> 16));
                IntVector sc = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl = ((FloatVector) sc.and(0xF).convert(I2F, 0)).mul(dx);
                a1 = ((FloatVector) sc.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e = pRow + b * LaneOrder.PAIRS;
                IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                IntVector qh = (IntVector) q.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s = q.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_0), a0);
                s = q.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_1), a1);
                s = q.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_2), a0);
                s = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_3), a1);
                long block2 = row + (long) (b + 1) * BYTES;
                int pair2 = src.get(Layouts.INT_LE, block2 + D);
                float dx2 = Float.float16ToFloat((short) pair2) * xd[dRow + b + 1];
                float dmin2 = Float.float16ToFloat((short) (pair2 >>> 16));
                IntVector sc2 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block2 + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl2 = ((FloatVector) sc2.and(0xF).convert(I2F, 0)).mul(dx2);
                a1 = ((FloatVector) sc2.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin2)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + (b + 1) * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e2 = pRow + (b + 1) * LaneOrder.PAIRS;
                IntVector q2 = IntVector.fromMemorySegment(Simd.I, src, block2 + QS, Simd.LE);
                IntVector qh2 = (IntVector) q2.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s2 = q2.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e2).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh2.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 16)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_0), a0);
                s2 = q2.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 32)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh2.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 48)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_1), a1);
                s2 = q2.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 64)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh2.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 80)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_2), a0);
                s2 = ((IntVector) q2.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 96)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(((IntVector) q2.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e2 + 112)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s2.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl2.rearrange(Q3_K.GROUPS_3), a1);
            }
            // an odd last block: the same code once more (a branch or a conditional second block inside the loop above
            // cost 12-20%, measured)
            for (; b < blocks; b++) {
                long block = row + (long) b * BYTES;
                int pair = src.get(Layouts.INT_LE, block + D);
                float dx = Float.float16ToFloat((short) pair) * xd[dRow + b];
                float dmin = Float.float16ToFloat((short) (pair >>> 16));
                IntVector sc = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector dl = ((FloatVector) sc.and(0xF).convert(I2F, 0)).mul(dx);
                a1 = ((FloatVector) sc.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).mul(-dmin)
                        .fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                int e = pRow + b * LaneOrder.PAIRS;
                IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                IntVector qh = (IntVector) q.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts();
                IntVector s = q.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x00030003).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_0), a0);
                s = q.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x000C000C).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_1), a1);
                s = q.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(qh.and(0x00300030).mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, SHIFT_20).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_2), a0);
                s = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_6).reinterpretAsInts()).and(0x00030003)
                        .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts())
                        .add(((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_14).reinterpretAsInts())
                                .mul(((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0)).reinterpretAsInts()));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(Q3_K.GROUPS_3), a1);
            }
            FloatVector v = a0.add(a1);
            v = v.add(v.rearrange(Simd.FOLD_8));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            v = v.add(v.rearrange(Simd.FOLD_1));
            out[outOffset + r] = v.lane(0);
        }
    }
}
