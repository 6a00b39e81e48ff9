package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorSpecies;

import moe4j.gguf.GgmlType;

/**
 * Q3_K matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), which have no Q3_K
 * row kernel: a row per pair of 16-bit lanes, the activations' code pairs in Q3_K's order ({@link Q3_K#PAIRS}, packed
 * as Q6_K's) broadcast to all 16 rows, each group run as two halves of 8 rows as {@link Q4_KInterleaved#oneTokenHalves}
 * runs Q4_K's. With 512-bit vectors Q3_K keeps its row kernel and tiles, and is not repacked.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (1856)
 * bytes, 16 x 110 + 5.5%:
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the signed scales (-32..31), 16-element group {@code g}'s 16 rows at {@code 64 + 16g};</li>
 * <li>the quants, sub-block {@code j} (32 elements) at {@code 320 + 192j}: two 64-byte vectors of low bit pairs, then
 *     one of high bits. Pair {@code p} (0..15) of sub-block {@code j} joins elements {@code a = 32j + 16(p/8) + p%8}
 *     and {@code a + 8} ({@link Q6_KInterleaved#element}); 16-bit lane {@code 2i + h} of low-bit vector {@code c}
 *     holds, at bits {@code 2k, 2k+1}, the low two bits of row {@code i}'s element of pair {@code 8c + k} ({@code a},
 *     or {@code a + 8} for {@code h = 1}), and the same lane of the high-bit vector holds that element's third bit at
 *     bit {@code 8c + k}.</li>
 * </ul>
 *
 * <p>A weight is {@code d * scale * (q - 4)} with {@code q} its three bits (0..7). The kernel multiplies {@code q} by
 * the codes in 16-bit lanes on top of {@code -4} times the window's code sums (Q6_K's {@code -32} times, shifted right
 * by three), so each half's sum of eight products is {@code sum (q - 4) * code}, at most {@code 8 * 4 * 127} in
 * magnitude; the halves are widened and added, times the group's scale, and the block's integer sum goes to float
 * once, {@code acc = fma(S, d * xd, acc)}: llama.cpp's integer sums, and one float step a block.
 */
public final class Q3_KInterleaved {

    private Q3_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 110;
    private static final int FILE_HMASK = 0;
    private static final int FILE_QS = 32;
    private static final int FILE_SCALES = 96;
    private static final int FILE_D = 108;
    static final int SCALES = 64;
    static final int QUANTS = SCALES + 16 * ROWS;
    /** A sub-block's two vectors of low bit pairs and its vector of high bits. */
    static final int SUB_BLOCK_BYTES = 3 * 64;
    static final int HIGH_BITS = 2 * 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 8 * SUB_BLOCK_BYTES;

