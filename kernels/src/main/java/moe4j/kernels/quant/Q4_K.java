package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShuffle;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of unsigned 4-bit quants in eight 32-element sub-blocks, each with a 6-bit
 * scale and 6-bit min multiplied by the fp16 super-scales: {@code y = (d*sc)*q - dmin*m}.
 */
public final class Q4_K extends BlockFormat {

    static final Q4_K INSTANCE = new Q4_K();

    private static final int QK = 256;
    /** Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}). */
    private static final int SPAN = Simd.ROW_SPAN / QK;
    private static final int BYTES = 144;
    private static final int D = 0;
    private static final int DMIN = 2;
    private static final int SCALES = 4;
    private static final int QS = 16;

    private Q4_K() { super(GgmlType.Q4_K, D, DMIN); }

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
                    dequantizeRun(src, qs, shift, 0xF, dl, ml, dst, out + 32 * j, 32);
                    continue;
                }
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
        // written out without loops, the quants in two 64-byte loads: see dotRows
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
        float low0 = scales[0];
        float high0 = scales[1];
        float lowMin0 = scales[8];
        float highMin0 = scales[9];
        float low1 = scales[2];
        float high1 = scales[3];
        float lowMin1 = scales[10];
        float highMin1 = scales[11];
        float low2 = scales[4];
        float high2 = scales[5];
        float lowMin2 = scales[12];
        float highMin2 = scales[13];
        float low3 = scales[6];
        float high3 = scales[7];
        float lowMin3 = scales[14];
        float highMin3 = scales[15];
        MemorySegment w = s.w;
        long e0 = s.at[slot];
        long gb = s.groupBytes;
        long e1 = e0 + 4 * gb;
        long e2 = e1 + 4 * gb;
        long e3 = e2 + 4 * gb;
        ((FloatVector) q0.and(0xF).convert(I2F, 0)).fma(low0, lowMin0).intoMemorySegment(w, e0, ScaledDot.NATIVE);
        ((FloatVector) q1.and(0xF).convert(I2F, 0)).fma(low0, lowMin0).intoMemorySegment(w, e0 + gb, ScaledDot.NATIVE);
        ((FloatVector) q0.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high0, highMin0).intoMemorySegment(w, e0 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) q1.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high0, highMin0).intoMemorySegment(w, e0 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) q2.and(0xF).convert(I2F, 0)).fma(low1, lowMin1).intoMemorySegment(w, e1, ScaledDot.NATIVE);
        ((FloatVector) q3.and(0xF).convert(I2F, 0)).fma(low1, lowMin1).intoMemorySegment(w, e1 + gb, ScaledDot.NATIVE);
        ((FloatVector) q2.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high1, highMin1).intoMemorySegment(w, e1 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) q3.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high1, highMin1).intoMemorySegment(w, e1 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) q4.and(0xF).convert(I2F, 0)).fma(low2, lowMin2).intoMemorySegment(w, e2, ScaledDot.NATIVE);
        ((FloatVector) q5.and(0xF).convert(I2F, 0)).fma(low2, lowMin2).intoMemorySegment(w, e2 + gb, ScaledDot.NATIVE);
        ((FloatVector) q4.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high2, highMin2).intoMemorySegment(w, e2 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) q5.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high2, highMin2).intoMemorySegment(w, e2 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) q6.and(0xF).convert(I2F, 0)).fma(low3, lowMin3).intoMemorySegment(w, e3, ScaledDot.NATIVE);
        ((FloatVector) q7.and(0xF).convert(I2F, 0)).fma(low3, lowMin3).intoMemorySegment(w, e3 + gb, ScaledDot.NATIVE);
        ((FloatVector) q6.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high3, highMin3).intoMemorySegment(w, e3 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) q7.lanewise(LSHR, Simd.SHIFT_4).convert(I2F, 0)).fma(high3, highMin3).intoMemorySegment(w, e3 + 3 * gb, ScaledDot.NATIVE);
    }

    @Override
    boolean hasRowKernel() { return true; }

    /**
     * Two tokens in the file's layout run the row kernel per token ({@link BlockFormat#rowKernelBelow}); repacked rows
     * take their own tiles.
     */
    @Override
    int rowKernelBelow() { return 3; }

    /**
     * 64 quant bytes (sub-blocks {@code 4p .. 4p+3}) as sixteen int lanes, lane {@code i} holding bytes {@code 4i .. 4i+3}:
     * byte {@code t}'s low nibble is element {@code 128p + 64(i/8) + 4(i%8) + t} and its high nibble that plus 32.
     * Vector {@code v = 4p + k} of a block's pairs is that load shifted right by {@code 4k} and masked with
     * {@link #PAIR_MASK}: nibble {@code k%2} of bytes {@code k/2} (lower half) and {@code k/2 + 2} (upper half), so its
     * activation pairs hold byte {@code k/2}'s element in their upper half and byte {@code k/2 + 2}'s in the lower.
     */
    static final LaneOrder PAIRS = LaneOrder.codePairs("Q4_K pairs", ActivationRounding.Q8_K,
            (v, i, high) -> 128 * (v / 4) + 64 * (i / 8) + 32 * (v % 2) + 4 * (i % 8) + (v % 4) / 2 + (high ? 0 : 2));

    /** Two nibbles of a lane, in its two 16-bit halves. */
    static final int PAIR_MASK = 0x000F000F;

    /** Added before the shift that takes a pair product's upper half, so that a negative lower half does not borrow. */
    static final IntVector HALF = Simd.FUSED ? IntVector.broadcast(Simd.I, 1 << 15) : null;
    static final IntVector SHIFT_8 = Simd.FUSED ? IntVector.broadcast(Simd.I, 8) : null;
    /** A 16-bit shift by 12 leaves a lane's top nibbles alone in its two halves: no mask after it. */
    static final ShortVector SHORT_SHIFT_12 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 12) : null;
    static final IntVector SHIFT_16 = Simd.FUSED ? IntVector.broadcast(Simd.I, 16) : null;
    /** 32 bytes of {@link PreparedActivations#bytePairs()}: one vector of pairs once widened. */
    static final jdk.incubator.vector.VectorSpecies<Byte> BYTE_PAIRS = ByteVector.SPECIES_256;

    /** Lanes 0-7 take the scale of sub-block {@code a}, lanes 8-15 that of {@code b}: how {@link #PAIRS} splits them. */
    private static VectorShuffle<Float> subBlockPair(int a, int b) {
        return Simd.FUSED ? VectorShuffle.fromOp(Simd.F, lane -> lane < 8 ? a : b) : null;
    }

    static final VectorShuffle<Float> SUB_BLOCKS_0_2 = subBlockPair(0, 2);
    static final VectorShuffle<Float> SUB_BLOCKS_1_3 = subBlockPair(1, 3);
    static final VectorShuffle<Float> SUB_BLOCKS_4_6 = subBlockPair(4, 6);
    static final VectorShuffle<Float> SUB_BLOCKS_5_7 = subBlockPair(5, 7);

    @Override
    public LaneOrder laneOrder() { return PAIRS; }

    /**
     * The dot products of decoding, block after block, in integers as llama.cpp's kernels compute them: each 64 quant
     * bytes are one load of sixteen int lanes, from which a shift and a mask leave two nibbles per lane (the top ones
     * a 16-bit shift alone, which empties what it leaves), and one
     * 32-bit multiply by the activations' code pairs ({@link #PAIRS}) adds two products per lane (see
     * {@link LaneOrder}). Two such products of the same sub-blocks are summed (upper halves at most 4 * 15 * 127, lower
     * halves at most 2 * 15 * 127, so nothing overflows) before the upper halves are taken, converted to float and
     * multiplied by the 6-bit scales there: every product and partial sum of a block stays below 2^24, so the float
     * sums equal the integer ones, and the float multiplies leave the port that the 32-bit integer multiplies (two
     * micro-operations each on Intel cores) queue on (Intel Xeon VM, one thread in L2: 8.0 -> 9.2 GB/s). The block's
     * sum is multiplied by {@code d} and the activations' scale. Minimums are a float term against the activations'
     * 16-element sums. Per 256 weights: 8 integer multiplies and 4 conversions, where the float kernel took 16
     * conversions and 16 multiply-adds (one thread, Zen 5, 2048-wide rows out of cache: 16.6 to 22.3 GB/s). The block
     * is written out without inner loops (the read-ahead's three loads unroll), so that it is C2's innermost loop; its
     * compiled form (Intel VM, 2026-11-28) still checks each load's offset against limits kept on the stack, some 45
     * scalar instructions a block beside about 60 vector ones. The fp16 scales are read at its top, as
     * {@code Float.float16ToFloat} is not inlined once the loop's graph is large (a call per block, with every vector
     * register spilled).
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
        long lastStart = src.byteSize() - BYTES;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    sink += ReadAhead.touchClamped(src, block, BYTES, lastStart);
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
                    IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                    IntVector p0 = q.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e));
                    IntVector p1 = q.lanewise(LSHR, Simd.SHIFT_4).and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 16));
                    IntVector p2 = q.lanewise(LSHR, SHIFT_8).and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 32));
                    IntVector p3 = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_12).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 48));
                    // the conversions written out: in a helper taking the vector, C2 left convert() a call (1.4 GB/s)
                    FloatVector sum = ((FloatVector) p0.add(p2).add(HALF).lanewise(ASHR, SHIFT_16).convert(I2F, 0))
                            .mul(scaleMin.rearrange(SUB_BLOCKS_0_2))
                            .add(((FloatVector) p1.add(p3).add(HALF).lanewise(ASHR, SHIFT_16).convert(I2F, 0))
                                    .mul(scaleMin.rearrange(SUB_BLOCKS_1_3)));
                    q = IntVector.fromMemorySegment(Simd.I, src, block + QS + 64, Simd.LE);
                    p0 = q.and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 64));
                    p1 = q.lanewise(LSHR, Simd.SHIFT_4).and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 80));
                    p2 = q.lanewise(LSHR, SHIFT_8).and(PAIR_MASK).mul(wide
                            ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e + 96));
                    p3 = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, SHORT_SHIFT_12).reinterpretAsInts())
                            .mul(wide
                                    ? ByteVector.fromArray(BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 112));
                    sum = ((FloatVector) p0.add(p2).add(HALF).lanewise(ASHR, SHIFT_16).convert(I2F, 0))
                            .fma(scaleMin.rearrange(SUB_BLOCKS_4_6), sum);
                    sum = ((FloatVector) p1.add(p3).add(HALF).lanewise(ASHR, SHIFT_16).convert(I2F, 0))
                            .fma(scaleMin.rearrange(SUB_BLOCKS_5_7), sum);
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
