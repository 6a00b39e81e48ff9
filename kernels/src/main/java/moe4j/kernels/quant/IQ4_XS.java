package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShuffle;

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

    /**
     * The 16 levels as two vectors of {@link Simd#L} lanes, levels {@code 0 .. L-1} and {@code L .. 2L-1} (with 16 lanes
     * the first holds them all and the second repeats it), for {@code selectFrom}'s two-vector lookup.
     */
    private static final IntVector LEVELS_LOW = levelVector(0);
    private static final IntVector LEVELS_HIGH = levelVector(Simd.L);

    private static IntVector levelVector(int from) {
        int[] lanes = new int[Simd.L];
        for (int i = 0; i < lanes.length; i++) {
            lanes[i] = IQ4_NL.LEVELS[(from + i) % IQ4_NL.LEVELS.length];
        }
        return IntVector.fromArray(Simd.I, lanes, 0);
    }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
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
                int j = 0;
                if (vectors && Simd.BYTE_LANES) {
                    // the levels by a two-vector lookup (16 of them in two 8-lane vectors at 256 bits), times dl as below
                    for (; j < 16; j += Simd.L) {
                        IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + j, Simd.LE)
                                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                        ((FloatVector) q.and(0xF).selectFrom(LEVELS_LOW, LEVELS_HIGH).convert(I2F, 0)).mul(dl)
                                .intoArray(dst, out + 32 * ib + j);
                        ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).selectFrom(LEVELS_LOW, LEVELS_HIGH)
                                .convert(I2F, 0)).mul(dl).intoArray(dst, out + 32 * ib + 16 + j);
                    }
                }
                for (; j < 16; j++) {
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

    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        float d = Halfs.readFp16(src, block + D);
        int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
        MemorySegment w = s.w;
        long wo = s.at[slot];
        long gb = s.groupBytes;
        for (int ib = 0; ib < QK / 32; ib++) {
            int ls = ((u8(src, block + SCALES_L + ib / 2) >>> (4 * (ib % 2))) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
            float dl = d * (ls - 32);
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + QS + 16L * ib, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            ((FloatVector) q.and(0xF).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .intoMemorySegment(w, wo + 2L * ib * gb, ScaledDot.NATIVE);
            ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).selectFrom(IQ4_NL.LEVEL_VECTOR).convert(I2F, 0)).mul(dl)
                    .intoMemorySegment(w, wo + (2L * ib + 1) * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    @Override
    boolean hasHalvesRowKernel() { return true; }

    /** Lane {@code ib < 8}: where sub-block {@code ib}'s low scale bits sit in the int at {@link #SCALES_L}. */
    private static final IntVector LOW_SCALE_SHIFTS = Simd.FUSED
            ? IntVector.fromArray(Simd.I, new int[] {0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0}, 0) : null;
    /** Lane {@code ib < 8}: where its high scale bits sit in the int at {@link #D} (fp16 d, then the high bits). */
    private static final IntVector HIGH_SCALE_SHIFTS = Simd.FUSED
            ? IntVector.fromArray(Simd.I, new int[] {16, 18, 20, 22, 24, 26, 28, 30, 0, 0, 0, 0, 0, 0, 0, 0}, 0) : null;

    /**
     * 64 quant bytes (sub-blocks {@code 4h .. 4h+3}) as 32 short lanes, lane {@code m} holding bytes {@code 2m, 2m+1}:
     * vector {@code v = 4h + n} of a block is that load shifted right by {@code 4n}, whose low 5 bits index
     * {@link #LEVEL_SHORTS}: nibble {@code n%2} of byte {@code 2m + n/2}. Byte {@code j} of sub-block {@code k} holds
     * element {@code 32k + j} in its low nibble and {@code 32k + 16 + j} in its high one.
     */
    static final LaneOrder SHORTS = LaneOrder.codeShorts("IQ4_XS shorts", ActivationRounding.Q8_K, (v, i, high) -> {
        int j = 2 * (2 * i + (high ? 1 : 0)) + (v % 4) / 2;
        return 128 * (v / 4) + 32 * (j / 16) + 16 * (v % 2) + j % 16;
    });

    /** With 256-bit vectors: the codes in natural order, 16 to a vector, for {@link #dotRowsCodes}. */
    static final LaneOrder NATURAL_SHORTS = LaneOrder.naturalShorts("IQ4_XS natural shorts", ActivationRounding.Q8_K);

    @Override
    public LaneOrder laneOrder() { return Simd.HALVES ? NATURAL_SHORTS : SHORTS; }

    /**
     * Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}). Whole rows of 4096 (16 blocks) in one loop
     * ran at 11.1 GB/s on one thread, loops of 8 blocks at 17.5 with the same body (JMH, three forks each).
     */
    private static final int SPAN = Simd.ROW_SPAN / QK;

    /**
     * The sixteen levels twice: the lookup wraps an index to its low 5 bits, and the fifth (the next nibble's lowest bit)
     * then makes no difference, so the shifted quants need no mask of their own.
     */
    private static final ShortVector LEVEL_SHORTS = Simd.FUSED ? ShortVector.fromArray(ShortVector.SPECIES_512, levelsTwice(), 0)
            : null;

    private static short[] levelsTwice() {
        short[] levels = new short[32];
        for (int i = 0; i < levels.length; i++) {
            levels[i] = IQ4_NL.LEVELS[i % 16];
        }
        return levels;
    }

    private static final ShortVector SHORT_SHIFT_4 = Simd.FUSED ? ShortVector.broadcast(ShortVector.SPECIES_512, (short) 4) : null;
    private static final ShortVector SHORT_SHIFT_8 = Simd.FUSED ? ShortVector.broadcast(ShortVector.SPECIES_512, (short) 8) : null;
    private static final ShortVector SHORT_SHIFT_12 = Simd.FUSED ? ShortVector.broadcast(ShortVector.SPECIES_512, (short) 12) : null;

    /** Lane {@code i} takes sub-block {@code first + i/4}: how a half block's int lanes split over its four sub-blocks. */
    private static VectorShuffle<Integer> subBlocks(int first) {
        return Simd.FUSED ? VectorShuffle.fromOp(Simd.I, lane -> first + lane / 4) : null;
    }

    private static final VectorShuffle<Integer> SUB_BLOCKS_0_3 = subBlocks(0);
    private static final VectorShuffle<Integer> SUB_BLOCKS_4_7 = subBlocks(4);

    /**
     * The dot products of decoding in integers, as llama.cpp computes IQ4_XS against Q8_K codes: per half block one
     * 64-byte load of quants as short lanes; shifted by 0, 4, 8 and 12 bits each indexes the table of levels (one
     * 16-bit permute, see {@link #SHORTS}), and a 16-bit multiply by the activations' codes gives 32 exact products
     * (at most 127 * 127). Two such products are summed in each short lane (at most 2 * 127 * 127 = 32258), then the two
     * short lanes of each int lane sign-extended and added; an int lane then holds eight products of one sub-block,
     * multiplied by its 6-bit signed scale. The block's sum goes to float once, times {@code d} and the activations'
     * scale. A row is cut into loops of {@link #SPAN} blocks. Per 256 weights: 8 table lookups and 8 multiplies, where
     * the float kernel took 8 lookups, 16 conversions and 16 multiply-adds (one thread, rows of 4096 out of cache:
     * 11.1 to 17.5 GB/s).
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        if (!Simd.FUSED) {
            if (x.laneOrder() == NATURAL_SHORTS) {
                dotRowsCodes(src, srcOffset, rowBytes, rows, x, token, out, outOffset);
            } else {
                dotRowsHalves(src, srcOffset, rowBytes, rows, x, token, out, outOffset);
            }
            return;
        }
        int width = x.width();
        // rows longer than BYTE_PAIRS_FROM read the codes a byte a value (PreparedActivations#bytePairs): a choice fixed
        // per call, which measured as fast in this one loop as in two copies of it
        boolean wide = width > PreparedActivations.BYTE_PAIRS_FROM;
        byte[] xb = x.bytePairs();
        int blocks = width / QK;
        int[] xp = x.codePairs();
        float[] xd = x.codeScales();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector acc = FloatVector.zero(Simd.F);
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    int head = src.get(Layouts.INT_LE, block + D);
                    float dx = Float.float16ToFloat((short) head) * xd[dRow + b];
                    IntVector ls = IntVector.broadcast(Simd.I, src.get(Layouts.INT_LE, block + SCALES_L))
                            .lanewise(LSHR, LOW_SCALE_SHIFTS).and(0xF)
                            .or(IntVector.broadcast(Simd.I, head).lanewise(LSHR, HIGH_SCALE_SHIFTS).and(3).lanewise(LSHL, Simd.SHIFT_4))
                            .sub(32);
                    int e = pRow + b * LaneOrder.PAIRS;
                    ShortVector q = ByteVector.fromMemorySegment(Simd.B64, src, block + QS, Simd.LE).reinterpretAsShorts();
                    IntVector p0 = q.selectFrom(LEVEL_SHORTS).mul(wide
                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0))
                            : IntVector.fromArray(Simd.I, xp, e).reinterpretAsShorts())
                            .add(q.lanewise(LSHR, SHORT_SHIFT_4).selectFrom(LEVEL_SHORTS)
                                    .mul(wide
                                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0))
                                            : IntVector.fromArray(Simd.I, xp, e + 16).reinterpretAsShorts()))
                            .reinterpretAsInts();
                    IntVector p1 = q.lanewise(LSHR, SHORT_SHIFT_8).selectFrom(LEVEL_SHORTS)
                            .mul(wide
                                    ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0))
                                    : IntVector.fromArray(Simd.I, xp, e + 32).reinterpretAsShorts())
                            .add(q.lanewise(LSHR, SHORT_SHIFT_12).selectFrom(LEVEL_SHORTS)
                                    .mul(wide
                                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0))
                                            : IntVector.fromArray(Simd.I, xp, e + 48).reinterpretAsShorts()))
                            .reinterpretAsInts();
                    IntVector half = p0.lanewise(LSHL, Q4_K.SHIFT_16).lanewise(ASHR, Q4_K.SHIFT_16).add(p0.lanewise(ASHR, Q4_K.SHIFT_16))
                            .add(p1.lanewise(LSHL, Q4_K.SHIFT_16).lanewise(ASHR, Q4_K.SHIFT_16).add(p1.lanewise(ASHR, Q4_K.SHIFT_16)));
                    IntVector sum = half.mul(ls.rearrange(SUB_BLOCKS_0_3));
                    q = ByteVector.fromMemorySegment(Simd.B64, src, block + QS + 64, Simd.LE).reinterpretAsShorts();
                    p0 = q.selectFrom(LEVEL_SHORTS).mul(wide
                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0))
                            : IntVector.fromArray(Simd.I, xp, e + 64).reinterpretAsShorts())
                            .add(q.lanewise(LSHR, SHORT_SHIFT_4).selectFrom(LEVEL_SHORTS)
                                    .mul(wide
                                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0))
                                            : IntVector.fromArray(Simd.I, xp, e + 80).reinterpretAsShorts()))
                            .reinterpretAsInts();
                    p1 = q.lanewise(LSHR, SHORT_SHIFT_8).selectFrom(LEVEL_SHORTS)
                            .mul(wide
                                    ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0))
                                    : IntVector.fromArray(Simd.I, xp, e + 96).reinterpretAsShorts())
                            .add(q.lanewise(LSHR, SHORT_SHIFT_12).selectFrom(LEVEL_SHORTS)
                                    .mul(wide
                                            ? ((ShortVector) ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0))
                                            : IntVector.fromArray(Simd.I, xp, e + 112).reinterpretAsShorts()))
                            .reinterpretAsInts();
                    half = p0.lanewise(LSHL, Q4_K.SHIFT_16).lanewise(ASHR, Q4_K.SHIFT_16).add(p0.lanewise(ASHR, Q4_K.SHIFT_16))
                            .add(p1.lanewise(LSHL, Q4_K.SHIFT_16).lanewise(ASHR, Q4_K.SHIFT_16).add(p1.lanewise(ASHR, Q4_K.SHIFT_16)));
                    sum = sum.add(half.mul(ls.rearrange(SUB_BLOCKS_4_7)));
                    acc = ((FloatVector) sum.convert(I2F, 0)).fma(FloatVector.broadcast(Simd.F, dx), acc);
                }
            }
            FloatVector v = acc;
            v = v.add(v.rearrange(Simd.FOLD_8));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            v = v.add(v.rearrange(Simd.FOLD_1));
            out[outOffset + r] = v.lane(0);
        }
    }

    /** The 16 levels as bytes, for a 16-byte lookup ({@code vpshufb}). */
    static final ByteVector LEVEL_BYTES = ByteVector.fromArray(Simd.HALF_SB, IQ4_NL.LEVELS, 0);

    /**
     * {@link #dotRows} with 256-bit vectors (AVX2) on the activations' codes ({@link #NATURAL_SHORTS}), as llama.cpp
     * multiplies IQ4_XS against Q8_K: a sub-block's 16 quant bytes looked up as bytes, their low nibbles (elements 0-15)
     * and high ones (16-31) each in one 16-byte table lookup, widened to 16-bit lanes and multiplied by their codes;
     * the two products of a lane added (at most {@code 2 * 127 * 127}, within 16 bits), the lanes' pairs added in 32
     * bits, times the sub-block's 6-bit signed scale, summed over the block in integers; the block's 8 lanes then to
     * float once, times {@code d} and the activations' scale, into one accumulator, folded as {@link Simd#sum}. Twice
     * the speed of {@link #dotRowsHalves}, which looks 8 values up with two {@code vpermd}, a compare and a blend and
     * converts each (Zen 3, JMH {@code matVecTwoThreads -p columns=4096}: 2.3-2.9 -> 4.8-6.1 GB/s).
     */
    private static void dotRowsCodes(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.codePairs();
        float[] xd = x.codeScales();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector acc = FloatVector.zero(Simd.HALF_F);
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    int head = src.get(Layouts.INT_LE, block + D);
                    float dx = Float.float16ToFloat((short) head) * xd[dRow + b];
                    int scalesL = src.get(Layouts.INT_LE, block + SCALES_L);
                    int p = pRow + b * (QK / 2);
                    IntVector sum = IntVector.zero(Simd.HALF_I);
                    for (int ib = 0; ib < QK / 32; ib++) {
                        ByteVector q = ByteVector.fromMemorySegment(Simd.HALF_SB, src, block + QS + 16L * ib,
                                Simd.LE);
                        ShortVector low = (ShortVector) q.and((byte) 0xF).selectFrom(LEVEL_BYTES)
                                .convertShape(B2S, Simd.HALF_S, 0);
                        ShortVector high = (ShortVector) q.reinterpretAsShorts().lanewise(LSHR, 4).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVEL_BYTES).convertShape(B2S, Simd.HALF_S, 0);
                        IntVector lanes = low.mul(IntVector.fromArray(Simd.HALF_I, pairs, p + 16 * ib).reinterpretAsShorts())
                                .add(high.mul(IntVector.fromArray(Simd.HALF_I, pairs, p + 16 * ib + 8).reinterpretAsShorts()))
                                .reinterpretAsInts();
                        int ls = (((scalesL >>> (4 * ib)) & 0xF) | (((head >>> (16 + 2 * ib)) & 3) << 4)) - 32;
                        sum = sum.add(lanes.lanewise(LSHL, 16).lanewise(ASHR, 16).add(lanes.lanewise(ASHR, 16)).mul(ls));
                    }
                    acc = ((FloatVector) sum.convertShape(I2F, Simd.HALF_F, 0)).fma(FloatVector.broadcast(Simd.HALF_F, dx), acc);
                }
            }
            // Simd.sum written out (a call would box the vector)
            FloatVector v = acc.add(acc.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            out[outOffset + r] = v.add(v.rearrange(Simd.FOLD_1)).lane(0);
        }
    }

    /**
     * {@link #dotRows} in 8 float lanes (AVX2) on the activations' floats, for rows prepared without codes (natural
     * order): a sub-block's four groups of 8 (the low
     * nibbles of its bytes 0-7 and 8-15, then the high ones) go to the four accumulators in turn, the order
     * {@link DecodedDot#dot} sums in at that width, each decoded as {@link #dequantizeBlocks} decodes it (the levels by a
     * two-vector lookup, times {@code d * (ls - 32)}): the same bits as that path, without its pass through a scratch
     * buffer (Zen 3, JMH one thread in cache 1.3 -> 1.5-1.8 GB/s, two threads from memory 2.3-2.4 -> 2.8-3.4). The
     * lookup is the cost: C2 gives the two-vector {@code selectFrom} two {@code vpermd}, a compare and a blend; looking
     * the nibbles up as 16 bytes ({@code ByteVector.SPECIES_128}) and widening them 8 at a time was slower (1.1).
     */
    private static void dotRowsHalves(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        float[] xv = x.values();
        int xRow = token * width;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            FloatVector a2 = a0;
            FloatVector a3 = a0;
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    float d = Halfs.readFp16(src, block + D);
                    int scalesH = src.get(Layouts.SHORT_LE, block + SCALES_H) & 0xFFFF;
                    int scalesL = src.get(Layouts.INT_LE, block + SCALES_L);
                    for (int ib = 0; ib < QK / 32; ib++) {
                        int ls = ((scalesL >>> (4 * ib)) & 0xF) | (((scalesH >>> (2 * ib)) & 3) << 4);
                        float dl = d * (ls - 32);
                        long qs = block + QS + 16L * ib;
                        int e = xRow + QK * b + 32 * ib;
                        IntVector first = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs, Simd.LE)
                                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                        IntVector second = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + 8, Simd.LE)
                                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                        a0 = ((FloatVector) first.and(0xF).selectFrom(LEVELS_LOW, LEVELS_HIGH).convert(I2F, 0)).mul(dl)
                                .fma(FloatVector.fromArray(Simd.F, xv, e), a0);
                        a1 = ((FloatVector) second.and(0xF).selectFrom(LEVELS_LOW, LEVELS_HIGH).convert(I2F, 0)).mul(dl)
                                .fma(FloatVector.fromArray(Simd.F, xv, e + 8), a1);
                        a2 = ((FloatVector) first.lanewise(LSHR, 4).selectFrom(LEVELS_LOW, LEVELS_HIGH).convert(I2F, 0))
                                .mul(dl).fma(FloatVector.fromArray(Simd.F, xv, e + 16), a2);
                        a3 = ((FloatVector) second.lanewise(LSHR, 4).selectFrom(LEVELS_LOW, LEVELS_HIGH).convert(I2F, 0))
                                .mul(dl).fma(FloatVector.fromArray(Simd.F, xv, e + 24), a3);
                    }
                }
            }
            // DecodedDot.combine written out: as a call it was not inlined here and boxed its four vectors each row
            FloatVector v = a0.add(a1).add(a2.add(a3));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            out[outOffset + r] = v.add(v.rearrange(Simd.FOLD_1)).lane(0);
        }
    }
}
