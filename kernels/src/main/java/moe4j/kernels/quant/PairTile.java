package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ADD;
import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.BITWISE_BLEND;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q3_K, Q4_K, Q5_K, Q6_K and Q4_0 products of several tokens in integers: the batch path's counterpart of the one-token
 * kernels ({@link Q4_K#dotRows}). Sixteen rows sit in the sixteen lanes of a vector; a super-block of each is decoded
 * once into pairs of quants, {@code qA} in the lower and {@code qB} in the upper 16 bits of an int (Q4_K and Q5_K:
 * elements {@code 32j + k} and {@code 32j + k + 16} of sub-block {@code j}; Q6_K and Q3_K: elements {@code 16g + k} and
 * {@code 16g + k + 8} of group {@code g}, quants made signed, {@code q - 32} and {@code q - 4}), and each token's codes
 * are packed the same way ({@code aA} below {@code aB}, {@link PreparedActivations#tilePairs}), so that one 16-bit
 * multiply by the broadcast pair leaves {@code qA * aA} and {@code qB * aB} in the two halves of every row's lane;
 * the tiles take two such groups of 16 rows at once, so that every broadcast serves two multiplies ({@link #tile}).
 * Products are summed a few pairs a step in those 16-bit halves; a window's halves are then widened, added and
 * multiplied by the rows' scale: Q4_K's windows are its 16-pair sub-blocks (at most 16 * 15 * 127 in a half), Q5_K's
 * (31), Q6_K's (32) and Q3_K's 8 pairs (8 * 32 * 127), Q4_0's a block's 16 pairs (16 * 8 * 127 in a half, the two
 * halves' sum within 16 bits, so one shift takes it); Q4_K's and Q5_K's sub-block minimums times the token's code sums
 * are a second integer sum. Both go to float once per super-block, times {@code d} (or {@code -dmin}) and the token's
 * scale, in the same order for every row and token: a token's result does not depend on its batch, its tile or its lane.
 *
 * <p>16-bit rather than 32-bit multiplies (which leave a sum of two products in the upper half, as the one-token
 * kernels use them, {@link LaneOrder}): the same multiply-adds per instruction, but on Intel's AVX-512 cores a 32-bit
 * multiply is two micro-operations, a 16-bit one is one. Measured on a 2-core Intel Xeon VM (AVX-512 with VNNI and
 * AMX), pp512 of the 12-layer Qwen3-30B-A3B shape, three alternations: Q4_K_M 68.7 / 70.6 / 66.8 -> 74.4 / 73.2 / 65.4
 * tok/s, Q3_K_M 70.9 / 68.8 / 66.7 -> 77.0 / 78.9 / 72.9.
 *
 * <p>Why integers: a multiply does twice the multiply-adds of a float FMA (32 products a 512-bit instruction against
 * 16) and issues as often on Zen 5; more, a pass over a batch's activations serves 16 rows instead of
 * {@link ScaledDot}'s 4 and reads half the bytes (a pair of codes per int instead of a float per value), which is what
 * a 512-token prompt's products are bound by (4 MB of float activations streamed per four rows). Measured on Q4_K_M
 * pp512 (12-layer Qwen3-30B-A3B shape, 2 threads, A/B in one window): float tiles 120-141 tok/s, these tiles with
 * eight pairs a step 158-168, with four pairs a step (four weight vectors live instead of eight) and Q6_K too 190-199;
 * Q3_K_M pp512 127-138 -> 177-183 with Q3_K's tiles; Q5_K_M 142-148 -> 162-170 with Q5_K's (all with 32-bit
 * multiplies, on a Zen 5 VM). The rows' pairs are decoded a super-block at a time, row by row, and turned into lanes
 * with {@link #transpose}.
 */
final class PairTile {

    private PairTile() {}

    /** Rows per tile: one per lane. */
    static final int ROWS = 16;
    /**
     * Tokens per tile, multiplied three at a time, a last one or two in a step of two ({@link #tileTwo}, repeating the
     * last token where one is left). Experts in a prompt batch often get two to five tokens (a 512-token prompt of the
     * 12-layer Qwen3-30B-A3B-shaped test files: a third of the active experts; a 64-token prompt: four on average),
     * which then cost a step of two or a three and a two instead of two threes. JMH {@code MatMulBenchmark} (one
     * thread, in cache, GFLOP/s), repacked Q4_K with two threes -> a three and a two: 2 tokens 46-47 -> 54-56, 4
     * tokens 58-60 -> 64-65, 5 tokens 71-73 -> 78-81; Q5_K 4 tokens 44-47 -> 52-53; pp64 of the 12-layer Q5_K_M file
     * 65.7 / 66.3 -> 72.5 / 68.8 tok/s.
     */
    static final int TOKENS = 6;
    private static final int QK = 256;
    private static final int BYTES = 144;
    private static final int PAIRS = QK / 2;
    private static final int SUB_BLOCKS = 8;

    /** Per-thread decode buffers and accumulators. */
    private static final class Scratch {
        /** Pair {@code p} of the 16 rows at {@code 16p}. */
        final int[] w = new int[PAIRS * ROWS];
        /** The same pairs row by row: sub-block {@code j}'s 16 pairs of row {@code r} at {@code 16(16j + r)}. */
        final int[] rowMajor = new int[PAIRS * ROWS];
        /** Row {@code r}'s eight scales and eight minimums at {@code 16r}. */
        final int[] scaleRows = new int[ROWS * 16];
        /** Sub-block {@code j}'s scale of the 16 rows at {@code 16j}, its minimum at {@code 16(8 + j)}. */
        final int[] scaleMins = new int[2 * SUB_BLOCKS * ROWS];
        final float[] d = new float[ROWS];
        final float[] dmin = new float[ROWS];
        /** Q4_0: block {@code j}'s scale of the 16 rows at {@code 16j}. */
        final float[] blockScales = new float[SUB_BLOCKS * ROWS];
        /** Q4_0: token {@code t}'s 16 rows' sums of one step's eight blocks at {@code 16t}. */
        final float[] blockSums = new float[TOKENS * ROWS];
        /**
         * Where the tile's tokens' code pairs and sub-block sums of the current super-block start in
         * {@link PreparedActivations#tilePairs()} and {@link PreparedActivations#tileSums()}.
         */
        final int[] tokenPairs = new int[TOKENS];
        final int[] tokenSums = new int[TOKENS];
        final float[] tokenScale = new float[TOKENS];
        /** The tile's integer sums of one super-block, token {@code t}'s 16 rows at {@code 16t}. */
        final int[] dots = new int[TOKENS * ROWS];
        /** Token {@code t}'s 16 rows' results so far at {@code 16t}. */
        float[] acc = new float[0];

        /** Zeroes every row's decode inputs, so that the lanes of a group's missing rows hold zeros. */
        void clearRows() {
            Arrays.fill(rowMajor, 0);
            Arrays.fill(scaleRows, 0);
            Arrays.fill(d, 0f);
            Arrays.fill(dmin, 0f);
        }
    }

    /** Per thread, the two groups of 16 rows a call takes at once ({@link #tile}). */
    private static final ThreadLocal<Scratch[]> SCRATCH =
            ThreadLocal.withInitial(() -> new Scratch[] {new Scratch(), new Scratch()});

    /**
     * Whether products of {@code format}'s weights with several rows of {@code x} take these tiles: Q3_K to Q6_K and
     * Q4_0 weights, {@code x} prepared in their order (so it holds the code pairs) for more than one row, whole
     * super-blocks.
     */
    static boolean takes(QuantFormat format, PreparedActivations x) {
        GgmlType type = format.type();
        return Simd.FUSED && (type == GgmlType.Q3_K || type == GgmlType.Q4_K || type == GgmlType.Q5_K
                || type == GgmlType.Q6_K || type == GgmlType.Q4_0) && x.laneOrder() == format.laneOrder() && x.rows() > 1
                && x.width() % QK == 0;
    }

    /** Whether activations prepared in {@code order} get this class's code pairs. */
    static boolean pairsCodes(LaneOrder order) {
        return order == Q4_K.PAIRS || order == Q6_K.PAIRS || order == Q3_K.PAIRS || order == Q4_0.PAIRS;
    }

    /**
     * {@code out[outOffset + r + t*outStride]} = row {@code r} (at {@code srcOffset + r*rowBytes}) times prepared row
     * {@code firstRow + t}, for {@code rows} rows and {@code nTokens} tokens. Arguments are checked.
     */
    static void dot(GgmlType type, MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        dot(type, false, src, srcOffset, rowBytes, rows, x, firstRow, nTokens, out, outOffset, outStride);
    }

    /**
     * As {@link #dot} for Q4_K rows repacked in groups ({@link Q4_KInterleaved}): {@code rows} (a multiple of 16) rows
     * of the repacked matrix at {@code offset} in {@code packed}, from its first group. The tiles read the groups as
     * they lie instead of decoding and transposing each row's blocks, with the same sums in the same order.
     */
    static void dotGroups(MemorySegment packed, long offset, int rows, PreparedActivations x, int firstRow, int nTokens,
            float[] out, int outOffset, int outStride) {
        dot(GgmlType.Q4_K, true, packed, offset, 0, rows, x, firstRow, nTokens, out, outOffset, outStride);
    }

    /** As {@link #dotGroups} for Q5_K rows repacked in groups ({@link Q5_KInterleaved}). */
    static void dotGroupsQ5(MemorySegment packed, long offset, int rows, PreparedActivations x, int firstRow, int nTokens,
            float[] out, int outOffset, int outStride) {
        dot(GgmlType.Q5_K, true, packed, offset, 0, rows, x, firstRow, nTokens, out, outOffset, outStride);
    }

    /**
     * As {@link #dotGroups} for Q6_K rows repacked in groups ({@link Q6_KInterleaved}), activations prepared for Q6_K:
     * the same tiles and sums as Q6_K's rows in the file's layout.
     */
    static void dotGroupsQ6(MemorySegment packed, long offset, int rows, PreparedActivations x, int firstRow, int nTokens,
            float[] out, int outOffset, int outStride) {
        dot(GgmlType.Q6_K, true, packed, offset, 0, rows, x, firstRow, nTokens, out, outOffset, outStride);
    }

    private static void dot(GgmlType type, boolean grouped, MemorySegment src, long srcOffset, long rowBytes, int rows,
            PreparedActivations x, int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        Scratch[] groups = SCRATCH.get();
        for (Scratch g : groups) {
            if (g.acc.length < nTokens * ROWS) {
                g.acc = new float[nTokens * ROWS];
            }
        }
        int width = x.width();
        int blocks = width / QK;
        boolean q3 = type == GgmlType.Q3_K;
        boolean q5 = type == GgmlType.Q5_K;
        boolean q4_0 = type == GgmlType.Q4_0;
        // Q6_K and Q3_K: signed quants paired within 16-element groups, one scale per group, no minimums
        boolean q6 = type == GgmlType.Q6_K || q3;
        // two groups of 16 rows at once: each token's broadcast code pairs serve both; a group past the last row decodes
        // as zeros and is computed for nothing (the backends call with 32 rows, a matrix's last call aside)
        for (int r0 = 0; r0 < rows; r0 += 2 * ROWS) {
            for (Scratch g : groups) {
                Arrays.fill(g.acc, 0, nTokens * ROWS, 0f);
            }
            for (int b = 0; b < blocks; b++) {
                for (int g = 0; g < groups.length; g++) {
                    Scratch s = groups[g];
                    int first = r0 + g * ROWS;
                    int n = Math.max(0, Math.min(ROWS, rows - first));
                    long at = srcOffset + first * rowBytes;
                    if (grouped && type == GgmlType.Q6_K) {
                        decodeGroupQ6(src, srcOffset + ((long) first / ROWS * blocks + b) * Q6_KInterleaved.GROUP_BLOCK_BYTES,
                                n > 0, s);
                    } else if (grouped && q5) {
                        decodeGroupQ5(src, srcOffset + ((long) first / ROWS * blocks + b) * Q5_KInterleaved.GROUP_BLOCK_BYTES,
                                n > 0, s);
                    } else if (grouped) {
                        decodeGroup(src, srcOffset + ((long) first / ROWS * blocks + b) * Q4_KInterleaved.GROUP_BLOCK_BYTES,
                                n > 0, s);
                    } else if (q3) {
                        decodeQ3(src, at + (long) b * Q3_BYTES, rowBytes, n, s);
                    } else if (q6) {
                        decodeQ6(src, at + (long) b * Q6_BYTES, rowBytes, n, s);
                    } else if (q5) {
                        decodeQ5(src, at + (long) b * Q5_BYTES, rowBytes, n, s);
                    } else if (q4_0) {
                        decodeQ4_0(src, at + (long) b * BYTES, rowBytes, n, s);
                    } else {
                        decode(src, at + (long) b * BYTES, rowBytes, n, s);
                    }
                }
                Scratch s = groups[0];
                for (int t0 = 0; t0 < nTokens; t0 += TOKENS) {
                    for (int t = 0; t < TOKENS; t++) {
                        int row = firstRow + Math.min(t0 + t, nTokens - 1);
                        s.tokenPairs[t] = row * width / 2 + b * PAIRS;
                        // Q4_K's and Q5_K's code sums and Q4_0's block scales alike: one per 32 values
                        s.tokenSums[t] = row * width / 32 + b * SUB_BLOCKS;
                        s.tokenScale[t] = x.codeScales()[row * blocks + b];
                    }
                    int valid = Math.min(TOKENS, nTokens - t0);
                    if (q4_0) {
                        tileQ4_0(s, groups[1], x.tilePairs(), x.codeScales(), t0, valid);
                    } else {
                        tile(s, groups[1], x.tilePairs(), t0, valid, q6, q5 || q6);
                        accumulate(s, s, x.tileSums(), t0, valid, q6);
                        accumulate(groups[1], s, x.tileSums(), t0, valid, q6);
                    }
                }
            }
            for (int g = 0; g < groups.length; g++) {
                int first = r0 + g * ROWS;
                int n = Math.max(0, Math.min(ROWS, rows - first));
                for (int t = 0; t < nTokens; t++) {
                    for (int r = 0; r < n; r++) {
                        out[outOffset + first + r + t * outStride] = groups[g].acc[t * ROWS + r];
                    }
                }
            }
        }
    }

    /*
     * Q4_0: eight 32-element blocks (144 bytes, as a Q4_K super-block) a step. Each block is a sub-block of Q4_K's pair
     * layout (byte {@code k}'s nibbles are elements {@code k} and {@code k + 16}, as Q4_K's activation pairs join them),
     * its quants made signed ({@code q - 8}); its 16 pairs are one window (at most 16 * 8 * 127 in each 16-bit half, 16 *
     * 2 * 8 * 127 in their sum, which one shift pair takes), whose sum goes to float times the row's block scale and the
     * token's Q8_0 block scale, block after block, in the same order for every row and token.
     *
     * <p>Measured against {@link ScaledDot}'s float tiles, which Q4_0 batches took before: JMH {@code MatMulBenchmark}
     * (768 x 2048, in cache, two threads, GFLOP/s) 32 tokens 227-234 -> 206-211, 128 tokens 194 -> 236, 512 tokens
     * 205 -> 243: decoding 16 rows costs about four tokens' products, which small batches share among fewer tokens.
     * In a model the large batches weigh more: 12-layer Qwen3-30B-A3B shape in Q4_0, pp512 147-153 -> 165-169 tok/s,
     * and the same 162-169 when batches under 32, 64 or 128 tokens kept the float tiles, so every batch takes these.
     */
    private static final int Q4_0_BYTES = 18;
    private static final IntVector Q4_0_OFFSET = Simd.FUSED ? IntVector.broadcast(Simd.I, 8) : null;

    /**
     * Eight Q4_0 blocks of {@code n} rows into the pair layout ({@link #decode}'s), pairs {@code lo - 8} and
     * {@code hi - 8} in the lower and upper 16 bits; block {@code j}'s scale of row {@code r} at
     * {@code blockScales[16j + r]}. Lanes past {@code n} zero.
     */
    private static void decodeQ4_0(MemorySegment src, long block, long rowBytes, int n, Scratch s) {
        int[] rowMajor = s.rowMajor;
        if (n < ROWS) {
            Arrays.fill(rowMajor, 0);
            Arrays.fill(s.blockScales, 0f);
        }
        for (int r = 0; r < n; r++) {
            long row = block + r * rowBytes;
            for (int j = 0; j < SUB_BLOCKS; j++) {
                long at = row + (long) j * Q4_0_BYTES;
                s.blockScales[j * ROWS + r] = Halfs.readFp16(src, at);
                IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 2, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                q.and(0xF).sub(Q4_0_OFFSET).and(0xFFFF)
                        .or(q.lanewise(LSHR, Simd.SHIFT_4).sub(Q4_0_OFFSET).lanewise(LSHL, 16))
                        .intoArray(rowMajor, (j * ROWS + r) * 16);
            }
        }
        for (int i = 0; i < SUB_BLOCKS; i++) {
            transpose(rowMajor, i * 256, s.w, i * 256);
        }
    }

    /**
     * Adds eight Q4_0 blocks of two groups of 16 rows ({@code s}, {@code b}, as {@link #tile}) times the tile's tokens to
     * the accumulators of tokens {@code t0 ..}: per block its 16 pairs two a step, then the upper halves to float, times
     * the rows' block scales and the token's block scale ({@code scales[tokenSums[t] + j]}). Written out rather than
     * shared with {@link #tile}: a helper for the step would take and return vectors, which C2 boxes where it does not
     * inline (see {@link #decodeQ5}), and the window's end differs (float scales per block here, integer ones per
     * sub-block there). Two groups rather than one, on the Intel Xeon VM: {@code MatMulBenchmark} (64 tokens, one
     * thread) 69-70 -> 91-94 GFLOP/s, pp512 of the 12-layer Q4_0 file 94.2 / 95.8 -> 111.5 / 118.3 tok/s.
     */
    private static void tileQ4_0(Scratch s, Scratch b, int[] p, float[] scales, int t0, int valid) {
        int[] w = s.w;
        int[] v = b.w;
        for (int t = 0; t < valid; t += 3) {
            int a0 = s.tokenPairs[t];
            int a1 = s.tokenPairs[t + 1];
            int a2 = s.tokenPairs[t + 2];
            int d0 = s.tokenSums[t];
            int d1 = s.tokenSums[t + 1];
            int d2 = s.tokenSums[t + 2];
            FloatVector f0 = FloatVector.zero(Simd.F);
            FloatVector f1 = f0;
            FloatVector f2 = f0;
            FloatVector f3 = f0;
            FloatVector f4 = f0;
            FloatVector f5 = f0;
            for (int j = 0; j < SUB_BLOCKS; j++) {
                ShortVector h0 = ShortVector.zero(Simd.S_FULL);
                ShortVector h1 = h0;
                ShortVector h2 = h0;
                ShortVector h3 = h0;
                ShortVector h4 = h0;
                ShortVector h5 = h0;
                for (int q = 16 * j; q < 16 * j + 16; q += 2) {
                    ShortVector w0 = IntVector.fromArray(Simd.I, w, q * ROWS).reinterpretAsShorts();
                    ShortVector w1 = IntVector.fromArray(Simd.I, w, (q + 1) * ROWS).reinterpretAsShorts();
                    ShortVector v0 = IntVector.fromArray(Simd.I, v, q * ROWS).reinterpretAsShorts();
                    ShortVector v1 = IntVector.fromArray(Simd.I, v, (q + 1) * ROWS).reinterpretAsShorts();
                    int a = a0 + q;
                    ShortVector c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                    ShortVector c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                    h0 = h0.add(w0.mul(c0)).add(w1.mul(c1));
                    h3 = h3.add(v0.mul(c0)).add(v1.mul(c1));
                    a = a1 + q;
                    c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                    c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                    h1 = h1.add(w0.mul(c0)).add(w1.mul(c1));
                    h4 = h4.add(v0.mul(c0)).add(v1.mul(c1));
                    a = a2 + q;
                    c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                    c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                    h2 = h2.add(w0.mul(c0)).add(w1.mul(c1));
                    h5 = h5.add(v0.mul(c0)).add(v1.mul(c1));
                }
                FloatVector d = FloatVector.fromArray(Simd.F, s.blockScales, j * ROWS);
                FloatVector e = FloatVector.fromArray(Simd.F, b.blockScales, j * ROWS);
                float e0 = scales[d0 + j];
                float e1 = scales[d1 + j];
                float e2 = scales[d2 + j];
                IntVector u = h0.reinterpretAsInts();
                f0 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(d.mul(e0), f0);
                u = h1.reinterpretAsInts();
                f1 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(d.mul(e1), f1);
                u = h2.reinterpretAsInts();
                f2 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(d.mul(e2), f2);
                u = h3.reinterpretAsInts();
                f3 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(e.mul(e0), f3);
                u = h4.reinterpretAsInts();
                f4 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(e.mul(e1), f4);
                u = h5.reinterpretAsInts();
                f5 = ((FloatVector) u.add(u.lanewise(LSHL, 16)).lanewise(ASHR, 16).convert(I2F, 0)).fma(e.mul(e2), f5);
            }
            f0.intoArray(s.blockSums, t * ROWS);
            f1.intoArray(s.blockSums, (t + 1) * ROWS);
            f2.intoArray(s.blockSums, (t + 2) * ROWS);
            f3.intoArray(b.blockSums, t * ROWS);
            f4.intoArray(b.blockSums, (t + 1) * ROWS);
            f5.intoArray(b.blockSums, (t + 2) * ROWS);
        }
        addBlockSums(s, t0, valid);
        addBlockSums(b, t0, valid);
    }

    private static void addBlockSums(Scratch g, int t0, int valid) {
        for (int t = 0; t < valid; t++) {
            int at = (t0 + t) * ROWS;
            FloatVector.fromArray(Simd.F, g.acc, at).add(FloatVector.fromArray(Simd.F, g.blockSums, t * ROWS))
                    .intoArray(g.acc, at);
        }
    }

    /** Super-block {@code block} of {@code n} rows {@code rowBytes} apart into the scratch's pair layout; lanes past {@code n} zero. */
    private static void decode(MemorySegment src, long block, long rowBytes, int n, Scratch s) {
        int[] rowMajor = s.rowMajor;
        if (n < ROWS) {
            s.clearRows();
        }
        for (int r = 0; r < n; r++) {
            long at = block + r * rowBytes;
            scalesAndMinimums(src, at, r, s);
            for (int c = 0; c < 4; c++) {
                // 32 quant bytes: sub-block 2c in the low nibbles, 2c+1 in the high ones; pair k = bytes k and k + 16
                IntVector a = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 16 + 32L * c, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector b = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 32 + 32L * c, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                a.and(0xF).or(b.and(0xF).lanewise(LSHL, 16)).intoArray(rowMajor, (2 * c * ROWS + r) * 16);
                a.lanewise(LSHR, 4).or(b.lanewise(LSHR, 4).lanewise(LSHL, 16))
                        .intoArray(rowMajor, ((2 * c + 1) * ROWS + r) * 16);
            }
        }
        toLanes(s);
    }

    /**
     * Block {@code at} of a group of 16 repacked rows ({@link Q4_KInterleaved}) into the scratch's pair layout: pair
     * {@code 16j + p} of the 16 rows is nibble {@code p % 4} of every 16-bit lane of the group's vector {@code p / 4} of
     * sub-block {@code j}, already a lane per row. {@code present} false: a group past the matrix's end, all zeros.
     */
    private static void decodeGroup(MemorySegment src, long at, boolean present, Scratch s) {
        if (!groupScales(src, at, present, s)) {
            return;
        }
        for (int j = 0; j < SUB_BLOCKS; j++) {
            for (int v = 0; v < 4; v++) {
                ShortVector q = ShortVector.fromMemorySegment(Simd.S_FULL, src,
                        at + Q4_KInterleaved.QUANTS + 256L * j + 64L * v, Simd.LE);
                int p = 16 * j + 4 * v;
                q.and(NIBBLES).reinterpretAsInts().intoArray(s.w, p * ROWS);
                q.lanewise(LSHR, 4).and(NIBBLES).reinterpretAsInts().intoArray(s.w, (p + 1) * ROWS);
                q.lanewise(LSHR, 8).and(NIBBLES).reinterpretAsInts().intoArray(s.w, (p + 2) * ROWS);
                q.lanewise(LSHR, 12).reinterpretAsInts().intoArray(s.w, (p + 3) * ROWS);
            }
        }
    }

    /**
     * The {@code d}, {@code dmin}, scales and minimums of a group-block (Q4_K's and Q5_K's groups alike) into the
     * scratch; false, everything zero, for a group past the matrix's end ({@code present} false).
     */
    private static boolean groupScales(MemorySegment src, long at, boolean present, Scratch s) {
        if (!present) {
            Arrays.fill(s.w, 0);
            Arrays.fill(s.scaleMins, 0);
            Arrays.fill(s.d, 0f);
            Arrays.fill(s.dmin, 0f);
            return false;
        }
        FloatVector.fromMemorySegment(Simd.F, src, at, Simd.LE).intoArray(s.d, 0);
        FloatVector.fromMemorySegment(Simd.F, src, at + Q4_KInterleaved.DMIN, Simd.LE).intoArray(s.dmin, 0);
        for (int j = 0; j < SUB_BLOCKS; j++) {
            ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + Q4_KInterleaved.SCALES + 16L * j, Simd.LE)
                    .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).intoArray(s.scaleMins, j * ROWS);
            ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + Q4_KInterleaved.MINS + 16L * j, Simd.LE)
                    .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).intoArray(s.scaleMins, (SUB_BLOCKS + j) * ROWS);
        }
        return true;
    }

    private static final ShortVector NIBBLES = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0xF) : null;
    private static final ShortVector FIFTH_BIT = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0x10) : null;

    /**
     * As {@link #decodeGroup} for a group of Q5_K rows ({@link Q5_KInterleaved}): each nibble joined with its fifth bit,
     * bit {@code p % 16} of the sub-block's fifth vector for pair {@code p}. A copy of {@link #decodeGroup}, as
     * {@link #decodeQ5} is of {@link #decode}.
     */
    private static void decodeGroupQ5(MemorySegment src, long at, boolean present, Scratch s) {
        if (!groupScales(src, at, present, s)) {
            return;
        }
        for (int j = 0; j < SUB_BLOCKS; j++) {
            long sub = at + Q5_KInterleaved.QUANTS + (long) Q5_KInterleaved.SUB_BLOCK_BYTES * j;
            ShortVector fifth = ShortVector.fromMemorySegment(Simd.S_FULL, src, sub + Q5_KInterleaved.FIFTH_BITS, Simd.LE);
            for (int v = 0; v < 4; v++) {
                ShortVector q = ShortVector.fromMemorySegment(Simd.S_FULL, src, sub + 64L * v, Simd.LE);
                int p = 16 * j + 4 * v;
                // bit 4v + k of the fifth vector to bit 4: shifted left by 4 - (4v + k), or right by (4v + k) - 4
                ShortVector f = v == 0 ? fifth.lanewise(LSHL, 4) : fifth.lanewise(LSHR, 4 * v - 4);
                q.and(NIBBLES).or(f.and(FIFTH_BIT)).reinterpretAsInts().intoArray(s.w, p * ROWS);
                q.lanewise(LSHR, 4).and(NIBBLES).or(f.lanewise(LSHR, 1).and(FIFTH_BIT)).reinterpretAsInts()
                        .intoArray(s.w, (p + 1) * ROWS);
                q.lanewise(LSHR, 8).and(NIBBLES).or(f.lanewise(LSHR, 2).and(FIFTH_BIT)).reinterpretAsInts()
                        .intoArray(s.w, (p + 2) * ROWS);
                q.lanewise(LSHR, 12).or(f.lanewise(LSHR, 3).and(FIFTH_BIT)).reinterpretAsInts()
                        .intoArray(s.w, (p + 3) * ROWS);
            }
        }
    }

    private static final int Q5_BYTES = 176;
    private static final ShortVector SIX_BITS = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0x3F) : null;
    private static final ShortVector Q6_OFFSET = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 32) : null;
    private static final ShortVector FROM_4 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0xFFF0) : null;
    private static final ShortVector FROM_8 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0xFF00) : null;
    private static final ShortVector FROM_12 = Simd.FUSED ? ShortVector.broadcast(Simd.S_FULL, (short) 0xF000) : null;

    /**
     * Block {@code at} of a group of 16 repacked Q6_K rows ({@link Q6_KInterleaved}) into {@link #decodeQ6}'s pair
     * layout: pair {@code 16j + 4v + k} of the 16 rows is nibble {@code k} of nibble vector {@code v} of sub-block
     * {@code j} joined with its two high bits, less 32, already a lane per row; the 16 group scales sign-extended, the
     * rows' {@code d}. {@code present} false: a group past the matrix's end, all zeros.
     */
    private static void decodeGroupQ6(MemorySegment src, long at, boolean present, Scratch s) {
        if (!present) {
            Arrays.fill(s.w, 0);
            Arrays.fill(s.scaleMins, 0);
            Arrays.fill(s.d, 0f);
            return;
        }
        FloatVector.fromMemorySegment(Simd.F, src, at, Simd.LE).intoArray(s.d, 0);
        for (int g = 0; g < 2 * SUB_BLOCKS; g++) {
            ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + Q6_KInterleaved.SCALES + 16L * g, Simd.LE)
                    .convertShape(jdk.incubator.vector.VectorOperators.B2I, Simd.I, 0)).intoArray(s.scaleMins, g * ROWS);
        }
        for (int j = 0; j < SUB_BLOCKS; j++) {
            long sub = at + Q6_KInterleaved.QUANTS + (long) Q6_KInterleaved.SUB_BLOCK_BYTES * j;
            for (int v = 0; v < 4; v++) {
                ShortVector q = ShortVector.fromMemorySegment(Simd.S_FULL, src, sub + 64L * v, Simd.LE);
                ShortVector high = ShortVector.fromMemorySegment(Simd.S_FULL, src,
                        sub + Q6_KInterleaved.HIGH_BITS + 64L * (v / 2), Simd.LE);
                // the odd vector's bit pairs lie two bits above the even one's (Q6_KInterleaved.highBitsAt)
                ShortVector h = high.lanewise(LSHR, 2 * (v % 2));
                int p = 16 * j + 4 * v;
                q.lanewise(BITWISE_BLEND, h, FROM_4).and(SIX_BITS).sub(Q6_OFFSET).reinterpretAsInts()
                        .intoArray(s.w, p * ROWS);
                q.lanewise(BITWISE_BLEND, h, FROM_8).lanewise(LSHR, 4).and(SIX_BITS).sub(Q6_OFFSET).reinterpretAsInts()
                        .intoArray(s.w, (p + 1) * ROWS);
                q.lanewise(BITWISE_BLEND, h, FROM_12).lanewise(LSHR, 8).and(SIX_BITS).sub(Q6_OFFSET).reinterpretAsInts()
                        .intoArray(s.w, (p + 2) * ROWS);
                q.lanewise(LSHR, 12).or(h.lanewise(LSHL, 4).and(SIX_BITS)).sub(Q6_OFFSET).reinterpretAsInts()
                        .intoArray(s.w, (p + 3) * ROWS);
            }
        }
    }

    /**
     * Q5_K's super-block {@code block} of {@code n} rows into Q4_K's pair layout ({@link #decode}): the same scales,
     * minimums and nibbles (at byte 48), each nibble with its fifth bit from the 32 {@code qh} bytes (bit {@code j} of
     * byte {@code l} for element {@code l} of sub-block {@code j}), quants 0..31. A copy of {@link #decode} on purpose:
     * one decoder for both, the fifth bits a zero vector for Q4_K, made C2 box the vectors and cost both formats' prompts
     * about 15% (Q4_K_M pp512 185 -> 159 tok/s).
     */
    private static void decodeQ5(MemorySegment src, long block, long rowBytes, int n, Scratch s) {
        int[] rowMajor = s.rowMajor;
        if (n < ROWS) {
            s.clearRows();
        }
        for (int r = 0; r < n; r++) {
            long at = block + r * rowBytes;
            scalesAndMinimums(src, at, r, s);
            IntVector ha = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 16, Simd.LE)
                    .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector hb = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 32, Simd.LE)
                    .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            for (int c = 0; c < 4; c++) {
                IntVector a = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 48 + 32L * c, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector b = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 64 + 32L * c, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                IntVector aLow = a.and(0xF).or(ha.lanewise(LSHR, 2 * c).and(1).lanewise(LSHL, 4));
                IntVector bLow = b.and(0xF).or(hb.lanewise(LSHR, 2 * c).and(1).lanewise(LSHL, 4));
                aLow.or(bLow.lanewise(LSHL, 16)).intoArray(rowMajor, (2 * c * ROWS + r) * 16);
                IntVector aHigh = a.lanewise(LSHR, 4).or(ha.lanewise(LSHR, 2 * c + 1).and(1).lanewise(LSHL, 4));
                IntVector bHigh = b.lanewise(LSHR, 4).or(hb.lanewise(LSHR, 2 * c + 1).and(1).lanewise(LSHL, 4));
                aHigh.or(bHigh.lanewise(LSHL, 16)).intoArray(rowMajor, ((2 * c + 1) * ROWS + r) * 16);
            }
        }
        toLanes(s);
    }

    /** Row {@code r}'s {@code d}, {@code dmin}, eight scales and eight minimums (Q4_K's and Q5_K's first 16 bytes). */
    private static void scalesAndMinimums(MemorySegment src, long at, int r, Scratch s) {
        int pair = src.get(Layouts.INT_LE, at);
        s.d[r] = Float.float16ToFloat((short) pair);
        s.dmin[r] = Float.float16ToFloat((short) (pair >>> 16));
        KQuantScales.unpackScalesAndMinimums(src, at, s.scaleRows, r * 16);
    }

    /**
     * Rows to lanes: pair {@code k} of the 16 pairs at {@code 16i} of every row is column {@code k} of that 16 x 16
     * block; scale (or, Q4_K, minimum) {@code j} of every row column {@code j} of the rows' scales.
     */
    private static void toLanes(Scratch s) {
        transpose(s.scaleRows, 0, s.scaleMins, 0);
        for (int i = 0; i < 8; i++) {
            transpose(s.rowMajor, i * 256, s.w, i * 256);
        }
    }

    /**
     * Transposes the 16 x 16 block of {@code rowMajor} at {@code from} (row {@code r} at {@code from + 16r}) into
     * {@code w} at {@code to} (column {@code k} at {@code to + 16k}): four rounds of two-vector selections that swap
     * the off-diagonal halves of ever smaller blocks, 64 instructions where 16 gathers cost several times more.
     */
    static void transpose(int[] rowMajor, int from, int[] w, int to) {
        if (!Simd.FUSED) {
            for (int r = 0; r < 16; r++) {
                for (int k = 0; k < 16; k++) {
                    w[to + 16 * k + r] = rowMajor[from + 16 * r + k];
                }
            }
            return;
        }
        IntVector v0 = IntVector.fromArray(Simd.I, rowMajor, from + 0);
        IntVector v1 = IntVector.fromArray(Simd.I, rowMajor, from + 16);
        IntVector v2 = IntVector.fromArray(Simd.I, rowMajor, from + 32);
        IntVector v3 = IntVector.fromArray(Simd.I, rowMajor, from + 48);
        IntVector v4 = IntVector.fromArray(Simd.I, rowMajor, from + 64);
        IntVector v5 = IntVector.fromArray(Simd.I, rowMajor, from + 80);
        IntVector v6 = IntVector.fromArray(Simd.I, rowMajor, from + 96);
        IntVector v7 = IntVector.fromArray(Simd.I, rowMajor, from + 112);
        IntVector v8 = IntVector.fromArray(Simd.I, rowMajor, from + 128);
        IntVector v9 = IntVector.fromArray(Simd.I, rowMajor, from + 144);
        IntVector v10 = IntVector.fromArray(Simd.I, rowMajor, from + 160);
        IntVector v11 = IntVector.fromArray(Simd.I, rowMajor, from + 176);
        IntVector v12 = IntVector.fromArray(Simd.I, rowMajor, from + 192);
        IntVector v13 = IntVector.fromArray(Simd.I, rowMajor, from + 208);
        IntVector v14 = IntVector.fromArray(Simd.I, rowMajor, from + 224);
        IntVector v15 = IntVector.fromArray(Simd.I, rowMajor, from + 240);
        IntVector n0s0 = LOW_8.selectFrom(v0, v8);
        v8 = HIGH_8.selectFrom(v0, v8);
        v0 = n0s0;
        IntVector n1s0 = LOW_8.selectFrom(v1, v9);
        v9 = HIGH_8.selectFrom(v1, v9);
        v1 = n1s0;
        IntVector n2s0 = LOW_8.selectFrom(v2, v10);
        v10 = HIGH_8.selectFrom(v2, v10);
        v2 = n2s0;
        IntVector n3s0 = LOW_8.selectFrom(v3, v11);
        v11 = HIGH_8.selectFrom(v3, v11);
        v3 = n3s0;
        IntVector n4s0 = LOW_8.selectFrom(v4, v12);
        v12 = HIGH_8.selectFrom(v4, v12);
        v4 = n4s0;
        IntVector n5s0 = LOW_8.selectFrom(v5, v13);
        v13 = HIGH_8.selectFrom(v5, v13);
        v5 = n5s0;
        IntVector n6s0 = LOW_8.selectFrom(v6, v14);
        v14 = HIGH_8.selectFrom(v6, v14);
        v6 = n6s0;
        IntVector n7s0 = LOW_8.selectFrom(v7, v15);
        v15 = HIGH_8.selectFrom(v7, v15);
        v7 = n7s0;
        IntVector n0s1 = LOW_4.selectFrom(v0, v4);
        v4 = HIGH_4.selectFrom(v0, v4);
        v0 = n0s1;
        IntVector n1s1 = LOW_4.selectFrom(v1, v5);
        v5 = HIGH_4.selectFrom(v1, v5);
        v1 = n1s1;
        IntVector n2s1 = LOW_4.selectFrom(v2, v6);
        v6 = HIGH_4.selectFrom(v2, v6);
        v2 = n2s1;
        IntVector n3s1 = LOW_4.selectFrom(v3, v7);
        v7 = HIGH_4.selectFrom(v3, v7);
        v3 = n3s1;
        IntVector n8s1 = LOW_4.selectFrom(v8, v12);
        v12 = HIGH_4.selectFrom(v8, v12);
        v8 = n8s1;
        IntVector n9s1 = LOW_4.selectFrom(v9, v13);
        v13 = HIGH_4.selectFrom(v9, v13);
        v9 = n9s1;
        IntVector n10s1 = LOW_4.selectFrom(v10, v14);
        v14 = HIGH_4.selectFrom(v10, v14);
        v10 = n10s1;
        IntVector n11s1 = LOW_4.selectFrom(v11, v15);
        v15 = HIGH_4.selectFrom(v11, v15);
        v11 = n11s1;
        IntVector n0s2 = LOW_2.selectFrom(v0, v2);
        v2 = HIGH_2.selectFrom(v0, v2);
        v0 = n0s2;
        IntVector n1s2 = LOW_2.selectFrom(v1, v3);
        v3 = HIGH_2.selectFrom(v1, v3);
        v1 = n1s2;
        IntVector n4s2 = LOW_2.selectFrom(v4, v6);
        v6 = HIGH_2.selectFrom(v4, v6);
        v4 = n4s2;
        IntVector n5s2 = LOW_2.selectFrom(v5, v7);
        v7 = HIGH_2.selectFrom(v5, v7);
        v5 = n5s2;
        IntVector n8s2 = LOW_2.selectFrom(v8, v10);
        v10 = HIGH_2.selectFrom(v8, v10);
        v8 = n8s2;
        IntVector n9s2 = LOW_2.selectFrom(v9, v11);
        v11 = HIGH_2.selectFrom(v9, v11);
        v9 = n9s2;
        IntVector n12s2 = LOW_2.selectFrom(v12, v14);
        v14 = HIGH_2.selectFrom(v12, v14);
        v12 = n12s2;
        IntVector n13s2 = LOW_2.selectFrom(v13, v15);
        v15 = HIGH_2.selectFrom(v13, v15);
        v13 = n13s2;
        IntVector n0s3 = LOW_1.selectFrom(v0, v1);
        v1 = HIGH_1.selectFrom(v0, v1);
        v0 = n0s3;
        IntVector n2s3 = LOW_1.selectFrom(v2, v3);
        v3 = HIGH_1.selectFrom(v2, v3);
        v2 = n2s3;
        IntVector n4s3 = LOW_1.selectFrom(v4, v5);
        v5 = HIGH_1.selectFrom(v4, v5);
        v4 = n4s3;
        IntVector n6s3 = LOW_1.selectFrom(v6, v7);
        v7 = HIGH_1.selectFrom(v6, v7);
        v6 = n6s3;
        IntVector n8s3 = LOW_1.selectFrom(v8, v9);
        v9 = HIGH_1.selectFrom(v8, v9);
        v8 = n8s3;
        IntVector n10s3 = LOW_1.selectFrom(v10, v11);
        v11 = HIGH_1.selectFrom(v10, v11);
        v10 = n10s3;
        IntVector n12s3 = LOW_1.selectFrom(v12, v13);
        v13 = HIGH_1.selectFrom(v12, v13);
        v12 = n12s3;
        IntVector n14s3 = LOW_1.selectFrom(v14, v15);
        v15 = HIGH_1.selectFrom(v14, v15);
        v14 = n14s3;
        v0.intoArray(w, to + 0);
        v1.intoArray(w, to + 16);
        v2.intoArray(w, to + 32);
        v3.intoArray(w, to + 48);
        v4.intoArray(w, to + 64);
        v5.intoArray(w, to + 80);
        v6.intoArray(w, to + 96);
        v7.intoArray(w, to + 112);
        v8.intoArray(w, to + 128);
        v9.intoArray(w, to + 144);
        v10.intoArray(w, to + 160);
        v11.intoArray(w, to + 176);
        v12.intoArray(w, to + 192);
        v13.intoArray(w, to + 208);
        v14.intoArray(w, to + 224);
        v15.intoArray(w, to + 240);
    }

    /** {@link #transpose}'s selection for the lower ({@code low}) or upper vector of a pair {@code d} apart. */
    private static IntVector swapIndexes(int d, boolean low) {
        return lanes(l -> (l & d) == 0 ? (low ? l : l + d) : (low ? ROWS + l - d : ROWS + l));
    }

    private static final IntVector LOW_8 = swapIndexes(8, true);
    private static final IntVector HIGH_8 = swapIndexes(8, false);
    private static final IntVector LOW_4 = swapIndexes(4, true);
    private static final IntVector HIGH_4 = swapIndexes(4, false);
    private static final IntVector LOW_2 = swapIndexes(2, true);
    private static final IntVector HIGH_2 = swapIndexes(2, false);
    private static final IntVector LOW_1 = swapIndexes(1, true);
    private static final IntVector HIGH_1 = swapIndexes(1, false);

    /**
     * Packs a row of codes ({@code codes[o .. o + width)}) for the tiles of weights in {@code order}. Q4_K: per 32-element
     * sub-block {@code j}, pair {@code k} holds {@code code[32j + k]} in its lower and {@code code[32j + k + 16]} in its
     * upper 16 bits at {@code pairs[o/2 + 16j + k]}, and the sub-block's code sum at {@code sums[o/32 + j]}. Q6_K and
     * Q3_K: per 32 elements {@code 32j}, pair {@code i} joins elements {@code 32j + 16(i/8) + i%8} (lower half) and that
     * plus 8 (upper half): two 16-element groups, whose scales are per group; per group {@code g}, {@code -32} times the
     * code sums of its pairs' lower and upper halves at {@code sums[o/16 + g]}, in the lower and upper 16 bits (read by
     * the one-token kernels of {@link Q6_KInterleaved}, {@link Q6_KInterleaved256} and {@link Q3_KInterleaved}, and by
     * {@link Q6_KInterleaved256#tokensHalves}), and the group's code sum itself at {@code groupSums[o/16 + g]} (read by
     * {@link Q2_KInterleaved}, whose minimums multiply it).
     */
    static void packCodes(LaneOrder order, int[] codes, int o, int[] pairs, int[] sums, int[] groupSums, int width) {
        boolean q6 = order == Q6_K.PAIRS || order == Q3_K.PAIRS;
        if (!Simd.FUSED) {
            packCodesScalar(q6, codes, o, pairs, sums, groupSums, width);
            return;
        }
        for (int e = o; e < o + width; e += 32) {
            IntVector a = IntVector.fromArray(Simd.I, codes, e);
            IntVector b = IntVector.fromArray(Simd.I, codes, e + 16);
            if (q6) {
                Q6_A.selectFrom(a, b).and(0xFFFF).or(Q6_B.selectFrom(a, b).lanewise(LSHL, 16)).intoArray(pairs, e / 2);
                q6Sums(codes, e, sums, groupSums);
            } else {
                a.and(0xFFFF).or(b.lanewise(LSHL, 16)).intoArray(pairs, e / 2);
                sums[e / 32] = a.add(b).reduceLanes(ADD);
            }
        }
    }

    /**
     * {@code pair} less {@code 2^bits} times {@code previous}, each 16-bit half on its own (modulo 2^16): a telescoped
     * pair, which the one-token kernels of 256-bit vectors multiply with a lane shifted right by {@code bits} more than
     * for {@code previous} ({@link Q4_KInterleaved#oneTokenHalves} says why that is exact).
     */
    static int step(int pair, int previous, int bits) {
        int low = (short) pair - ((short) previous << bits);
        int high = (pair >> 16) - ((previous >> 16) << bits);
        return low & 0xFFFF | high << 16;
    }

    /**
     * {@code factor} times the sums of the lower and of the upper halves of pairs {@code from .. from+count-1}, each in
     * its own 16-bit half (modulo 2^16): where the one-token kernels of Q4_0 and Q5_K start a lane's sum, so that the
     * offset of their unsigned quants keeps its true value within 16 bits.
     */
    static int halfSums(int[] pairs, int from, int count, int factor) {
        int low = 0;
        int high = 0;
        for (int k = from; k < from + count; k++) {
            low += (short) pairs[k];
            high += pairs[k] >> 16;
        }
        return factor * low & 0xFFFF | factor * high << 16;
    }

    /** {@code pair} times {@code factor}, each 16-bit half on its own (modulo 2^16). */
    static int times(int pair, int factor) {
        return (short) pair * factor & 0xFFFF | (pair >> 16) * factor << 16;
    }

    /**
     * Per 16-element group of the 32 from {@code e}, {@code -32} times the code sums of its pairs' lower and upper
     * halves: where {@link Q6_KInterleaved}'s 16-bit sums of unsigned quants start; and the group's code sum.
     */
    private static void q6Sums(int[] codes, int e, int[] sums, int[] groupSums) {
        for (int h = 0; h < 2; h++) {
            int low = 0;
            int high = 0;
            for (int k = 0; k < 8; k++) {
                low += codes[e + 16 * h + k];
                high += codes[e + 16 * h + 8 + k];
            }
            sums[e / 16 + h] = (-32 * high) << 16 | (-32 * low) & 0xFFFF;
            groupSums[e / 16 + h] = low + high;
        }
    }

    /** {@link #packCodes} without 512-bit vectors: the same pairs and sums, lane by lane. */
    private static void packCodesScalar(boolean q6, int[] codes, int o, int[] pairs, int[] sums, int[] groupSums,
            int width) {
        for (int e = o; e < o + width; e += 32) {
            int sum = 0;
            for (int i = 0; i < 16; i++) {
                int low = q6 ? e + 16 * (i / 8) + i % 8 : e + i;
                int high = q6 ? low + 8 : low + 16;
                pairs[e / 2 + i] = codes[low] & 0xFFFF | codes[high] << 16;
                sum += codes[low] + codes[high];
            }
            if (!q6) {
                sums[e / 32] = sum;
                continue;
            }
            q6Sums(codes, e, sums, groupSums);
        }
    }

    /**
     * The elements of Q6_K's pairs within 32 consecutive ones (two 16-element groups, as two vectors): lane {@code i}
     * pairs element {@code 16(i/8) + i%8} ({@link #Q6_A}, the weight's lower half) with that plus 8 ({@link #Q6_B}).
     */
    private static final IntVector Q6_A = lanes(i -> i < 8 ? i : ROWS + i - 8);
    private static final IntVector Q6_B = lanes(i -> i < 8 ? i + 8 : ROWS + i);

    private static IntVector lanes(java.util.function.IntUnaryOperator index) {
        return Simd.FUSED ? IntVector.fromArray(Simd.I, java.util.stream.IntStream.range(0, ROWS).map(index).toArray(), 0)
                : null;
    }

    private static final int Q6_BYTES = 210;
    private static final IntVector SIGNED_OFFSET = Simd.FUSED ? IntVector.broadcast(Simd.I, 32) : null;

    /**
     * Q6_K's super-block {@code block} of {@code n} rows into the pair layout: run {@code u} of 32 elements (half
     * {@code u/4}, quarter {@code u%4}: low bits from a nibble of 32 {@code ql} bytes, high bits a bit pair of the half's
     * 32 {@code qh} bytes) gives pairs {@code 16u .. 16u+15} of signed quants {@code q - 32}; the 16 group scales of a
     * row, sign-extended, are turned into lanes like the quants.
     */
    private static void decodeQ6(MemorySegment src, long block, long rowBytes, int n, Scratch s) {
        int[] rowMajor = s.rowMajor;
        if (n < ROWS) {
            s.clearRows();
        }
        for (int r = 0; r < n; r++) {
            long at = block + r * rowBytes;
            s.d[r] = Halfs.readFp16(src, at + 208);
            ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 192, Simd.LE).convertShape(
                    jdk.incubator.vector.VectorOperators.B2I, Simd.I, 0)).intoArray(s.scaleRows, r * 16);
            for (int u = 0; u < 8; u++) {
                int half = u / 4;
                int quarter = u % 4;
                long ql = at + 64L * half + 32L * (quarter & 1);
                long qh = at + 128 + 32L * half;
                writeSignedRun(src, ql, quarter >= 2 ? Simd.SHIFT_4 : ZERO, 0xF, qh, HIGH_SHIFTS[quarter], 3, Simd.SHIFT_4,
                        SIGNED_OFFSET, rowMajor, (u * ROWS + r) * 16);
            }
        }
        toLanes(s);
    }

    private static final int Q3_BYTES = 110;
    private static final IntVector SIGNED_OFFSET_3 = Simd.FUSED ? IntVector.broadcast(Simd.I, 4) : null;

    /**
     * Q3_K's super-block {@code block} of {@code n} rows into the pair layout, as {@link #decodeQ6}: run {@code u} of 32
     * elements (half {@code u/4}, bit pair {@code u%4} of the half's 32 {@code qs} bytes, high bit {@code 4(u/4) + u%4}
     * of the 32 {@code hmask} bytes) gives pairs {@code 16u .. 16u+15} of signed quants {@code q - 4}; the 16 signed
     * 6-bit group scales of a row are unpacked as Q3_K's one-token kernel unpacks them.
     */
    private static void decodeQ3(MemorySegment src, long block, long rowBytes, int n, Scratch s) {
        int[] rowMajor = s.rowMajor;
        if (n < ROWS) {
            s.clearRows();
        }
        for (int r = 0; r < n; r++) {
            long at = block + r * rowBytes;
            s.d[r] = Halfs.readFp16(src, at + 108);
            IntVector raw = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 96 - 4, Simd.LE)
                    .convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            raw.rearrange(KQuantScales.Q3_LOW).lanewise(LSHR, KQuantScales.Q3_LOW_SHIFT).and(0xF)
                    .or(raw.rearrange(KQuantScales.Q3_HIGH).lanewise(LSHR, KQuantScales.Q3_HIGH_SHIFT).and(3)
                            .lanewise(LSHL, Simd.SHIFT_4))
                    .sub(32).intoArray(s.scaleRows, r * 16);
            for (int u = 0; u < 8; u++) {
                int half = u / 4;
                writeSignedRun(src, at + 32 + 32L * half, HIGH_SHIFTS[u % 4], 3, at, HMASK_SHIFTS[4 * half + u % 4], 1,
                        Simd.SHIFT_2, SIGNED_OFFSET_3, rowMajor, (u * ROWS + r) * 16);
            }
        }
        toLanes(s);
    }

    /**
     * One row's run of 32 signed quants (Q6_K, Q3_K) as 16 pairs at {@code rowMajor[at ..]}: quant {@code l} is
     * {@code ((low byte l >>> lowShift) & lowMask) | (((high byte l >>> highShift) & highMask) << highPosition)} less
     * {@code offset}, over the 32 bytes at {@code low} and at {@code high}; paired as {@link #Q6_A} and {@link #Q6_B}.
     */
    private static void writeSignedRun(MemorySegment src, long low, IntVector lowShift, int lowMask, long high,
            IntVector highShift, int highMask, IntVector highPosition, IntVector offset, int[] rowMajor, int at) {
        IntVector v0 = ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, low, Simd.LE)
                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHR, lowShift).and(lowMask)
                .or(((IntVector) ByteVector.fromMemorySegment(Simd.B, src, high, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHR, highShift).and(highMask)
                        .lanewise(LSHL, highPosition)).sub(offset);
        IntVector v1 = ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, low + 16, Simd.LE)
                .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHR, lowShift).and(lowMask)
                .or(((IntVector) ByteVector.fromMemorySegment(Simd.B, src, high + 16, Simd.LE)
                        .convertShape(ZERO_EXTEND_B2I, Simd.I, 0)).lanewise(LSHR, highShift).and(highMask)
                        .lanewise(LSHL, highPosition)).sub(offset);
        Q6_A.selectFrom(v0, v1).and(0xFFFF).or(Q6_B.selectFrom(v0, v1).lanewise(LSHL, 16)).intoArray(rowMajor, at);
    }

    /** Q3_K's high bit {@code b} (0..7) of each {@code hmask} byte. */
    private static final IntVector[] HMASK_SHIFTS = Simd.FUSED
            ? java.util.stream.IntStream.range(0, 8).mapToObj(b -> IntVector.broadcast(Simd.I, b)).toArray(IntVector[]::new)
            : null;

    private static final IntVector ZERO = Simd.FUSED ? IntVector.zero(Simd.I) : null;
    private static final IntVector[] HIGH_SHIFTS = Simd.FUSED ? new IntVector[] {
        IntVector.broadcast(Simd.I, 0), IntVector.broadcast(Simd.I, 2), IntVector.broadcast(Simd.I, 4),
        IntVector.broadcast(Simd.I, 6)} : null;

    /**
     * The integer sums of one super-block of two groups of 16 rows ({@code s}, {@code b}) times the tile's first
     * {@code valid} tokens (three at a time, a last one or two by {@link #tileTwo}), into each group's {@code dots}.
     * Products are summed two pairs a step in 16-bit halves; Q4_K widens them every 16 pairs
     * (at most 16 * 15 * 127 in a half) and applies its scale per 16 pairs, Q5_K ({@code eightPairs}, quants to 31) every
     * 8 (8 * 31 * 127) with a scale per 16, Q6_K and Q3_K ({@code q6}), whose signed quants reach 32 (4) in magnitude,
     * every 8 (8 * 32 * 127) with a scale per 8. Widening a window's two halves apart (a shift pair and a shift) takes
     * one instruction more than taking their sum in one shift, which would need windows half as long.
     *
     * <p>Each broadcast code pair multiplies both groups' weights. With one group of 16 rows (four pairs a step) C2 took
     * 9 of a step's 12 broadcasts from a general register ({@code vpbroadcastd zmm, r32}, on the shuffle port that the
     * 16-bit multiplies and adds need too) instead of from memory (the load ports alone); with two groups all of them
     * come from memory and each serves two multiplies. JMH {@code MatMulBenchmark} (64 tokens, one thread, in cache,
     * GFLOP/s) on the Intel Xeon VM: Q4_K 75 -> 93-100, Q6_K 64 -> 76-80, Q3_K 64 -> 76-85.
     */
    private static void tile(Scratch s, Scratch b, int[] p, int t0, int valid, boolean q6, boolean eightPairs) {
        int[] w = s.w;
        int[] v = b.w;
        int scaleShift = q6 ? 3 : 4;
        // steps of 2 pairs (q even): a window of 8 pairs ends at q % 8 == 6, one of 16 at q % 16 == 14
        int windowEnd = eightPairs ? 6 : 14;
        for (int t = 0; t < valid; t += 3) {
            if (valid - t < 3) {
                tileTwo(s, b, p, t, q6, eightPairs);
                return;
            }
            int a0 = s.tokenPairs[t];
            int a1 = s.tokenPairs[t + 1];
            int a2 = s.tokenPairs[t + 2];
            IntVector o0 = IntVector.zero(Simd.I);
            IntVector o1 = o0;
            IntVector o2 = o0;
            IntVector o3 = o0;
            IntVector o4 = o0;
            IntVector o5 = o0;
            ShortVector h0 = ShortVector.zero(Simd.S_FULL);
            ShortVector h1 = h0;
            ShortVector h2 = h0;
            ShortVector h3 = h0;
            ShortVector h4 = h0;
            ShortVector h5 = h0;
            for (int q = 0; q < PAIRS; q += 2) {
                ShortVector w0 = IntVector.fromArray(Simd.I, w, q * ROWS).reinterpretAsShorts();
                ShortVector w1 = IntVector.fromArray(Simd.I, w, (q + 1) * ROWS).reinterpretAsShorts();
                ShortVector v0 = IntVector.fromArray(Simd.I, v, q * ROWS).reinterpretAsShorts();
                ShortVector v1 = IntVector.fromArray(Simd.I, v, (q + 1) * ROWS).reinterpretAsShorts();
                int a = a0 + q;
                ShortVector c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                ShortVector c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                h0 = h0.add(w0.mul(c0)).add(w1.mul(c1));
                h3 = h3.add(v0.mul(c0)).add(v1.mul(c1));
                a = a1 + q;
                c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                h1 = h1.add(w0.mul(c0)).add(w1.mul(c1));
                h4 = h4.add(v0.mul(c0)).add(v1.mul(c1));
                a = a2 + q;
                c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
                c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
                h2 = h2.add(w0.mul(c0)).add(w1.mul(c1));
                h5 = h5.add(v0.mul(c0)).add(v1.mul(c1));
                if ((q & windowEnd) == windowEnd) {
                    IntVector sc = IntVector.fromArray(Simd.I, s.scaleMins, (q >> scaleShift) * ROWS);
                    IntVector sd = IntVector.fromArray(Simd.I, b.scaleMins, (q >> scaleShift) * ROWS);
                    IntVector u = h0.reinterpretAsInts();
                    o0 = o0.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sc));
                    u = h1.reinterpretAsInts();
                    o1 = o1.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sc));
                    u = h2.reinterpretAsInts();
                    o2 = o2.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sc));
                    u = h3.reinterpretAsInts();
                    o3 = o3.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sd));
                    u = h4.reinterpretAsInts();
                    o4 = o4.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sd));
                    u = h5.reinterpretAsInts();
                    o5 = o5.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sd));
                    h0 = ShortVector.zero(Simd.S_FULL);
                    h1 = h0;
                    h2 = h0;
                    h3 = h0;
                    h4 = h0;
                    h5 = h0;
                }
            }
            o0.intoArray(s.dots, t * ROWS);
            o1.intoArray(s.dots, (t + 1) * ROWS);
            o2.intoArray(s.dots, (t + 2) * ROWS);
            o3.intoArray(b.dots, t * ROWS);
            o4.intoArray(b.dots, (t + 1) * ROWS);
            o5.intoArray(b.dots, (t + 2) * ROWS);
        }
    }

    /**
     * {@link #tile}'s step for tokens {@code t} and {@code t + 1} alone: the same operations per token, so a token's
     * sums do not depend on whether a three or a two took it. A copy of the loop on purpose (see {@link #tileQ4_0}).
     */
    private static void tileTwo(Scratch s, Scratch b, int[] p, int t, boolean q6, boolean eightPairs) {
        int[] w = s.w;
        int[] v = b.w;
        int scaleShift = q6 ? 3 : 4;
        // steps of 2 pairs (q even): a window of 8 pairs ends at q % 8 == 6, one of 16 at q % 16 == 14
        int windowEnd = eightPairs ? 6 : 14;
        int a0 = s.tokenPairs[t];
        int a1 = s.tokenPairs[t + 1];
        IntVector o0 = IntVector.zero(Simd.I);
        IntVector o1 = o0;
        IntVector o3 = o0;
        IntVector o4 = o0;
        ShortVector h0 = ShortVector.zero(Simd.S_FULL);
        ShortVector h1 = h0;
        ShortVector h3 = h0;
        ShortVector h4 = h0;
        for (int q = 0; q < PAIRS; q += 2) {
            ShortVector w0 = IntVector.fromArray(Simd.I, w, q * ROWS).reinterpretAsShorts();
            ShortVector w1 = IntVector.fromArray(Simd.I, w, (q + 1) * ROWS).reinterpretAsShorts();
            ShortVector v0 = IntVector.fromArray(Simd.I, v, q * ROWS).reinterpretAsShorts();
            ShortVector v1 = IntVector.fromArray(Simd.I, v, (q + 1) * ROWS).reinterpretAsShorts();
            int a = a0 + q;
            ShortVector c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
            ShortVector c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
            h0 = h0.add(w0.mul(c0)).add(w1.mul(c1));
            h3 = h3.add(v0.mul(c0)).add(v1.mul(c1));
            a = a1 + q;
            c0 = IntVector.broadcast(Simd.I, p[a]).reinterpretAsShorts();
            c1 = IntVector.broadcast(Simd.I, p[a + 1]).reinterpretAsShorts();
            h1 = h1.add(w0.mul(c0)).add(w1.mul(c1));
            h4 = h4.add(v0.mul(c0)).add(v1.mul(c1));
            if ((q & windowEnd) == windowEnd) {
                IntVector sc = IntVector.fromArray(Simd.I, s.scaleMins, (q >> scaleShift) * ROWS);
                IntVector sd = IntVector.fromArray(Simd.I, b.scaleMins, (q >> scaleShift) * ROWS);
                IntVector u = h0.reinterpretAsInts();
                o0 = o0.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sc));
                u = h1.reinterpretAsInts();
                o1 = o1.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sc));
                u = h3.reinterpretAsInts();
                o3 = o3.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sd));
                u = h4.reinterpretAsInts();
                o4 = o4.add(u.lanewise(LSHL, 16).lanewise(ASHR, 16).add(u.lanewise(ASHR, 16)).mul(sd));
                h0 = ShortVector.zero(Simd.S_FULL);
                h1 = h0;
                h3 = h0;
                h4 = h0;
            }
        }
        o0.intoArray(s.dots, t * ROWS);
        o1.intoArray(s.dots, (t + 1) * ROWS);
        o3.intoArray(b.dots, t * ROWS);
        o4.intoArray(b.dots, (t + 1) * ROWS);
    }

    /**
     * Each valid token's super-block: its scaled sum, then (Q4_K) its minimum term, into its accumulator. Vectors travel through
     * the scratch arrays, not as arguments: a vector passed to a call C2 does not inline is boxed.
     */
    private static void accumulate(Scratch s, Scratch tokens, int[] sums, int t0, int valid, boolean q6) {
        FloatVector d = FloatVector.fromArray(Simd.F, s.d, 0);
        FloatVector dmin = FloatVector.fromArray(Simd.F, s.dmin, 0).neg();
        for (int t = 0; t < valid; t++) {
            float scale = tokens.tokenScale[t];
            int at = (t0 + t) * ROWS;
            FloatVector acc = FloatVector.fromArray(Simd.F, s.acc, at);
            acc = ((FloatVector) IntVector.fromArray(Simd.I, s.dots, t * ROWS).convert(I2F, 0)).fma(d.mul(scale), acc);
            if (!q6) {
                IntVector minSum = IntVector.zero(Simd.I);
                for (int j = 0; j < SUB_BLOCKS; j++) {
                    minSum = minSum.add(IntVector.fromArray(Simd.I, s.scaleMins, (SUB_BLOCKS + j) * ROWS)
                            .mul(sums[tokens.tokenSums[t] + j]));
                }
                acc = ((FloatVector) minSum.convertShape(I2F, Simd.F, 0)).fma(dmin.mul(scale), acc);
            }
            acc.intoArray(s.acc, at);
        }
    }
}
