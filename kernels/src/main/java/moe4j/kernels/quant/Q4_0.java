package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorShuffle;

import moe4j.gguf.GgmlType;

/** 32 4-bit quants (offset 8) times one fp16 scale: {@code y = (q - 8) * d}. */
public final class Q4_0 extends BlockFormat {

    static final Q4_0 INSTANCE = new Q4_0();

    private static final int QK = 32;
    private static final int BYTES = 18;

    private Q4_0() { super(GgmlType.Q4_0, 0); }

    // vector constants rather than scalar operands, which C2 re-broadcast from memory in every iteration of
    // the row kernel's inner loop
    private static final IntVector LOW_NIBBLE = IntVector.broadcast(Simd.I, 0xF);
    private static final IntVector OFFSET = IntVector.broadcast(Simd.I, 8);

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            int j = 0;
            if (vectors && Simd.BYTE_LANES) {
                // the scalar loop's integer times d: the same bits
                for (; j < QK / 2; j += Simd.L) {
                    IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2 + j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                    ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d).intoArray(dst, out + j);
                    ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d)
                            .intoArray(dst, out + j + QK / 2);
                }
            }
            for (; j < QK / 2; j++) {
                int q = u8(src, block + 2 + j);
                dst[out + j] = ((q & 0xF) - 8) * d;
                dst[out + j + QK / 2] = ((q >>> 4) - 8) * d;
            }
        }
    }

    /**
     * Fused dot product. Block {@code b} is groups {@code 2b, 2b+1}; see {@link Q4_K#dotBlocks}. The bytes are
     * zero-extended so that the high nibble is one logical shift with no mask.
     */
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
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d);
            FloatVector w1 = ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d);
            FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, x, e), a0);
            FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a0 = a2;
            a1 = a3;
            a2 = n0;
            a3 = n1;
        }
        return DecodedDot.combine(a0, a1, a2, a3);
    }

    @Override
    boolean decodesScaled() { return true; }

    /** Eight blocks: low nibbles are group {@code 2b}, high nibbles group {@code 2b+1}, each {@code (q - 8) * d}. */
    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        MemorySegment w = s.w;
        long e = s.at[slot];
        long gb = s.groupBytes;
        for (int b = 0; b < ScaledDot.QK / QK; b++) {
            long at = block + (long) b * BYTES;
            float d = Halfs.readFp16(src, at);
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 2, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d).intoMemorySegment(w, e + 2L * b * gb, ScaledDot.NATIVE);
            ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d)
                    .intoMemorySegment(w, e + (2L * b + 1) * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    @Override
    boolean hasHalvesRowKernel() { return true; }

    /** Two to four tokens run the row kernel per token ({@link BlockFormat#rowKernelBelow}). */
    @Override
    int rowKernelBelow() { return 5; }

    /**
     * Four blocks (72 bytes) as int lanes, lane {@code 4k + c} holding quant bytes {@code 4c .. 4c+3} of block {@code k}:
     * byte {@code t}'s low nibble is element {@code t} of the block, its high nibble element {@code t + 16}. Vector
     * {@code v = 4g + s} of a 256-element block (groups {@code g} of four blocks) is that arrangement shifted right by
     * {@code 4s} and masked with {@link Q4_K#PAIR_MASK}: nibble {@code s%2} of bytes {@code 4c + s/2} (lower half) and
     * {@code 4c + s/2 + 2} (upper half), so its activation pairs hold the first one's element in their upper half.
     */
    static final LaneOrder PAIRS = LaneOrder.codePairs("Q4_0 pairs", ActivationRounding.Q8_0,
            (v, i, high) -> 128 * (v / 4) + 32 * (i / 4) + 16 * (v % 2) + 4 * (i % 4) + (v % 4) / 2 + (high ? 0 : 2));

    @Override
    public LaneOrder laneOrder() { return PAIRS; }

    /** Blocks per group: one 64-byte vector of quants. */
    private static final int GROUP = 4;
    /** Quant byte {@code 16k + t} of a group at byte {@code 18k + 2 + t}; the second table starts 8 bytes in (see dotRows). */
    private static final ByteVector GROUP_QUANTS = Simd.FUSED ? ByteVector.fromArray(Simd.B64, groupBytes(false), 0) : null;
    /** Int lane {@code 4k + c}'s upper 16 bits: block {@code k}'s fp16 scale (its lower 16 bits repeat it). */
    private static final ByteVector GROUP_SCALES = Simd.FUSED ? ByteVector.fromArray(Simd.B64, groupBytes(true), 0) : null;

    /** Indexes into the 72 bytes of a group held as two 64-byte vectors, the second loaded 8 bytes after the first. */
    private static byte[] groupBytes(boolean scales) {
        byte[] index = new byte[64];
        for (int j = 0; j < 64; j++) {
            int block = j / 16;
            int at = scales ? BYTES * block + j % 2 : BYTES * block + 2 + j % 16;
            index[j] = (byte) (at < 64 ? at : 64 + at - 8);
        }
        return index;
    }

    /** Lane {@code 4k + c} takes element {@code k}: one scale per block, to the block's four lanes. */
    private static final VectorShuffle<Float> SPREAD_4 = Simd.FUSED ? VectorShuffle.fromOp(Simd.F, lane -> lane / 4) : null;
    private static final IntVector HALF_OFFSETS = Simd.FUSED ? IntVector.broadcast(Simd.I, 8 + (8 << 16)) : null;
    /** An fp16 value in the upper half of an int, shifted right by 3 (sign extending) and masked: its bits in a float's. */
    private static final IntVector FP16_FIELDS = Simd.FUSED ? IntVector.broadcast(Simd.I, 0x8FFFE000) : null;
    private static final IntVector FP16_EXPONENT = Simd.FUSED ? IntVector.broadcast(Simd.I, 0x0F800000) : null;
    private static final IntVector FLOAT_EXPONENT_TOP = Simd.FUSED ? IntVector.broadcast(Simd.I, 0x70000000) : null;
    /**
     * Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}), a multiple of {@link #GROUP}. Whole rows of
     * 4096 in one loop (32 groups) streamed at half the rate (one thread: 9.5 GB/s; loops of 31 groups alike), loops of
     * 12 to 24 groups at 19.5-20.
     */
    private static final int SPAN = Simd.ROW_SPAN / QK;

    static {
        assert SPAN % GROUP == 0 : "SPAN must be a multiple of GROUP";
    }

    private static final IntVector SHIFT_3 = Simd.FUSED ? IntVector.broadcast(Simd.I, 3) : null;

    /**
     * The dot products of decoding in integers, as llama.cpp computes Q4_0 against Q8_0 activations: four blocks at a
     * time, their 72 bytes loaded as two overlapping 64-byte vectors from which one two-table byte shuffle gathers the 64
     * quant bytes (see {@link #PAIRS}) and another the four fp16 scales. Each 32 quants become {@code qLow + 65536 *
     * qHigh} with {@code 8 + 65536 * 8} subtracted, the signed quants {@code q - 8} in both halves, and one 32-bit
     * multiply by the activations' code pairs adds two products per lane ({@link LaneOrder}); the four such products of
     * a group are summed (upper halves at most 8 * 8 * 127, lower halves 4 * 8 * 127) before the upper halves are
     * taken: each lane then holds eight products of one block. Its sum goes to float once, times the block's scale and
     * the activations' block scale. The fp16 scales are widened in the vector: moved to a float's fields and multiplied
     * by {@code 2^112}, exact for normal and subnormal values, with the exponent completed for infinities and NaN. A
     * row is cut into loops of {@link #SPAN} blocks.
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        if (!Simd.FUSED) {
            dotRowsHalves(src, srcOffset, rowBytes, rows, x, token, out, outOffset);
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
            for (int g0 = 0; g0 < blocks; g0 += SPAN) {
                for (int g = g0, gEnd = Math.min(blocks, g0 + SPAN); g < gEnd; g += GROUP) {
                    long at = row + (long) g * BYTES;
                    ByteVector first = ByteVector.fromMemorySegment(Simd.B64, src, at, Simd.LE);
                    ByteVector second = ByteVector.fromMemorySegment(Simd.B64, src, at + 8, Simd.LE);
                    IntVector q = GROUP_QUANTS.selectFrom(first, second).reinterpretAsInts();
                    IntVector scaleBits = GROUP_SCALES.selectFrom(first).reinterpretAsInts().lanewise(ASHR, SHIFT_3)
                            .and(FP16_FIELDS);
                    scaleBits = scaleBits.lanewise(ADD, FLOAT_EXPONENT_TOP, scaleBits.and(FP16_EXPONENT).eq(FP16_EXPONENT));
                    FloatVector scale = scaleBits.reinterpretAsFloats().mul(0x1p112f)
                            .mul(FloatVector.fromArray(Simd.F, xd, dRow + g).rearrange(SPREAD_4));
                    int e = pRow + g * (QK / 2);
                    IntVector p0 = q.and(Q4_K.PAIR_MASK).sub(HALF_OFFSETS).mul(wide
                            ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * e).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                            : IntVector.fromArray(Simd.I, xp, e));
                    IntVector p1 = q.lanewise(LSHR, Simd.SHIFT_4).and(Q4_K.PAIR_MASK).sub(HALF_OFFSETS)
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 16)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 16));
                    IntVector p2 = q.lanewise(LSHR, Q4_K.SHIFT_8).and(Q4_K.PAIR_MASK).sub(HALF_OFFSETS)
                            .mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 32)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 32));
                    IntVector p3 = ((IntVector) q.reinterpretAsShorts().lanewise(LSHR, Q4_K.SHORT_SHIFT_12).reinterpretAsInts())
                            .sub(HALF_OFFSETS).mul(wide
                                    ? ByteVector.fromArray(Q4_K.BYTE_PAIRS, xb, 2 * (e + 48)).convertShape(B2S, Simd.S_FULL, 0).reinterpretAsInts()
                                    : IntVector.fromArray(Simd.I, xp, e + 48));
                    IntVector sum = p0.add(p1).add(p2.add(p3)).add(Q4_K.HALF).lanewise(ASHR, Q4_K.SHIFT_16);
                    acc = ((FloatVector) sum.convert(I2F, 0)).fma(scale, acc);
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

    /**
     * {@link #dotRows} in 8 float lanes (AVX2), on the activations' floats: a block's four groups of 8 (the low nibbles of
     * its bytes 0-7 and 8-15, then the high ones) go to the four accumulators in turn, the order {@link DecodedDot#dot}
     * sums in at that width, each decoded as {@link #dequantizeBlocks} decodes it: the same bits as that path, without
     * its pass through a scratch buffer (Zen 3, JMH {@code matVecOneThread} in cache 2.8-3.2 -> 4.7-5.0 GB/s, two
     * threads from memory 3.7 -> 8.6-9.4).
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
                    float d = Halfs.readFp16(src, block);
                    int e = xRow + QK * b;
                    IntVector first = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                    IntVector second = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 10, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                    a0 = ((FloatVector) first.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d)
                            .fma(FloatVector.fromArray(Simd.F, xv, e), a0);
                    a1 = ((FloatVector) second.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d)
                            .fma(FloatVector.fromArray(Simd.F, xv, e + 8), a1);
                    a2 = ((FloatVector) first.lanewise(LSHR, 4).sub(OFFSET).convert(I2F, 0)).mul(d)
                            .fma(FloatVector.fromArray(Simd.F, xv, e + 16), a2);
                    a3 = ((FloatVector) second.lanewise(LSHR, 4).sub(OFFSET).convert(I2F, 0)).mul(d)
                            .fma(FloatVector.fromArray(Simd.F, xv, e + 24), a3);
                }
            }
            out[outOffset + r] = DecodedDot.combine(a0, a1, a2, a3);
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /**
     * ggml's quantize_row_q4_0_ref: the signed value of largest magnitude maps to level 0 (d = max/-8);
     * levels are truncations of {@code x/d + 8.5}, capped at 15.
     */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            int in = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float amax = 0;
            float max = 0;
            for (int j = 0; j < QK; j++) {
                float v = src[in + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            Halfs.writeFp16(dst, block, d);
            for (int j = 0; j < QK / 2; j++) {
                int lo = Math.min(15, (byte) (int) (src[in + j] * id + 8.5f));
                int hi = Math.min(15, (byte) (int) (src[in + j + QK / 2] * id + 8.5f));
                dst.set(Layouts.BYTE, block + 2 + j, (byte) (lo | (hi << 4)));
            }
        }
    }
}