    private static final VectorSpecies<Short> HALF_S = ShortVector.SPECIES_256;
    private static final VectorSpecies<Integer> HALF_I = IntVector.SPECIES_256;
    private static final VectorSpecies<Float> HALF_F = FloatVector.SPECIES_256;
    private static final VectorSpecies<Byte> HALF_B = ByteVector.SPECIES_64;
    private static final ShortVector LOW_PAIR = ShortVector.broadcast(HALF_S, (short) 3);
    private static final ShortVector THIRD_BIT = ShortVector.broadcast(HALF_S, (short) 4);
    private static final IntVector SHIFT_16 = IntVector.broadcast(HALF_I, 16);

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q3_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        byte[] scales = new byte[16 * ROWS];
        short[] quants = new short[8 * SUB_BLOCK_BYTES / 2];
        byte[] hmask = new byte[32];
        byte[] qs = new byte[64];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * BLOCK_BYTES;
                    d[i] = Halfs.readFp16(src, block + FILE_D);
                    for (int s = 0; s < 16; s++) {
                        scales[16 * s + i] = (byte) KQuantScales.q3Scale(src, block + FILE_SCALES, s);
                    }
                    MemorySegment.copy(src, Layouts.BYTE, block + FILE_HMASK, hmask, 0, 32);
                    MemorySegment.copy(src, Layouts.BYTE, block + FILE_QS, qs, 0, 64);
                    for (int j = 0; j < 8; j++) {
                        for (int h = 0; h < 2; h++) {
                            int low0 = 0;
                            int low1 = 0;
                            int high = 0;
                            for (int p = 0; p < 16; p++) {
                                int e = Q6_KInterleaved.element(j, p, h);
                                int half = e / 128;
                                int shift = 2 * ((e / 32) % 4);
                                int l = e % 32;
                                int q2 = (qs[32 * half + l] >>> shift) & 3;
                                int third = (hmask[l] >>> (4 * half + (e / 32) % 4)) & 1;
                                if (p < 8) {
                                    low0 |= q2 << (2 * p);
                                } else {
                                    low1 |= q2 << (2 * (p - 8));
                                }
                                high |= third << p;
                            }
                            int lane = 2 * i + h;
                            quants[SUB_BLOCK_BYTES / 2 * j + lane] = (short) low0;
                            quants[SUB_BLOCK_BYTES / 2 * j + 32 + lane] = (short) low1;
                            quants[SUB_BLOCK_BYTES / 2 * j + HIGH_BITS / 2 + lane] = (short) high;
                        }
                    }
                }
                long out = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(scales, 0, dst, Layouts.BYTE, out + SCALES, scales.length);
                MemorySegment.copy(quants, 0, dst, Layouts.SHORT_LE, out + QUANTS, quants.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q3_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q3_K, Q3_K.PAIRS, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
                firstToken, tokens);
        dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
    }

    /** {@link #dot} unchecked: the only product of this layout, in 256-bit vectors. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens > 1) {
            Q6_KInterleaved.tokensHalves(Q3_KInterleaved::decodeHalves, 3, GROUP_BLOCK_BYTES,
                    Q3_KInterleaved::oneTokenHalves, w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
        } else {
            oneTokenHalves(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
        }
    }

    /** This layout's quants (0..7) for {@link Q6_KInterleaved#tokensHalves}, as {@link #oneTokenHalves} takes them out. */
    static void decodeHalves(MemorySegment w, long at, short[] values) {
        for (int k = 0; k < 16; k++) {
            long q = at + QUANTS + (long) SUB_BLOCK_BYTES * (k / 2) + 64L * (k % 2);
            long bits = at + QUANTS + (long) SUB_BLOCK_BYTES * (k / 2) + HIGH_BITS;
            for (int h = 0; h < 2; h++) {
                ShortVector lanes = ShortVector.fromMemorySegment(HALF_S, w, q + 32L * h, Simd.LE);
                ShortVector high = ShortVector.fromMemorySegment(HALF_S, w, bits + 32L * h, Simd.LE);
                // the group's eight third bits moved to bits 2 .. 9, the first at bit 2
                high = k % 2 == 0 ? high.lanewise(LSHL, 2) : high.lanewise(LSHR, 6);
                for (int u = 0; u < 8; u++) {
                    lanes.lanewise(LSHR, 2 * u).and(LOW_PAIR).or(high.lanewise(LSHR, u).and(THIRD_BIT))
                            .intoArray(values, Q6_KInterleaved.valuesAt(k, h, u));
                }
            }
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once (one loop nest written out: see
     * {@link Q4_KInterleaved}'s), reading one line ahead per group-block ({@link ReadAhead#touchLine}).
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        float[] xd = x.codeScales();
        // per 16-element group, -32 times the code sums of its halves (PairTile#packCodes); -4 times after a shift
        int[] start = x.tileSums();
        int p0 = token * (width / 2);
        int d0 = token * blocks;
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                int o = token * (width / 16) + b * 16;
                IntVector scaled0 = IntVector.zero(HALF_I);
                IntVector scaled1 = IntVector.zero(HALF_I);
                for (int k = 0; k < 16; k++) {
                    // group k = 2j + c of sub-block j: low-bit vector c, the high bits' 8c .. 8c+7
                    long q = at + QUANTS + (long) SUB_BLOCK_BYTES * (k / 2) + 64L * (k % 2);
                    long bits = at + QUANTS + (long) SUB_BLOCK_BYTES * (k / 2) + HIGH_BITS;
                    int pk = p0 + b * (QK / 2) + 8 * k;
                    ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                    ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                    // the group's eight third bits moved to bits 2 .. 9, the first at bit 2
                    ShortVector high0 = ShortVector.fromMemorySegment(HALF_S, w, bits, Simd.LE);
                    ShortVector high1 = ShortVector.fromMemorySegment(HALF_S, w, bits + 32, Simd.LE);
                    if (k % 2 == 0) {
                        high0 = high0.lanewise(LSHL, 2);
                        high1 = high1.lanewise(LSHL, 2);
                    } else {
                        high0 = high0.lanewise(LSHR, 6);
                        high1 = high1.lanewise(LSHR, 6);
                    }
                    ShortVector sum0 = IntVector.broadcast(HALF_I, start[o + k]).reinterpretAsShorts().lanewise(ASHR, 3);
                    ShortVector sum1 = sum0;
                    ShortVector c = IntVector.broadcast(HALF_I, pairs[pk]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.and(LOW_PAIR).or(high0.and(THIRD_BIT)).mul(c));
                    sum1 = sum1.add(lanes1.and(LOW_PAIR).or(high1.and(THIRD_BIT)).mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 1]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 2).and(LOW_PAIR).or(high0.lanewise(LSHR, 1).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 2).and(LOW_PAIR).or(high1.lanewise(LSHR, 1).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 2]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 4).and(LOW_PAIR).or(high0.lanewise(LSHR, 2).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 4).and(LOW_PAIR).or(high1.lanewise(LSHR, 2).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 3]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 6).and(LOW_PAIR).or(high0.lanewise(LSHR, 3).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 6).and(LOW_PAIR).or(high1.lanewise(LSHR, 3).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 4]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 8).and(LOW_PAIR).or(high0.lanewise(LSHR, 4).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 8).and(LOW_PAIR).or(high1.lanewise(LSHR, 4).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 5]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 10).and(LOW_PAIR).or(high0.lanewise(LSHR, 5).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 10).and(LOW_PAIR).or(high1.lanewise(LSHR, 5).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 6]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 12).and(LOW_PAIR).or(high0.lanewise(LSHR, 6).and(THIRD_BIT))
                            .mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 12).and(LOW_PAIR).or(high1.lanewise(LSHR, 6).and(THIRD_BIT))
                            .mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pk + 7]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 14).or(high0.lanewise(LSHR, 7).and(THIRD_BIT)).mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 14).or(high1.lanewise(LSHR, 7).and(THIRD_BIT)).mul(c));
                    IntVector halves = sum0.reinterpretAsInts();
                    IntVector dot = halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16)
                            .add(halves.lanewise(ASHR, SHIFT_16));
                    scaled0 = scaled0.add(dot.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w,
                            at + SCALES + 16L * k, Simd.LE).convertShape(B2I, HALF_I, 0)));
                    halves = sum1.reinterpretAsInts();
                    dot = halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16).add(halves.lanewise(ASHR, SHIFT_16));
                    scaled1 = scaled1.add(dot.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w,
                            at + SCALES + 16L * k + 8, Simd.LE).convertShape(B2I, HALF_I, 0)));
                }
                FloatVector d = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                acc0 = ((FloatVector) scaled0.convertShape(I2F, HALF_F, 0)).fma(d.mul(xd[d0 + b]), acc0);
                d = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                acc1 = ((FloatVector) scaled1.convertShape(I2F, HALF_F, 0)).fma(d.mul(xd[d0 + b]), acc1);
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
        ReadAhead.keep(sink);
    }
}
