package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.LSHL;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShuffle;

import moe4j.gguf.GgmlType;

/**
 * 256-element super-block of 3-bit signed quants (2 low bits plus a high-bit mask); sixteen 6-bit
 * signed group scales times one fp16 super-scale.
 */
public final class Q3_K extends BlockFormat {

    static final Q3_K INSTANCE = new Q3_K();

    private static final int QK = 256;
    private static final int BYTES = 110;
    private static final int HMASK = 0;
    private static final int QS = 32;
    private static final int SCALES = 96;
    private static final int D = 108;

    private Q3_K() { super(GgmlType.Q3_K, D); }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block + D);
            for (int g = 0; g < QK / 16; g++) {
                float dl = d * KQuantScales.q3Scale(src, block + SCALES, g);
                int half = g >>> 3;
                int k = (g >>> 1) & 3;
                int shift = 2 * k;
                int hbit = 4 * half + k;
                int l0 = 16 * (g & 1);
                long qs = block + QS + 32L * half;
                if (vectors && Simd.BYTE_LANES) {
                    // (q2 | 4 * high) - 4 is the scalar loop's q2 - (high != 0 ? 0 : 4)
                    dequantizeSplitRun(src, qs + l0, shift, 3, block + HMASK + l0, hbit, 1, 2, 4, dl, 0f, dst,
                            out + 16 * g, 16);
                    continue;
                }
                for (int l = l0; l < l0 + 16; l++) {
                    int q2 = (u8(src, qs + l) >>> shift) & 3;
                    int high = (u8(src, block + HMASK + l) >>> hbit) & 1;
                    dst[out + 16 * g + l - l0] = dl * (q2 - (high != 0 ? 0 : 4));
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
        KQuantScales.q3ScaleProducts(src, block + SCALES, Halfs.readFp16(src, block + D), state, DecodedDot.FUSED_SCRATCH);
        IntVector m0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + HMASK, Simd.LE).convertShape(B2I, Simd.I, 0);
        IntVector m1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + HMASK + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
        for (int hk = 0; hk < 8; hk++) {
            int half = hk >>> 2;
            int k = hk & 3;
            int g = 8 * half + 2 * k;
            IntVector shift = IntVector.broadcast(Simd.I, 2 * k);
            IntVector bit = IntVector.broadcast(Simd.I, 4 * half + k);
            long qs = block + QS + 32L * half;
            IntVector l0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector l1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, qs + 16, Simd.LE).convertShape(B2I, Simd.I, 0);
            // q = q2 - 4 + 4 * highBit, formed as (q2 | highBit << 2) - 4
            IntVector q0 = l0.lanewise(ASHR, shift).and(3).or(m0.lanewise(ASHR, bit).and(1).lanewise(LSHL, Simd.SHIFT_2));
            IntVector q1 = l1.lanewise(ASHR, shift).and(3).or(m1.lanewise(ASHR, bit).and(1).lanewise(LSHL, Simd.SHIFT_2));
            FloatVector w0 = ((FloatVector) q0.sub(4).convert(I2F, 0)).mul(state[DecodedDot.FUSED_SCRATCH + g]);
            FloatVector w1 = ((FloatVector) q1.sub(4).convert(I2F, 0)).mul(state[DecodedDot.FUSED_SCRATCH + g + 1]);
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

    /** Quants are kept unsigned ({@code low2 + 4*hbit}, 0..7); the offset of 4 becomes the minimum {@code 4*d*sc}. */
    @Override
    boolean decodesScaled() { return true; }

    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        // written out without loops, the quants in 64-byte loads: see Q4_K.decodeScaled. Group g = 8*half + 2k (+1)
        // takes bits 2k of quant bytes 32*half (+16) and bit 4*half + k of high-bit bytes 0 (+16).
        IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES - 4, Simd.LE)
                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector low = raw.rearrange(KQuantScales.Q3_LOW).lanewise(LSHR, KQuantScales.Q3_LOW_SHIFT).and(0xF);
        IntVector high = raw.rearrange(KQuantScales.Q3_HIGH).lanewise(LSHR, KQuantScales.Q3_HIGH_SHIFT).and(3)
                .lanewise(LSHL, Simd.SHIFT_4);
        FloatVector products = ((FloatVector) low.or(high).sub(32).convert(I2F, 0)).mul(Halfs.readFp16(src, block + D));
        float[] scales = s.scales;
        products.intoArray(scales, 0);
        products.mul(-4f).intoArray(scales, 16);
        ByteVector highBits = ByteVector.fromMemorySegment(Simd.B64, src, block + HMASK, Simd.LE);
        IntVector m0 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHL, Simd.SHIFT_2);
        IntVector m1 = ((IntVector) highBits.convertShape(ZERO_EXTEND_B2I, Simd.I, 1)).lanewise(LSHL, Simd.SHIFT_2);
        ByteVector quants = ByteVector.fromMemorySegment(Simd.B64, src, block + QS, Simd.LE);
        IntVector l00 = (IntVector) quants.convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
        IntVector l01 = (IntVector) quants.convertShape(ZERO_EXTEND_B2I, Simd.I, 1);
        IntVector l10 = (IntVector) quants.convertShape(ZERO_EXTEND_B2I, Simd.I, 2);
        IntVector l11 = (IntVector) quants.convertShape(ZERO_EXTEND_B2I, Simd.I, 3);
        MemorySegment w = s.w;
        long e0 = s.at[slot];
        long gb = s.groupBytes;
        ((FloatVector) l00.and(3).or(m0.and(4)).convert(I2F, 0)).fma(scales[0], scales[16]).intoMemorySegment(w, e0, ScaledDot.NATIVE);
        ((FloatVector) l01.and(3).or(m1.and(4)).convert(I2F, 0)).fma(scales[1], scales[17]).intoMemorySegment(w, e0 + gb, ScaledDot.NATIVE);
        ((FloatVector) l00.lanewise(LSHR, Simd.SHIFT_2).and(3).or(m0.lanewise(LSHR, IntVector.broadcast(Simd.I, 1)).and(4)).convert(I2F, 0)).fma(scales[2], scales[18]).intoMemorySegment(w, e0 + 2 * gb, ScaledDot.NATIVE);
        ((FloatVector) l01.lanewise(LSHR, Simd.SHIFT_2).and(3).or(m1.lanewise(LSHR, IntVector.broadcast(Simd.I, 1)).and(4)).convert(I2F, 0)).fma(scales[3], scales[19]).intoMemorySegment(w, e0 + 3 * gb, ScaledDot.NATIVE);
        ((FloatVector) l00.lanewise(LSHR, Simd.SHIFT_4).and(3).or(m0.lanewise(LSHR, Simd.SHIFT_2).and(4)).convert(I2F, 0)).fma(scales[4], scales[20]).intoMemorySegment(w, e0 + 4 * gb, ScaledDot.NATIVE);
        ((FloatVector) l01.lanewise(LSHR, Simd.SHIFT_4).and(3).or(m1.lanewise(LSHR, Simd.SHIFT_2).and(4)).convert(I2F, 0)).fma(scales[5], scales[21]).intoMemorySegment(w, e0 + 5 * gb, ScaledDot.NATIVE);
        ((FloatVector) l00.lanewise(LSHR, Simd.SHIFT_6).and(3).or(m0.lanewise(LSHR, IntVector.broadcast(Simd.I, 3)).and(4)).convert(I2F, 0)).fma(scales[6], scales[22]).intoMemorySegment(w, e0 + 6 * gb, ScaledDot.NATIVE);
        ((FloatVector) l01.lanewise(LSHR, Simd.SHIFT_6).and(3).or(m1.lanewise(LSHR, IntVector.broadcast(Simd.I, 3)).and(4)).convert(I2F, 0)).fma(scales[7], scales[23]).intoMemorySegment(w, e0 + 7 * gb, ScaledDot.NATIVE);
        ((FloatVector) l10.and(3).or(m0.lanewise(LSHR, Simd.SHIFT_4).and(4)).convert(I2F, 0)).fma(scales[8], scales[24]).intoMemorySegment(w, e0 + 8 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.and(3).or(m1.lanewise(LSHR, Simd.SHIFT_4).and(4)).convert(I2F, 0)).fma(scales[9], scales[25]).intoMemorySegment(w, e0 + 9 * gb, ScaledDot.NATIVE);
        ((FloatVector) l10.lanewise(LSHR, Simd.SHIFT_2).and(3).or(m0.lanewise(LSHR, IntVector.broadcast(Simd.I, 5)).and(4)).convert(I2F, 0)).fma(scales[10], scales[26]).intoMemorySegment(w, e0 + 10 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.lanewise(LSHR, Simd.SHIFT_2).and(3).or(m1.lanewise(LSHR, IntVector.broadcast(Simd.I, 5)).and(4)).convert(I2F, 0)).fma(scales[11], scales[27]).intoMemorySegment(w, e0 + 11 * gb, ScaledDot.NATIVE);
        ((FloatVector) l10.lanewise(LSHR, Simd.SHIFT_4).and(3).or(m0.lanewise(LSHR, Simd.SHIFT_6).and(4)).convert(I2F, 0)).fma(scales[12], scales[28]).intoMemorySegment(w, e0 + 12 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.lanewise(LSHR, Simd.SHIFT_4).and(3).or(m1.lanewise(LSHR, Simd.SHIFT_6).and(4)).convert(I2F, 0)).fma(scales[13], scales[29]).intoMemorySegment(w, e0 + 13 * gb, ScaledDot.NATIVE);
        ((FloatVector) l10.lanewise(LSHR, Simd.SHIFT_6).and(3).or(m0.lanewise(LSHR, IntVector.broadcast(Simd.I, 7)).and(4)).convert(I2F, 0)).fma(scales[14], scales[30]).intoMemorySegment(w, e0 + 14 * gb, ScaledDot.NATIVE);
        ((FloatVector) l11.lanewise(LSHR, Simd.SHIFT_6).and(3).or(m1.lanewise(LSHR, IntVector.broadcast(Simd.I, 7)).and(4)).convert(I2F, 0)).fma(scales[15], scales[31]).intoMemorySegment(w, e0 + 15 * gb, ScaledDot.NATIVE);
    }

    @Override
    boolean hasRowKernel() { return true; }

    /** Few tokens run the row kernel per token ({@link BlockFormat#rowKernelBelow}). */
    @Override
    int rowKernelBelow() { return 7; }

    /**
     * The 64 quant bytes as sixteen int lanes: byte {@code t} of lane {@code i} is quant byte {@code 4i + t}, whose
     * bits {@code 2k, 2k+1} are element {@code 128(i/8) + 32k + 4(i%8) + t}; the high bits come from the 32 mask bytes
     * repeated in both lane halves. With the high bit joined, vector {@code v = 2k + t} of a block's pairs is bytes
     * {@code t} (upper half) and {@code t + 2} (lower half) of those lanes' bit pair {@code k}.
     */
    static final LaneOrder PAIRS = LaneOrder.codePairs("Q3_K pairs", ActivationRounding.Q8_K,
            (v, i, high) -> 128 * (i / 8) + 32 * (v / 2) + 4 * (i % 8) + v % 2 + (high ? 0 : 2));

    /** Mask bytes 0-31 in both lane halves; the second half's bits are those of elements 128 and up (bits 4-7). */
    private static final VectorShuffle<Integer> MASK_BYTES = Simd.FUSED ? VectorShuffle.fromOp(Simd.I, i -> i % 8) : null;
    private static final IntVector MASK_HALF_SHIFT = Simd.FUSED
            ? IntVector.fromArray(Simd.I, new int[] {0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4}, 0) : null;

    /** Lane {@code i} takes group {@code 2k + i/4} (lanes 0-7) or {@code 8 + 2k + (i-8)/4}: the groups of bit pair {@code k}. */
    private static VectorShuffle<Float> groups(int k) {
        return Simd.FUSED ? VectorShuffle.fromOp(Simd.F, i -> 8 * (i / 8) + 2 * k + (i % 8) / 4) : null;
    }

    static final VectorShuffle<Float> GROUPS_0 = groups(0);
    static final VectorShuffle<Float> GROUPS_1 = groups(1);
    static final VectorShuffle<Float> GROUPS_2 = groups(2);
    static final VectorShuffle<Float> GROUPS_3 = groups(3);

    /** Vector shift counts: C2 kept this kernel's registers better with them than with immediate counts (measured). */
    private static final IntVector SHIFT_1 = Simd.FUSED ? IntVector.broadcast(Simd.I, 1) : null;
    private static final IntVector SHIFT_3 = Simd.FUSED ? IntVector.broadcast(Simd.I, 3) : null;

    @Override
    public LaneOrder laneOrder() { return PAIRS; }

    /**
     * The dot products of decoding, block after block, in integers: one 64-byte load of low bits, the high bit joined
     * to all four bytes of a lane at once, then bytes 0 and 2 (a mask), and 1 and 3 (a 16-bit shift, which empties the
     * bytes it leaves), of each lane multiplied by the activations' code pairs ({@link #PAIRS}, see {@link LaneOrder});
     * the upper halves of a lane's two products (its four bytes) go to float and are multiplied by the group scales
     * times {@code d} and the activations' scale. The offset of 4 is a float term against the activations' 16-element
     * sums. Bit pairs 1 and 3 are not shifted down: they stay two bits up, as four times the quant (4 * 4 * 7 * 128
     * still fits a product's 16-bit upper half), and the shift that takes the upper half goes two bits further, which
     * removes the factor exactly. Each instruction counts here: this kernel is bound by how many it issues, not by
     * memory (bench/CPU-NOTES.md, JMH).
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
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            long block = row;
            for (int b = 0; b < blocks; b++, block += BYTES) {
                IntVector m = IntVector.fromMemorySegment(Simd.I, src, block + HMASK, Simd.LE).rearrange(MASK_BYTES)
                        .lanewise(LSHR, MASK_HALF_SHIFT);
                IntVector q = IntVector.fromMemorySegment(Simd.I, src, block + QS, Simd.LE);
                float d = Halfs.readFp16(src, block + D);
                float dx = d * xd[dRow + b];
                IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + SCALES - 4, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector low = raw.rearrange(KQuantScales.Q3_LOW).lanewise(LSHR, KQuantScales.Q3_LOW_SHIFT).and(0xF);
                IntVector high = raw.rearrange(KQuantScales.Q3_HIGH).lanewise(LSHR, KQuantScales.Q3_HIGH_SHIFT).and(3)
                        .lanewise(LSHL, Simd.SHIFT_4);
                FloatVector scales = (FloatVector) low.or(high).sub(32).convert(I2F, 0);
                a1 = scales.mul(-4f * d).fma(FloatVector.fromArray(Simd.F, sums, sRow + b * (QK / PreparedActivations.SUM_GROUP)), a1);
                FloatVector dl = scales.mul(dx);
                int e = pRow + b * LaneOrder.PAIRS;
                IntVector q4 = q.lanewise(LSHR, Simd.SHIFT_4);
                IntVector u = q.and(0x03030303).or(m.lanewise(LSHL, Simd.SHIFT_2).and(0x04040404));
                IntVector s = u.and(0x00FF00FF).mul(wide
                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                        : IntVector.fromArray(Simd.I, xp, e))
                        .add(((IntVector) u.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                .mul(wide
                                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                        : IntVector.fromArray(Simd.I, xp, e + 16)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_0), a0);
                u = q.and(0x0C0C0C0C).or(m.lanewise(LSHL, SHIFT_3).and(0x10101010));
                s = u.and(0x00FF00FF).mul(wide
                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                        : IntVector.fromArray(Simd.I, xp, e + 32))
                        .add(((IntVector) u.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                .mul(wide
                                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                        : IntVector.fromArray(Simd.I, xp, e + 48)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q2_K.SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(GROUPS_1), a1);
                u = q4.and(0x03030303).or(m.and(0x04040404));
                s = u.and(0x00FF00FF).mul(wide
                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 64)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                        : IntVector.fromArray(Simd.I, xp, e + 64))
                        .add(((IntVector) u.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                .mul(wide
                                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 80)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                        : IntVector.fromArray(Simd.I, xp, e + 80)));
                a0 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16).convert(I2F, 0)).fma(dl.rearrange(GROUPS_2), a0);
                u = q4.and(0x0C0C0C0C).or(m.lanewise(LSHL, SHIFT_1).and(0x10101010));
                s = u.and(0x00FF00FF).mul(wide
                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 96)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                        : IntVector.fromArray(Simd.I, xp, e + 96))
                        .add(((IntVector) u.reinterpretAsShorts().lanewise(LSHR, Simd.SHORT_SHIFT_8).reinterpretAsInts())
                                .mul(wide
                                        ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 112)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                        : IntVector.fromArray(Simd.I, xp, e + 112)));
                a1 = ((FloatVector) s.add(Q4_K.HALF).lanewise(ASHR, Q2_K.SHIFT_18).convert(I2F, 0)).fma(dl.rearrange(GROUPS_3), a1);
            }
            FloatVector v = a0.add(a1);
            v = v.add(v.rearrange(Simd.FOLD_8));
            v = v.add(v.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            v = v.add(v.rearrange(Simd.FOLD_1));
            out[outOffset + r] = v.lane(0);
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q3_K_ref. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        int[] levels = new int[QK];
        float[] scales = new float[QK / 16];
        int[] codes = new int[QK / 16];
        for (int b = 0; b < blocks; b++) {
            int x = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float maxScale = 0;
            float amax = 0;
            for (int j = 0; j < QK / 16; ++j) {
                scales[j] = QuantMath.makeQ3QuantsRmse(16, 4, src, x + 16 * j, levels, 16 * j);
                float scale = Math.abs(scales[j]);
                if (scale > amax) {
                    amax = scale;
                    maxScale = scales[j];
                }
            }
            float d;
            if (maxScale != 0) {
                float iscale = -32.f / maxScale;
                for (int j = 0; j < QK / 16; ++j) {
                    int l = (byte) QuantMath.nearestInt(iscale * scales[j]);
                    codes[j] = Math.max(-32, Math.min(31, l)) + 32;
                }
                d = Halfs.writeFp16(dst, block + D, 1 / iscale);
            } else {
                Arrays.fill(codes, 0);
                d = Halfs.writeFp16(dst, block + D, 0.f);
            }
            KQuantScales.packQ3(codes, dst, block + SCALES);

            for (int j = 0; j < QK / 16; ++j) {
                float dj = d * (codes[j] - 32);
                if (dj == 0) {
                    continue;
                }
                for (int i = 0; i < 16; ++i) {
                    int l = QuantMath.nearestInt(src[x + 16 * j + i] / dj);
                    levels[16 * j + i] = Math.max(-4, Math.min(3, l)) + 4;
                }
            }

            // high bit of element e goes to hmask byte e%32, bit e/32
            for (int m = 0; m < 32; m++) {
                int mask = 0;
                for (int bit = 0; bit < 8; bit++) {
                    int e = 32 * bit + m;
                    if (levels[e] > 3) {
                        mask |= 1 << bit;
                        levels[e] -= 4;
                    }
                }
                dst.set(Layouts.BYTE, block + HMASK + m, (byte) mask);
            }
            for (int half = 0; half < 2; half++) {
                int e = 128 * half;
                for (int l = 0; l < 32; ++l) {
                    int packed = levels[e + l] | (levels[e + l + 32] << 2) | (levels[e + l + 64] << 4)
                            | (levels[e + l + 96] << 6);
                    dst.set(Layouts.BYTE, block + QS + 32L * half + l, (byte) packed);
                }
            }
        }
    }
}
