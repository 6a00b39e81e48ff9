package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.LSHL;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShuffle;

import moe4j.gguf.GgmlType;

/** Q4_K plus a fifth bit per element: {@code y = (d*sc)*(q4 + 16*h) - dmin*m}. */
public final class Q5_K extends BlockFormat {

    static final Q5_K INSTANCE = new Q5_K();

    private static final int QK = 256;
    /** Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}). */
    private static final int SPAN = Simd.ROW_SPAN / QK;
    private static final int BYTES = 176;
    private static final int D = 0;
    private static final int DMIN = 2;
    private static final int SCALES = 4;
    private static final int QH = 16;
    private static final int QS = 48;

    private Q5_K() { super(GgmlType.Q5_K, D, DMIN); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
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
                if (vectors && Simd.BYTE_LANES) {
                    // the fifth bit is bit j of each qh byte; its or is the scalar loop's sum (the bits are disjoint)
                    dequantizeSplitRun(src, qs, shift, 0xF, block + QH, j, 1, 4, 0, dl, ml, dst, out + 32 * j, 32);
                    continue;
                }
                for (int l = 0; l < 32; l++) {
                    int q = ((u8(src, qs + l) >>> shift) & 0xF) + (((u8(src, block + QH + l) >>> j) & 1) << 4);
                    dst[out + 32 * j + l] = dl * q - ml;
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
        IntVector h0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QH, Simd.LE).convertShape(B2I, Simd.I, 0);
        IntVector h1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QH + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
        for (int j = 0; j < 8; j++) {
            FloatVector dl = FloatVector.broadcast(Simd.F, state[DecodedDot.FUSED_SCRATCH + j]);
            FloatVector ml = FloatVector.broadcast(Simd.F, state[DecodedDot.FUSED_SCRATCH + 8 + j]);
            IntVector shift = IntVector.broadcast(Simd.I, 4 * (j & 1));
            IntVector bit = IntVector.broadcast(Simd.I, j);
            long qs = block + QS + 32L * (j >>> 1);
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector five0 = q0.lanewise(ASHR, shift).and(0xF).add(h0.lanewise(ASHR, bit).and(1).lanewise(LSHL, Simd.SHIFT_4));
            IntVector five1 = q1.lanewise(ASHR, shift).and(0xF).add(h1.lanewise(ASHR, bit).and(1).lanewise(LSHL, Simd.SHIFT_4));
            FloatVector w0 = ((FloatVector) five0.convert(I2F, 0)).mul(dl).sub(ml);
            FloatVector w1 = ((FloatVector) five1.convert(I2F, 0)).mul(dl).sub(ml);
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
        // written out without loops, the quants in 64-byte loads: see Q4_K.decodeScaled; chunk c (quant bytes
        // 32c .. 32c+31) takes high bits 2c (low nibbles) and 2c+1 (high nibbles)
        int pair = src.get(Layouts.INT_LE, block + D);
        IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block, Simd.LE)
                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector low = raw.rearrange(KQuantScales.SCALE_MIN_LOW).lanewise(LSHR, KQuantScales.SCALE_MIN_LOW_SHIFT)
                .and(KQuantScales.SCALE_MIN_LOW_MASK);
        IntVector high = raw.rearrange(KQuantScales.SCALE_MIN_HIGH).lanewise(LSHR, Simd.SHIFT_6)
                .and(KQuantScales.SCALE_MIN_HIGH_MASK).lanewise(LSHL, Simd.SHIFT_4);
        FloatVector products = FloatVector.broadcast(Simd.F, Simd.fp16(pair, 0)).blend(-Simd.fp16(pair, 1), KQuantScales.MIN_LANES)
                .mul((FloatVector) low.or(high).convert(I2F, 0));
        float[] scales = s.scales;
        products.intoArray(scales, 0);
        ByteVector highBits = ByteVector.fromMemorySegment(Simd.B64, src, block + QH, Simd.LE);
        IntVector h0 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHL, Simd.SHIFT_4);
        IntVector h1 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 1)).lanewise(LSHL, Simd.SHIFT_4);
        ByteVector first = ByteVector.fromMemorySegment(Simd.B64, src, block + QS, Simd.LE);
        ByteVector second = ByteVector.fromMemorySegment(Simd.B64, src, block + QS + 64, Simd.LE);
        IntVector q0 = (IntVector) first.convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector q1 = (IntVector) first.convertShape(ZERO_EXTEND_B2I, Simd.I, 1);
        IntVector q2 = (IntVector) first.convertShape(ZERO_EXTEND_B2I, Simd.I, 2);
        IntVector q3 = (IntVector) first.convertShape(ZERO_EXTEND_B2I, Simd.I, 3);
        IntVector q4 = (IntVector) second.convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector q5 = (IntVector) second.convertShape(ZERO_EXTEND_B2I, Simd.I, 1);
        IntVector q6 = (IntVector) second.convertShape(ZERO_EXTEND_B2I, Simd.I, 2);
        IntVector q7 = (IntVector) second.convertShape(ZERO_EXTEND_B2I, Simd.I, 3);
        MemorySegment w = s.w;
        long e0 = s.at[slot];
        long gb = s.groupBytes;
        ((FloatVector) q0.and(0xF).or(h0.and(16)).convert(I2F, 0)).fma(scales[0], scales[8]).intoMemorySegment(w, e0, ScaledDot.NATIVE);
        ((FloatVector) q1.and(0xF).or(h1.and(16)).convert(I2F, 0)).fma(scales[0], scales[8]).intoMemorySegment(w, e0 + gb, ScaledDot.NATIVE);
        ((FloatVector) q0.lanewise(LSHR, Simd.SHIFT_4).or(h0.lanewise(LSHR, IntVector.broadcast(Simd.I, 1)).and(16)).convert(I2F, 0)).fma(scales[1], scales[9]).intoMemorySegment(w, e0 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) q1.lanewise(LSHR, Simd.SHIFT_4).or(h1.lanewise(LSHR, IntVector.broadcast(Simd.I, 1)).and(16)).convert(I2F, 0)).fma(scales[1], scales[9]).intoMemorySegment(w, e0 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) q2.and(0xF).or(h0.lanewise(LSHR, Simd.SHIFT_2).and(16)).convert(I2F, 0)).fma(scales[2], scales[10]).intoMemorySegment(w, e0 + 4 * gb, ScaledDot.NATIVE);
        ((FloatVector) q3.and(0xF).or(h1.lanewise(LSHR, Simd.SHIFT_2).and(16)).convert(I2F, 0)).fma(scales[2], scales[10]).intoMemorySegment(w, e0 + 5 * gb, ScaledDot.NATIVE);
        ((FloatVector) q2.lanewise(LSHR, Simd.SHIFT_4).or(h0.lanewise(LSHR, IntVector.broadcast(Simd.I, 3)).and(16)).convert(I2F, 0)).fma(scales[3], scales[11]).intoMemorySegment(w, e0 + 6 * gb, ScaledDot.NATIVE);
        ((FloatVector) q3.lanewise(LSHR, Simd.SHIFT_4).or(h1.lanewise(LSHR, IntVector.broadcast(Simd.I, 3)).and(16)).convert(I2F, 0)).fma(scales[3], scales[11]).intoMemorySegment(w, e0 + 7 * gb, ScaledDot.NATIVE);
        ((FloatVector) q4.and(0xF).or(h0.lanewise(LSHR, Simd.SHIFT_4).and(16)).convert(I2F, 0)).fma(scales[4], scales[12]).intoMemorySegment(w, e0 + 8 * gb, ScaledDot.NATIVE);
        ((FloatVector) q5.and(0xF).or(h1.lanewise(LSHR, Simd.SHIFT_4).and(16)).convert(I2F, 0)).fma(scales[4], scales[12]).intoMemorySegment(w, e0 + 9 * gb, ScaledDot.NATIVE);
        ((FloatVector) q4.lanewise(LSHR, Simd.SHIFT_4).or(h0.lanewise(LSHR, IntVector.broadcast(Simd.I, 5)).and(16)).convert(I2F, 0)).fma(scales[5], scales[13]).intoMemorySegment(w, e0 + 10 * gb, ScaledDot.NATIVE);
        ((FloatVector) q5.lanewise(LSHR, Simd.SHIFT_4).or(h1.lanewise(LSHR, IntVector.broadcast(Simd.I, 5)).and(16)).convert(I2F, 0)).fma(scales[5], scales[13]).intoMemorySegment(w, e0 + 11 * gb, ScaledDot.NATIVE);
        ((FloatVector) q6.and(0xF).or(h0.lanewise(LSHR, Simd.SHIFT_6).and(16)).convert(I2F, 0)).fma(scales[6], scales[14]).intoMemorySegment(w, e0 + 12 * gb, ScaledDot.NATIVE);
        ((FloatVector) q7.and(0xF).or(h1.lanewise(LSHR, Simd.SHIFT_6).and(16)).convert(I2F, 0)).fma(scales[6], scales[14]).intoMemorySegment(w, e0 + 13 * gb, ScaledDot.NATIVE);
        ((FloatVector) q6.lanewise(LSHR, Simd.SHIFT_4).or(h0.lanewise(LSHR, IntVector.broadcast(Simd.I, 7)).and(16)).convert(I2F, 0)).fma(scales[7], scales[15]).intoMemorySegment(w, e0 + 14 * gb, ScaledDot.NATIVE);
        ((FloatVector) q7.lanewise(LSHR, Simd.SHIFT_4).or(h1.lanewise(LSHR, IntVector.broadcast(Simd.I, 7)).and(16)).convert(I2F, 0)).fma(scales[7], scales[15]).intoMemorySegment(w, e0 + 15 * gb, ScaledDot.NATIVE);
    }

    @Override
    boolean hasRowKernel() { return true; }

    /**
     * Two tokens in the file's layout run the row kernel per token ({@link BlockFormat#rowKernelBelow}); repacked rows
     * take their own tiles.
     */
    @Override
    int rowKernelBelow() { return 3; }

    /** Fifth-bit bytes 0-31 in both lane halves; the second half's bits (sub-blocks 2 and 3 of a 64-byte load) moved down by 2. */
    private static final VectorShuffle<Integer> FIFTH_BIT_BYTES = Simd.FUSED ? VectorShuffle.fromOp(Simd.I, i -> i % 8) : null;
    private static final IntVector FIFTH_BIT_HALF_SHIFT = Simd.FUSED
            ? IntVector.fromArray(Simd.I, new int[] {0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2}, 0) : null;

    /** The nibbles are packed as Q4_K's, so its order of pairs serves. */
    @Override
    public LaneOrder laneOrder() { return Q4_K.PAIRS; }

    /** Two 5-bit quants of a lane (bytes 0 and 2 of its four), in its two 16-bit halves. */
    private static final int PAIR_MASK = 0x001F001F;

    /**
     * The dot products of decoding, block after block, in integers as {@link Q4_K#dotRows} computes them: the fifth
     * bit is joined to all four bytes of a lane at once (sub-block {@code j}'s bit is bit {@code j} of the 32 fifth-bit
     * bytes), then bytes 0 and 2, and 1 and 3, of each lane are multiplied by the activations' code pairs
     * ({@link Q4_K#PAIRS}). Upper halves stay below 4 * 31 * 127 and lower halves below 2 * 31 * 127; the sums times
     * the scales are taken in float, exactly (below 2^24), as in Q4_K.
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        int width = x.width();
        // rows longer than BYTE_PAIRS_FROM read the codes a byte a value (PreparedActivations#bytePairs): a choice fixed
        // per call, which measured as fast in this one loop as in two copies of it
        boolean wide = width > PreparedActivations.BYTE_PAIRS_FROM;
        byte[] xb = x.bytePairs();
        int blocks = width / QK;
        int[] xp = x.codePairs();
        float[] xd = x.codeScales();
        float[] sums = x.sumsArray();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        int sRow = token * width / PreparedActivations.SUM_GROUP;
        int sink = 0;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    sink += ReadAhead.touch(src, block, BYTES);
                    int pair = src.get(Layouts.INT_LE, block + D);
                    float d = Float.float16ToFloat((short) pair) * xd[dRow + b];
                    float dmin = Float.float16ToFloat((short) (pair >>> 16));
                    IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                    IntVector low = raw.rearrange(KQuantScales.SCALE_MIN_LOW).lanewise(LSHR, KQuantScales.SCALE_MIN_LOW_SHIFT)
                            .and(KQuantScales.SCALE_MIN_LOW_MASK);
                    IntVector high = raw.rearrange(KQuantScales.SCALE_MIN_HIGH).lanewise(LSHR, Simd.SHIFT_6)
                            .and(KQuantScales.SCALE_MIN_HIGH_MASK).lanewise(LSHL, Simd.SHIFT_4);
                    FloatVector scaleMin = (FloatVector) low.or(high).convert(I2F, 0);
                    a1 = scaleMin.mul(-dmin).rearrange(KQuantScales.MIN_SPREAD_F)
                            .fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                    int e = pRow + b * LaneOrder.PAIRS;
                    IntVector h = IntVector.fromMemorySegment(Simd.I, src, block + QH, Simd.LE).rearrange(FIFTH_BIT_BYTES)
                            .lanewise(LSHR, FIFTH_BIT_HALF_SHIFT);
                    IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                    IntVector lo = q.and(0x0F0F0F0F).or(h.lanewise(LSHL, Simd.SHIFT_4).and(0x10101010));
                    IntVector hi = q.lanewise(LSHR, Simd.SHIFT_4).and(0x0F0F0F0F).or(h.lanewise(LSHL, 3).and(0x10101010));
                    IntVector p0 = lo.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e));
                    IntVector p1 = hi.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 16));
                    IntVector p2 = ((IntVector) lo.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 32));
                    IntVector p3 = ((IntVector) hi.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 48));
                    FloatVector sum = ((FloatVector) p0.add(p2).add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0))
                            .mul(scaleMin.rearrange(Q4_K.SUB_BLOCKS_0_2))
                            .add(((FloatVector) p1.add(p3).add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0))
                                    .mul(scaleMin.rearrange(Q4_K.SUB_BLOCKS_1_3)));
                    q = IntVector.fromMemorySegment(Simd.I, src, block + QS + 64, Simd.LE);
                    lo = q.and(0x0F0F0F0F).or(h.and(0x10101010));
                    hi = q.lanewise(LSHR, Simd.SHIFT_4).and(0x0F0F0F0F).or(h.lanewise(LSHR, 1).and(0x10101010));
                    p0 = lo.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 64));
                    p1 = hi.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 80));
                    p2 = ((IntVector) lo.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 96));
                    p3 = ((IntVector) hi.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 112));
                    sum = ((FloatVector) p0.add(p2).add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0))
                            .fma(scaleMin.rearrange(Q4_K.SUB_BLOCKS_4_6), sum);
                    sum = ((FloatVector) p1.add(p3).add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0))
                            .fma(scaleMin.rearrange(Q4_K.SUB_BLOCKS_5_7), sum);
                    a0 = sum.fma(FloatVector.broadcast(Simd.F, d), a0);
                }
            }
            FloatVector v = a0.add(a1);
            v = v.add(v.rearrange(Simd.FOLD_8));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            v = v.add(v.rearrange(Simd.FOLD_1));
            out[outOffset + r] = v.lane(0);
        }
        ReadAhead.keep(sink);
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q5_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        KQuantizer q = new KQuantizer(31, -0.5f, 0.1f, 15);
        for (int b = 0; b < blocks; b++) {
            long block = dstOffset + (long) b * BYTES;
            int[] levels = q.quantizeSuperBlock(src, srcOffset + b * QK, dst, block + D, block + DMIN, block + SCALES);
            for (int l = 0; l < 32; l++) {
                int high = 0;
                for (int j = 0; j < 8; j++) {
                    high |= (levels[32 * j + l] >>> 4) << j;
                }
                dst.set(Layouts.BYTE, block + QH + l, (byte) high);
            }
            for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                    int packed = (levels[64 * c + l] & 0xF) | ((levels[64 * c + 32 + l] & 0xF) << 4);
                    dst.set(Layouts.BYTE, block + QS + 32L * c + l, (byte) packed);
                }
            }
        }
    }
}
