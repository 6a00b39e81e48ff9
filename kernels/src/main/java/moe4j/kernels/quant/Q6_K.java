package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;
import java.util.function.IntUnaryOperator;
import java.util.stream.IntStream;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShuffle;

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
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
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
                if (vectors && Simd.BYTE_LANES) {
                    dequantizeSplitRun(src, ql + l0, lowShift, 0xF, qh + l0, highShift, 3, 4, 32, dl, 0f, dst,
                            out + 16 * g, 16);
                    continue;
                }
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

    /** Quants are kept unsigned (0..63); the offset of 32 becomes the minimum {@code 32*d*sc} of each 16-element group. */
    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        // written out without loops, the quants in 64-byte loads: see dotRows. Group g = 8*half + 2k (+1) takes
        // the low (k < 2) or high nibbles of quant bytes 64*half + 32*(k & 1) and bits 2k of high-bit bytes 32*half.
        float d = Halfs.readFp16(src, block + D);
        FloatVector dl = ((FloatVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                .convertShape(B2I, Simd.I, 0).convert(I2F, 0)).mul(d);
        float[] scales = s.scales;
        dl.intoArray(scales, 0);
        dl.mul(-32f).intoArray(scales, 16);
        ByteVector highBits = ByteVector.fromMemorySegment(Simd.B64, src, block + QH, Simd.LE);
        MemorySegment w = s.w;
        long e0 = s.at[slot];
        long gb = s.groupBytes;
        ByteVector low0 = ByteVector.fromMemorySegment(Simd.B64, src, block + QL, Simd.LE);
        IntVector l00 = (IntVector) low0.convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector l01 = (IntVector) low0.convertShape(ZERO_EXTEND_B2I, Simd.I, 1);
        IntVector l02 = (IntVector) low0.convertShape(ZERO_EXTEND_B2I, Simd.I, 2);
        IntVector l03 = (IntVector) low0.convertShape(ZERO_EXTEND_B2I, Simd.I, 3);
        IntVector h00 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHL, Simd.SHIFT_4);
        IntVector h01 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 1)).lanewise(LSHL, Simd.SHIFT_4);
        ((FloatVector) l00.and(0xF).or(h00.and(0x30)).convert(I2F, 0)).fma(scales[0], scales[16]).intoMemorySegment(w, e0, ScaledDot.NATIVE);
        ((FloatVector) l01.and(0xF).or(h01.and(0x30)).convert(I2F, 0)).fma(scales[1], scales[17]).intoMemorySegment(w, e0 + gb, ScaledDot.NATIVE);
        ((FloatVector) l02.and(0xF).or(h00.lanewise(LSHR, Simd.SHIFT_2).and(0x30)).convert(I2F, 0)).fma(scales[2], scales[18]).intoMemorySegment(w, e0 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) l03.and(0xF).or(h01.lanewise(LSHR, Simd.SHIFT_2).and(0x30)).convert(I2F, 0)).fma(scales[3], scales[19]).intoMemorySegment(w, e0 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) l00.lanewise(LSHR, Simd.SHIFT_4).or(h00.lanewise(LSHR, Simd.SHIFT_4).and(0x30)).convert(I2F, 0)).fma(scales[4], scales[20]).intoMemorySegment(w, e0 + 4 * gb, ScaledDot.NATIVE);
        ((FloatVector) l01.lanewise(LSHR, Simd.SHIFT_4).or(h01.lanewise(LSHR, Simd.SHIFT_4).and(0x30)).convert(I2F, 0)).fma(scales[5], scales[21]).intoMemorySegment(w, e0 + 5 * gb, ScaledDot.NATIVE);
        ((FloatVector) l02.lanewise(LSHR, Simd.SHIFT_4).or(h00.lanewise(LSHR, Simd.SHIFT_6).and(0x30)).convert(I2F, 0)).fma(scales[6], scales[22]).intoMemorySegment(w, e0 + 6 * gb, ScaledDot.NATIVE);
        ((FloatVector) l03.lanewise(LSHR, Simd.SHIFT_4).or(h01.lanewise(LSHR, Simd.SHIFT_6).and(0x30)).convert(I2F, 0)).fma(scales[7], scales[23]).intoMemorySegment(w, e0 + 7 * gb, ScaledDot.NATIVE);
        ByteVector low1 = ByteVector.fromMemorySegment(Simd.B64, src, block + QL + 64, Simd.LE);
        IntVector l10 = (IntVector) low1.convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector l11 = (IntVector) low1.convertShape(ZERO_EXTEND_B2I, Simd.I, 1);
        IntVector l12 = (IntVector) low1.convertShape(ZERO_EXTEND_B2I, Simd.I, 2);
        IntVector l13 = (IntVector) low1.convertShape(ZERO_EXTEND_B2I, Simd.I, 3);
        IntVector h10 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 2)).lanewise(LSHL, Simd.SHIFT_4);
        IntVector h11 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 3)).lanewise(LSHL, Simd.SHIFT_4);
        ((FloatVector) l10.and(0xF).or(h10.and(0x30)).convert(I2F, 0)).fma(scales[8], scales[24]).intoMemorySegment(w, e0 + 8 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.and(0xF).or(h11.and(0x30)).convert(I2F, 0)).fma(scales[9], scales[25]).intoMemorySegment(w, e0 + 9 * gb, ScaledDot.NATIVE);
        ((FloatVector) l12.and(0xF).or(h10.lanewise(LSHR, Simd.SHIFT_2).and(0x30)).convert(I2F, 0)).fma(scales[10], scales[26]).intoMemorySegment(w, e0 + 10 * gb, ScaledDot.NATIVE);
        ((FloatVector) l13.and(0xF).or(h11.lanewise(LSHR, Simd.SHIFT_2).and(0x30)).convert(I2F, 0)).fma(scales[11], scales[27]).intoMemorySegment(w, e0 + 11 * gb, ScaledDot.NATIVE);
        ((FloatVector) l10.lanewise(LSHR, Simd.SHIFT_4).or(h10.lanewise(LSHR, Simd.SHIFT_4).and(0x30)).convert(I2F, 0)).fma(scales[12], scales[28]).intoMemorySegment(w, e0 + 12 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.lanewise(LSHR, Simd.SHIFT_4).or(h11.lanewise(LSHR, Simd.SHIFT_4).and(0x30)).convert(I2F, 0)).fma(scales[13], scales[29]).intoMemorySegment(w, e0 + 13 * gb, ScaledDot.NATIVE);
        ((FloatVector) l12.lanewise(LSHR, Simd.SHIFT_4).or(h10.lanewise(LSHR, Simd.SHIFT_6).and(0x30)).convert(I2F, 0)).fma(scales[14], scales[30]).intoMemorySegment(w, e0 + 14 * gb, ScaledDot.NATIVE);
        ((FloatVector) l13.lanewise(LSHR, Simd.SHIFT_4).or(h11.lanewise(LSHR, Simd.SHIFT_6).and(0x30)).convert(I2F, 0)).fma(scales[15], scales[31]).intoMemorySegment(w, e0 + 15 * gb, ScaledDot.NATIVE);
    }

    @Override
    boolean hasRowKernel() { return true; }

    /** Few tokens run the row kernel per token ({@link BlockFormat#rowKernelBelow}). */
    @Override
    int rowKernelBelow() { return 7; }

    /**
     * The 64 low-bit bytes of half {@code h} as sixteen int lanes: byte {@code t} of lane {@code i} is quant byte
     * {@code 64h + 4i + t}, whose low nibble is element {@code 128h + 4i + t} and high nibble that plus 64; the high
     * bits come from the 32 bytes of half {@code h} repeated in both lane halves. With the high bits joined, vector
     * {@code v = 4h + 2*high + t} of a block's pairs is bytes {@code t} (upper half) and {@code t + 2} (lower half) of
     * those lanes.
     */
    static final LaneOrder PAIRS = LaneOrder.codePairs("Q6_K pairs", ActivationRounding.Q8_K,
            (v, i, high) -> 128 * (v / 4) + 64 * ((v / 2) % 2) + 4 * i + v % 2 + (high ? 0 : 2));

    /** Two 6-bit quants of a lane (bytes 0 and 2 of its four), in its two 16-bit halves. */
    private static final int PAIR_MASK = 0x003F003F;

    private static VectorShuffle<Integer> intLanes(IntUnaryOperator lane) {
        return Simd.FUSED ? VectorShuffle.fromOp(Simd.I, lane) : null;
    }

    private static IntVector halves(int low, int high) {
        return Simd.FUSED ? IntVector.fromArray(Simd.I, IntStream.range(0, 16).map(i -> i < 8 ? low : high).toArray(), 0)
                : null;
    }

    /** High-bit bytes of half 0 (lanes 0-7 of the 64-byte load) or half 1 (lanes 8-15), in both lane halves. */
    private static final VectorShuffle<Integer> HIGH_BITS_0 = intLanes(i -> i % 8);
    private static final VectorShuffle<Integer> HIGH_BITS_1 = intLanes(i -> 8 + i % 8);
    /** Moves the high bits of low-nibble elements (bits 0-1 in lanes 0-7, 2-3 in lanes 8-15) to bits 4-5. */
    private static final IntVector LOW_NIBBLE_HIGH_BITS = halves(4, 2);
    /** Moves the high bits of high-nibble elements (bits 4-5 in lanes 0-7, 6-7 in lanes 8-15) to bits 4-5. */
    private static final IntVector HIGH_NIBBLE_HIGH_BITS = halves(0, 2);

    /** Lane {@code i} takes group {@code first + i/4}: the four 16-element groups one lane vector spans. */
    private static VectorShuffle<Float> groups(int first) {
        return Simd.FUSED ? VectorShuffle.fromOp(Simd.F, lane -> first + lane / 4) : null;
    }

    private static final VectorShuffle<Float> GROUPS_0 = groups(0);
    private static final VectorShuffle<Float> GROUPS_4 = groups(4);
    private static final VectorShuffle<Float> GROUPS_8 = groups(8);
    private static final VectorShuffle<Float> GROUPS_12 = groups(12);

    @Override
    public LaneOrder laneOrder() { return PAIRS; }

    /**
     * The dot products of decoding, block after block, in integers: per half block one 64-byte load of low bits, the
     * high bits added to all four bytes of a lane at once, then bytes 0 and 2, and 1 and 3, of each lane multiplied by
     * the activations' code pairs ({@link #PAIRS}, see {@link LaneOrder}). The two products of a lane's four bytes are
     * summed (upper halves at most 4 * 63 * 127 = 32004, lower halves 2 * 63 * 127) before the upper halves are taken
     * and converted to float, then multiplied by the group scales (four groups per vector) times {@code d} and the
     * activations' scale. The offset of 32 is a float term against the activations' 16-element sums.
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
                    IntVector ql = IntVector.fromMemorySegment(Simd.I, src, block + QL, Simd.LE);
                    IntVector qh = IntVector.fromMemorySegment(Simd.I, src, block + QH, Simd.LE);
                    float d = Halfs.readFp16(src, block + D);
                    float dx = d * xd[dRow + b];
                    FloatVector scales = (FloatVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES, Simd.LE)
                            .convertShape(B2I, Simd.I, 0).convert(I2F, 0);
                    a1 = scales.mul(-32f * d).fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                    FloatVector dl = scales.mul(dx);
                    int e = pRow + b * LaneOrder.PAIRS;
                    IntVector hb = qh.rearrange(HIGH_BITS_0);
                    IntVector lo = ql.and(0x0F0F0F0F).or(hb.lanewise(LSHL, LOW_NIBBLE_HIGH_BITS).and(0x30303030));
                    IntVector hi = ql.lanewise(LSHR, Simd.SHIFT_4).and(0x0F0F0F0F)
                            .or(hb.lanewise(LSHR, HIGH_NIBBLE_HIGH_BITS).and(0x30303030));
                    IntVector s = lo.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e))
                            .add(((IntVector) lo.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                    .mul(wide
                                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                            : IntVector.fromArray(Simd.I, xp, e + 16)));
                    a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_0), a0);
                    s = hi.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 32))
                            .add(((IntVector) hi.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                    .mul(wide
                                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                            : IntVector.fromArray(Simd.I, xp, e + 48)));
                    a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_4), a1);
                    hb = qh.rearrange(HIGH_BITS_1);
                    ql = IntVector.fromMemorySegment(Simd.I, src, block + QL + 64, Simd.LE);
                    lo = ql.and(0x0F0F0F0F).or(hb.lanewise(LSHL, LOW_NIBBLE_HIGH_BITS).and(0x30303030));
                    hi = ql.lanewise(LSHR, Simd.SHIFT_4).and(0x0F0F0F0F).or(hb.lanewise(LSHR, HIGH_NIBBLE_HIGH_BITS).and(0x30303030));
                    s = lo.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 64))
                            .add(((IntVector) lo.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                    .mul(wide
                                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                            : IntVector.fromArray(Simd.I, xp, e + 80)));
                    a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_8), a0);
                    s = hi.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 96))
                            .add(((IntVector) hi.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                    .mul(wide
                                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                            : IntVector.fromArray(Simd.I, xp, e + 112)));
                    a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_12), a1);
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

    /**
     * Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}). Rows of 4096 in one loop streamed at 14
     * GB/s on one thread, against 25 in loops of 8 blocks.
     */
    private static final int SPAN = Simd.ROW_SPAN / QK;

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
