package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.I2B;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static moe4j.kernels.quant.Simd.HALF_B;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorSpecies;

import moe4j.gguf.GgmlType;

/**
 * Q4_K matrices repacked at load time so that sixteen rows are multiplied together, one row per 32-bit lane, as
 * llama.cpp's CPU backend repacks them (into groups of 8 rows) on x86. A row-at-a-time kernel spends most of its
 * instructions on what every block needs once: unpacking the 6-bit scales, folding each sub-block's lanes, summing
 * the row at the end. Here the scales of 16 rows are one byte load each, the activations are broadcast to all 16
 * rows, and a row's products stay in its own lanes until the block ends (Intel Xeon VM, JMH {@code MatVecBenchmark},
 * rows of 2048: one thread in L2 9.0-9.2 GB/s a row at a time, 14.6-14.7 interleaved; two threads out of cache
 * 10.7-11.4 and 13.6-14.0). The repacked rows take 5.6% more bytes than the file's (2432 for 16 x 144).
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} bytes:
 * <ul>
 * <li>{@code d} and {@code dmin} of the 16 rows as floats (bytes 0-63 and 64-127), converted once here;</li>
 * <li>the 6-bit scales unpacked to bytes, sub-block {@code j}'s 16 rows at {@code 128 + 16j}, the mins at
 *     {@code 256 + 16j};</li>
 * <li>the quants, sub-block {@code j} at {@code 384 + 256j} as four 64-byte vectors of 32 16-bit lanes: lane
 *     {@code 2i + h} of vector {@code w} is row {@code i}, and its nibble {@code k} is the row's element
 *     {@code 32j + 16h + 4w + k}.</li>
 * </ul>
 * So lane {@code 2i} of vector {@code w}'s nibble {@code k} meets element {@code 32j + p} and lane {@code 2i + 1}
 * element {@code 32j + 16 + p} ({@code p = 4w + k}): exactly the two 16-bit halves of {@link PairTile}'s activation
 * pair {@code p} of that run ({@link PreparedActivations#tilePairs()}), which one 32-bit broadcast gives to every row.
 *
 * <p>Each product of a nibble and an 8-bit code fits 16 bits (at most 15 * 128), and so do the sixteen summed in a lane
 * per sub-block (30720), so the kernel multiplies and adds 16-bit lanes, 32 products per instruction, and widens once
 * per sub-block. A row's block sums in integers as llama.cpp's kernels do: {@code S = sum_j scale_j * q.x} and
 * {@code M = sum_j min_j * sum(x)} over the sub-blocks, then {@code acc += S * (d * xd) - M * (dmin * xd)} in floats
 * (two multiply-adds). Batches of tokens go to {@link PairTile}'s tiles, which read the groups as they lie and compute
 * the same sums in the same order, so a token gets the same bits alone and in a batch.
 */
public final class Q4_KInterleaved {

    private Q4_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = 16;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 144;
    static final int DMIN = 64;
    static final int SCALES = 128;
    static final int MINS = 256;
    static final int QUANTS = 384;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 8 * 256;

    private static final VectorSpecies<Short> S = ShortVector.SPECIES_512;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    private static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    private static final ShortVector NIBBLE = ShortVector.broadcast(S, (short) 0xF);
    private static final IntVector SHIFT_16 = IntVector.broadcast(I, 16);
    private static final ShortVector HALF_NIBBLE = ShortVector.broadcast(HALF_S, (short) 0xF);

    /** Whether a matrix of {@code rows} rows of {@code width} values can be repacked, on any machine. */
    public static boolean fitsShape(long rows, long width) {
        return rows > 0 && rows % ROWS == 0 && width > 0 && width % QK == 0 && width <= Integer.MAX_VALUE;
    }

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q4_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset, false);
    }

    /**
     * The repacking of Q4_K and, with {@code fifthBits}, Q5_K rows ({@link Q5_KInterleaved}): the same {@code d},
     * {@code dmin}, scales, minimums and nibbles (from byte 16 of a 144-byte block, or 48 of a 176-byte one), and for
     * Q5_K each sub-block's fifth bits as one more vector after its four.
     */
    static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset, boolean fifthBits) {
        int blocks = width / QK;
        int blockBytes = fifthBits ? Q5_KInterleaved.BLOCK_BYTES : BLOCK_BYTES;
        int nibblesAt = fifthBits ? Q5_KInterleaved.NIBBLES : 16;
        int subBlockInts = (fifthBits ? Q5_KInterleaved.SUB_BLOCK_BYTES : 256) / 4;
        int groupBlockBytes = fifthBits ? Q5_KInterleaved.GROUP_BLOCK_BYTES : GROUP_BLOCK_BYTES;
        float[] scales = new float[2 * ROWS];
        // five 16 x 16 blocks, row by row, then turned to a lane per row (PairTile.transpose): the scales and minimums
        // (as unpacked for the one-token kernel of the file layout), then the low and the high nibbles of the 32 ints
        // of quant bytes (int k holds bytes 4k .. 4k+3: run c = k/8, elements 16h + 4w .. +3 of sub-blocks 2c in its
        // low nibbles and 2c+1 in its high ones, h = (k/4)%2, w = k%4), four of them in the low 16 bits of each
        int[] rowMajor = new int[5 * 256];
        int[] lanes = new int[5 * 256];
        byte[] scaleBytes = new byte[QUANTS - SCALES];
        int[] quants = new int[8 * subBlockInts];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * blockBytes;
                    int pair = src.get(Layouts.INT_LE, block);
                    scales[i] = Float.float16ToFloat((short) pair);
                    scales[ROWS + i] = Float.float16ToFloat((short) (pair >>> 16));
                    KQuantScales.unpackScalesAndMinimums(src, block, rowMajor, 16 * i);
                    for (int half = 0; half < 2; half++) {
                        for (int k = 0; k < 16; k += Simd.I.length()) {
                            IntVector four = IntVector.fromMemorySegment(Simd.I, src, block + nibblesAt + 64L * half + 4L * k,
                                    Simd.LE);
                            compress(four).intoArray(rowMajor, (1 + half) * 256 + 16 * i + k);
                            compress(four.lanewise(LSHR, 4)).intoArray(rowMajor, (3 + half) * 256 + 16 * i + k);
                        }
                    }
                    if (fifthBits) {
                        Q5_KInterleaved.fifthBits(src, block, i, quants);
                    }
                }
                for (int t = 0; t < 5; t++) {
                    PairTile.transpose(rowMajor, 256 * t, lanes, 256 * t);
                }
                // in vectors of the machine's width (of 16 lanes, or two of 8)
                for (int j = 0; j < 8; j++) {
                    for (int l = 0; l < 16; l += Simd.I.length()) {
                        IntVector.fromArray(Simd.I, lanes, 16 * j + l).convertShape(I2B, Simd.B, 0).reinterpretAsBytes()
                                .intoArray(scaleBytes, 16 * j + l);
                        IntVector.fromArray(Simd.I, lanes, 16 * (8 + j) + l).convertShape(I2B, Simd.B, 0)
                                .reinterpretAsBytes().intoArray(scaleBytes, MINS - SCALES + 16 * j + l);
                        int nibbles = j % 2 == 0 ? 256 : 768;
                        for (int w = 0; w < 4; w++) {
                            // lanes 2i and 2i+1 of vector w: row i's ints 8(j/2) + w (h = 0) and that plus 4 (h = 1)
                            int k = 8 * (j / 2) + w;
                            IntVector h0 = IntVector.fromArray(Simd.I, lanes, nibbles + 256 * (k / 16) + 16 * (k % 16) + l);
                            IntVector h1 = IntVector.fromArray(Simd.I, lanes,
                                    nibbles + 256 * ((k + 4) / 16) + 16 * ((k + 4) % 16) + l);
                            h0.or(h1.lanewise(LSHL, 16)).intoArray(quants, subBlockInts * j + 16 * w + l);
                        }
                    }
                }
                long out = dstOffset + ((long) g * blocks + b) * groupBlockBytes;
                MemorySegment.copy(scales, 0, dst, Layouts.FLOAT_LE, out, 2 * ROWS);
                MemorySegment.copy(scaleBytes, 0, dst, Layouts.BYTE, out + SCALES, scaleBytes.length);
                MemorySegment.copy(quants, 0, dst, Layouts.INT_LE, out + QUANTS, quants.length);
            }
        }
    }

    /** The low nibbles of each lane's four bytes, side by side in its low 16 bits. */
    private static IntVector compress(IntVector four) {
        IntVector t = four.and(0x0F0F0F0F);
        t = t.or(t.lanewise(LSHR, 4)).and(0x00FF00FF);
        return t.or(t.lanewise(LSHR, 8)).and(0xFFFF);
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q4_K in its own lane order (which fills
     * {@link PreparedActivations#tilePairs()}).
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        long first = checkDot(GgmlType.Q4_K, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x, firstToken, tokens);
        if (!Simd.FUSED) {
            dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
            return;
        }
        if (tokens > 1) {
            PairTile.dotGroups(w, first, (toGroup - fromGroup) * ROWS, x, firstToken, tokens, out, outOffset, outStride);
            return;
        }
        oneToken(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
    }

    /**
     * The checks of a product of groups {@code fromGroup .. toGroup-1} of repacked {@code type} rows
     * ({@code groupBlockBytes} a group-block) with prepared rows {@code firstToken ..}, Q4_K's and Q5_K's alike: the
     * activations prepared for Q4_K's lane order and Q8_K rounding, the tokens and groups in range. Returns where group
     * {@code fromGroup} starts.
     */
    static long checkDot(GgmlType type, long groupBlockBytes, MemorySegment w, long offset, int fromGroup, int toGroup,
            PreparedActivations x, int firstToken, int tokens) {
        return checkDot(type, Q4_K.PAIRS, groupBlockBytes, w, offset, fromGroup, toGroup, x, firstToken, tokens);
    }

    /** As above for activations prepared in {@code order} ({@link Q6_KInterleaved}: Q6_K's). */
    static long checkDot(GgmlType type, LaneOrder order, long groupBlockBytes, MemorySegment w, long offset,
            int fromGroup, int toGroup, PreparedActivations x, int firstToken, int tokens) {
        return checkDot(type, order, QK, groupBlockBytes, w, offset, fromGroup, toGroup, x, firstToken, tokens);
    }

    /**
     * As above for activations prepared in {@code order} and its rounding, a group-block {@code groupBlockValues} values
     * of each row ({@link Q4_0Interleaved}: 32, Q8_0's rounding).
     */
    static long checkDot(GgmlType type, LaneOrder order, int groupBlockValues, long groupBlockBytes, MemorySegment w,
            long offset, int fromGroup, int toGroup, PreparedActivations x, int firstToken, int tokens) {
        if (x.laneOrder() != order || x.rounding() != order.rounding()) {
            throw new IllegalArgumentException(type + " rows in groups take activations prepared for " + type + ", got "
                    + x.rounding() + " in " + x.laneOrder());
        }
        Objects.checkFromIndexSize(firstToken, tokens, x.rows());
        long matrixGroupBytes = (long) (x.width() / groupBlockValues) * groupBlockBytes;
        long first = offset + fromGroup * matrixGroupBytes;
        Objects.checkFromToIndex(first, offset + toGroup * matrixGroupBytes, w.byteSize());
        return first;
    }

    /**
     * The one-token product, written as one loop nest without helpers that take or return vectors: such a helper,
     * compiled on its own before its caller, is not inlined into it later, and then its vectors are boxed (Q3_K_M tg64
     * 12.3-13.4 tok/s in some runs against 16-18). Each group-block reads one byte {@link ReadAhead#DISTANCE} ahead
     * ({@link ReadAhead#touchLine}): one line in 38, enough that each 4 KiB page of the stream is asked for before the
     * kernel reaches it (Intel VM: JMH {@code matVecTwoThreads} out of cache, two runs, 14.2 / 14.5 -> 15.6 / 15.1
     * GB/s; Q4_K_M tg64, eight alternations, 14.99 -> 15.57 tok/s on average, six faster). A byte per sub-block (every
     * fourth line) lost 15-30% in JMH.
     */
    private static void oneToken(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] sums = x.tileSums();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int s0 = token * (width / 32);
        int d0 = token * blocks;
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc = FloatVector.zero(F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                int p = p0 + b * (QK / 2);
                int s = s0 + b * 8;
                IntVector scaled = IntVector.zero(I);
                IntVector mins = IntVector.zero(I);
                for (int j = 0; j < 8; j++) {
                    long q = at + QUANTS + 256L * j;
                    int pj = p + 16 * j;
                    ShortVector sum = ShortVector.zero(S);
                    for (int v = 0; v < 4; v++) {
                        ShortVector lanes = ShortVector.fromMemorySegment(S, w, q + 64L * v, Simd.LE);
                        int pv = pj + 4 * v;
                        sum = sum.add(lanes.and(NIBBLE).mul(pair(pairs, pv)));
                        sum = sum.add(lanes.lanewise(LSHR, 4).and(NIBBLE).mul(pair(pairs, pv + 1)));
                        sum = sum.add(lanes.lanewise(LSHR, 8).and(NIBBLE).mul(pair(pairs, pv + 2)));
                        sum = sum.add(lanes.lanewise(LSHR, 12).mul(pair(pairs, pv + 3)));
                    }
                    IntVector halves = sum.reinterpretAsInts();
                    IntVector dot = halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16)
                            .add(halves.lanewise(ASHR, SHIFT_16));
                    IntVector scale = (IntVector) ByteVector.fromMemorySegment(B16, w, at + SCALES + 16L * j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, I, 0);
                    IntVector min = (IntVector) ByteVector.fromMemorySegment(B16, w, at + MINS + 16L * j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, I, 0);
                    scaled = scaled.add(dot.mul(scale));
                    mins = mins.add(min.mul(sums[s + j]));
                }
                float scale = xd[d0 + b];
                FloatVector d = FloatVector.fromMemorySegment(F, w, at, Simd.LE);
                FloatVector dmin = FloatVector.fromMemorySegment(F, w, at + DMIN, Simd.LE);
                acc = ((FloatVector) scaled.convertShape(I2F, F, 0)).fma(d.mul(scale), acc);
                acc = ((FloatVector) mins.convertShape(I2F, F, 0)).fma(dmin.mul(-scale), acc);
            }
            acc.intoArray(out, outOffset + ROWS * (g - fromGroup));
        }
        ReadAhead.keep(sink);
    }

    /** A one-token kernel of repacked rows over groups {@code fromGroup .. toGroup-1}, as {@link #oneTokenHalves}. */
    interface GroupKernel {
        void run(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x, int token, float[] out,
                int outOffset);
    }

    /** {@link #dot} with 256-bit vectors ({@link Simd#HALVES}), on every machine; checked by the caller. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens > 1) {
            tokensHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
        } else {
            oneTokenHalves(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
        }
    }

    /**
     * Row pairs {@code from .. from+count-1} of {@code pairs} (in Q4_K's order, {@code from} at a block's start) as
     * {@link #oneTokenHalves} multiplies them: in each run of four (a 16-bit lane's nibbles), the first as it is, each
     * other less 16 times the one before it, each 16-bit half on its own ({@link PairTile#step}).
     */
    static void steps(int[] pairs, int from, int count, int[] steps) {
        steps(pairs, from, count, steps, from);
    }

    /** {@link #steps(int[], int, int, int[])} written from {@code steps[to]} on ({@link Q4_0Interleaved#steps}'s blocks). */
    static void steps(int[] pairs, int from, int count, int[] steps, int to) {
        for (int i = 0; i < count; i++) {
            int pair = pairs[from + i];
            steps[to + i] = i % 4 == 0 ? pair : PairTile.step(pair, pairs[from + i - 1], 4);
        }
    }

    /**
     * A product of repacked rows with 256-bit vectors for a layout without a batch tile (Q5_K's): each token by
     * {@code kernel}, group by group, so that a group's weights stay in L1 while the tokens pass. Checked by the caller.
     */
    static void tokenByToken(GroupKernel kernel, MemorySegment w, long offset, int fromGroup, int toGroup,
            PreparedActivations x, int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens == 1) {
            kernel.run(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
            return;
        }
        for (int g = fromGroup; g < toGroup; g++) {
            for (int t = 0; t < tokens; t++) {
                kernel.run(w, offset, g, g + 1, x, firstToken + t, out, outOffset + ROWS * (g - fromGroup) + t * outStride);
            }
        }
    }

    /**
     * {@link #oneToken} in 256-bit vectors (AVX2): rows 0-7 of a group are the lower 32 bytes of each of its 64-byte
     * vectors, rows 8-15 the upper, two halves that share each broadcast code pair. The same integer sums and float
     * steps per row: the same bits.
     *
     * <p>A 16-bit lane {@code L = q0 + 16 q1 + 256 q2 + 4096 q3} is multiplied whole, then shifted right by 4 bits
     * three times, each time by one of {@link #steps}' telescoped pairs {@code y0 = x0, yk = xk - 16 x(k-1)}: modulo
     * 2^16, {@code L y0 + (L >>> 4) y1 + (L >>> 8) y2 + (L >>> 12) y3 = q0 x0 + q1 x1 + q2 x2 + q3 x3}, and the true
     * sum of a sub-block's 16 products a lane (at most {@code 16 * 15 * 128}) fits 16 bits, so the integer sums are
     * exactly those of masking each nibble out: four instructions a nibble fewer (Zen 3, JMH one thread in cache, four
     * alternations, 13.8-15.7 -> 15.6-17.9 GB/s; bench/CPU-NOTES.md).
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        InterleavedRows.requireSteps(GgmlType.Q4_K, x);
        int width = x.width();
        int blocks = width / QK;
        int[] steps = x.stepPairs();
        int[] sums = x.tileSums();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int s0 = token * (width / 32);
        int d0 = token * blocks;
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        int four = Simd.opaque(4);
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                int p = p0 + b * (QK / 2);
                int s = s0 + b * 8;
                IntVector scaled0 = IntVector.zero(HALF_I);
                IntVector scaled1 = IntVector.zero(HALF_I);
                IntVector mins0 = IntVector.zero(HALF_I);
                IntVector mins1 = IntVector.zero(HALF_I);
                // the eight sub-blocks' four vector pairs in one loop: the loads' offsets advance by 64 bytes a pass,
                // which C2 checks once a block (two loops nested, it checked them again each sub-block)
                ShortVector sum0 = ShortVector.zero(HALF_S);
                ShortVector sum1 = ShortVector.zero(HALF_S);
                for (int n = 0; n < 32; n++) {
                    long q = at + QUANTS + 64L * n;
                    // a lane's four nibbles by the telescoped pairs (PreparedActivations#stepPairs): the lane, then
                    // shifted right by 4, 8 and 12 bits, each times its step; no masks
                    ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                    ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                    int pv = p + 4 * n;
                    // written out: as a loop of four (the last shift left to C2 to drop) it ran 12-15% slower
                    ShortVector c = IntVector.broadcast(HALF_I, steps[pv]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, four);
                    lanes1 = lanes1.lanewise(LSHR, four);
                    c = IntVector.broadcast(HALF_I, steps[pv + 1]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, four);
                    lanes1 = lanes1.lanewise(LSHR, four);
                    c = IntVector.broadcast(HALF_I, steps[pv + 2]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, four);
                    lanes1 = lanes1.lanewise(LSHR, four);
                    c = IntVector.broadcast(HALF_I, steps[pv + 3]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    if ((n & 3) == 3) {
                        // sub-block n / 4 summed: times its scales
                        long scales = at + SCALES + 4L * (n & ~3);
                        IntVector halves = sum0.reinterpretAsInts();
                        IntVector dot = halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                .add(halves.lanewise(ASHR, 16));
                        scaled0 = scaled0.add(dot.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales, Simd.LE)
                                .convertShape(ZERO_EXTEND_B2I, HALF_I, 0)));
                        halves = sum1.reinterpretAsInts();
                        dot = halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                .add(halves.lanewise(ASHR, 16));
                        scaled1 = scaled1.add(dot.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales + 8,
                                Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)));
                        sum0 = ShortVector.zero(HALF_S);
                        sum1 = ShortVector.zero(HALF_S);
                    }
                }
                for (int j = 0; j < 8; j++) {
                    int sum = sums[s + j];
                    mins0 = mins0.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + MINS + 16L * j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
                    mins1 = mins1.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + MINS + 16L * j + 8,
                            Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
                }
                float scale = xd[d0 + b];
                FloatVector d = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                FloatVector dmin = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN, Simd.LE);
                acc0 = ((FloatVector) scaled0.convertShape(I2F, HALF_F, 0)).fma(d.mul(scale), acc0);
                acc0 = ((FloatVector) mins0.convertShape(I2F, HALF_F, 0)).fma(dmin.mul(-scale), acc0);
                d = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                dmin = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN + 32, Simd.LE);
                acc1 = ((FloatVector) scaled1.convertShape(I2F, HALF_F, 0)).fma(d.mul(scale), acc1);
                acc1 = ((FloatVector) mins1.convertShape(I2F, HALF_F, 0)).fma(dmin.mul(-scale), acc1);
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
        ReadAhead.keep(sink);
    }

    /** Super-blocks whose nibbles {@link #tokensHalves} holds as 16-bit lanes at a time: 64 KiB, within a core's L2. */
    private static final int CHUNK_BLOCKS = 8;
    /** A chunk of a group's super-blocks' nibbles as 16-bit lanes, for {@link #tokensHalves}: one array a thread. */
    private static final ThreadLocal<short[]> NIBBLES = ThreadLocal.withInitial(() -> new short[CHUNK_BLOCKS * 8 * 2 * 16 * 16]);
    /** The integer block sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<int[]> TILE_SUMS = ThreadLocal.withInitial(() -> new int[4 * ROWS]);
    /** The running sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<float[]> TILE_ACCUMULATORS = ThreadLocal.withInitial(() -> new float[4 * ROWS]);

    /**
     * Where {@link #tokensHalves} keeps nibble {@code u} (4 * vector + nibble) of sub-block {@code j}, half {@code h}
     * of the chunk's super-block {@code c}.
     */
    private static int nibblesAt(int c, int j, int h, int u) {
        return ((16 * c + 2 * j + h) * 16 + u) * 16;
    }

    /**
     * A batch in 256-bit vectors: a chunk of each group's super-blocks' nibbles taken out of their lanes once into
     * 16-bit lanes of a thread's array, then four tokens at a time taken through the chunk, their code pairs multiplied
     * with the nibbles, where {@link #oneTokenHalves} would take them out again for every token. The 8 sums of a
     * sub-block's products stay in registers; the block sums, which added 8 more there and spilled, go to a thread's
     * array (Zen 3, JMH {@code preparedBatch8} one thread in cache: two tokens a time with their block sums in
     * registers 1.9-2.1 GB/s, four so 2.0-2.4), and the four tokens' running sums to another, copied to {@code out} once
     * a chunk: with the super-blocks inside the tokens, {@code out}'s rows (a matrix's width apart) are not read and
     * written every super-block (the 12-layer Q4_K_M file's pp512 67-77 -> 80-85 tok/s on the Zen 3 VM). The last one
     * to three tokens take {@link #oneTokenHalves}: a token there costs little more than in a tile (JMH one thread in
     * cache, 14-15 GB/s against 16-19 for each of eight tokens), less than a tile padded with repeated tokens. Each
     * token's sums and float steps are {@link #oneTokenHalves}'s, in the same order: the same bits.
     */
    static void tokensHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] sums = x.tileSums();
        float[] xd = x.codeScales();
        short[] nibbles = NIBBLES.get();
        int[] scaled = TILE_SUMS.get();
        float[] acc = TILE_ACCUMULATORS.get();
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            // with fewer than four tokens no tile runs: no group-block to take out
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    long at = group + (long) b * GROUP_BLOCK_BYTES;
                    int ch = b - from;
                    for (int j = 0; j < 8; j++) {
                        for (int h = 0; h < 2; h++) {
                            for (int v = 0; v < 4; v++) {
                                ShortVector lanes = ShortVector.fromMemorySegment(HALF_S, w,
                                        at + QUANTS + 256L * j + 64L * v + 32L * h, Simd.LE);
                                lanes.and(HALF_NIBBLE).intoArray(nibbles, nibblesAt(ch, j, h, 4 * v));
                                lanes.lanewise(LSHR, 4).and(HALF_NIBBLE).intoArray(nibbles, nibblesAt(ch, j, h, 4 * v + 1));
                                lanes.lanewise(LSHR, 8).and(HALF_NIBBLE).intoArray(nibbles, nibblesAt(ch, j, h, 4 * v + 2));
                                lanes.lanewise(LSHR, 12).intoArray(nibbles, nibblesAt(ch, j, h, 4 * v + 3));
                            }
                        }
                    }
                }
                for (int t = 0; t < tiled; t += 4) {
                    startRunningSums(out, rowOut + t * outStride, outStride, from > 0, acc);
                    for (int b = from; b < to; b++) {
                        long at = group + (long) b * GROUP_BLOCK_BYTES;
                        int ch = b - from;
                        int blockPairs = b * (QK / 2);
                        int pA = (firstToken + t) * (width / 2) + blockPairs;
                        int pB = pA + width / 2;
                        int pC = pB + width / 2;
                        int pD = pC + width / 2;
                        Arrays.fill(scaled, 0);
                        for (int j = 0; j < 8; j++) {
                            ShortVector sumA0 = ShortVector.zero(HALF_S);
                            ShortVector sumA1 = sumA0;
                            ShortVector sumB0 = sumA0;
                            ShortVector sumB1 = sumA0;
                            ShortVector sumC0 = sumA0;
                            ShortVector sumC1 = sumA0;
                            ShortVector sumD0 = sumA0;
                            ShortVector sumD1 = sumA0;
                            for (int u = 0; u < 16; u++) {
                                ShortVector n0 = ShortVector.fromArray(HALF_S, nibbles, nibblesAt(ch, j, 0, u));
                                ShortVector n1 = ShortVector.fromArray(HALF_S, nibbles, nibblesAt(ch, j, 1, u));
                                ShortVector c;
                                c = IntVector.broadcast(HALF_I, pairs[pA + u]).reinterpretAsShorts();
                                sumA0 = sumA0.add(n0.mul(c));
                                sumA1 = sumA1.add(n1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pB + u]).reinterpretAsShorts();
                                sumB0 = sumB0.add(n0.mul(c));
                                sumB1 = sumB1.add(n1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pC + u]).reinterpretAsShorts();
                                sumC0 = sumC0.add(n0.mul(c));
                                sumC1 = sumC1.add(n1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pD + u]).reinterpretAsShorts();
                                sumD0 = sumD0.add(n0.mul(c));
                                sumD1 = sumD1.add(n1.mul(c));
                            }
                            pA += 16;
                            pB += 16;
                            pC += 16;
                            pD += 16;
                            IntVector scale0 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + 16L * j,
                                    Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                            IntVector scale1 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + 16L * j + 8,
                                    Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                            IntVector halves;
                            halves = sumA0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 0).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 0);
                            halves = sumA1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 8).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 8);
                            halves = sumB0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 16).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 16);
                            halves = sumB1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 24).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 24);
                            halves = sumC0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 32).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 32);
                            halves = sumC1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 40).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 40);
                            halves = sumD0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 48).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 48);
                            halves = sumD1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 56).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 56);
                        }
                        for (int k = 0; k < 4; k++) {
                            int token = firstToken + t + k;
                            int s = token * (width / 32) + b * 8;
                            IntVector mins0 = IntVector.zero(HALF_I);
                            IntVector mins1 = IntVector.zero(HALF_I);
                            for (int j = 0; j < 8; j++) {
                                int sum = sums[s + j];
                                mins0 = mins0.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + MINS + 16L * j,
                                        Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
                                mins1 = mins1.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w,
                                        at + MINS + 16L * j + 8, Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
                            }
                            float scale = xd[token * blocks + b];
                            FloatVector a = FloatVector.fromArray(HALF_F, acc, 16 * k);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, scaled, 16 * k).convertShape(I2F, HALF_F, 0))
                                    .fma(FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE).mul(scale), a);
                            a = ((FloatVector) mins0.convertShape(I2F, HALF_F, 0))
                                    .fma(FloatVector.fromMemorySegment(HALF_F, w, at + DMIN, Simd.LE).mul(-scale), a);
                            a.intoArray(acc, 16 * k);
                            a = FloatVector.fromArray(HALF_F, acc, 16 * k + 8);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, scaled, 16 * k + 8).convertShape(I2F, HALF_F, 0))
                                    .fma(FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE).mul(scale), a);
                            a = ((FloatVector) mins1.convertShape(I2F, HALF_F, 0))
                                    .fma(FloatVector.fromMemorySegment(HALF_F, w, at + DMIN + 32, Simd.LE).mul(-scale), a);
                            a.intoArray(acc, 16 * k + 8);
                        }
                    }
                    endRunningSums(acc, out, rowOut + t * outStride, outStride);
                }
            }
            for (int t = tiled; t < tokens; t++) {
                oneTokenHalves(w, offset, g, g + 1, x, firstToken + t, out, rowOut + t * outStride);
            }
        }
    }

    /**
     * Four tokens' running sums of a tile's 16 rows into {@code acc} ({@code 16k} for token {@code k}): their rows of
     * {@code out} from {@code o}, {@code outStride} apart, where a previous chunk left them ({@code carry}), else zeros.
     */
    static void startRunningSums(float[] out, int o, int outStride, boolean carry, float[] acc) {
        for (int k = 0; k < 4; k++) {
            if (carry) {
                System.arraycopy(out, o + k * outStride, acc, 16 * k, ROWS);
            } else {
                Arrays.fill(acc, 16 * k, 16 * k + ROWS, 0f);
            }
        }
    }

    /** {@link #startRunningSums}' reverse: the four tokens' sums back to their rows of {@code out}. */
    static void endRunningSums(float[] acc, float[] out, int o, int outStride) {
        for (int k = 0; k < 4; k++) {
            System.arraycopy(acc, 16 * k, out, o + k * outStride, ROWS);
        }
    }

    /** Pair {@code i} in both 16-bit halves of every 32-bit lane. */
    private static ShortVector pair(int[] pairs, int i) {
        return IntVector.broadcast(I, pairs[i]).reinterpretAsShorts();
    }
}
