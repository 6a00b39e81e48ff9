package moe4j.kernels.quant;

import static moe4j.kernels.quant.Simd.F;
import static moe4j.kernels.quant.LaneFolds.ROTATE_1;
import static moe4j.kernels.quant.LaneFolds.ROTATE_2;
import static moe4j.kernels.quant.LaneFolds.ROTATE_4;
import static moe4j.kernels.quant.LaneFolds.ROTATE_8;
import static moe4j.kernels.quant.LaneFolds.UPPER_2;
import static moe4j.kernels.quant.LaneFolds.UPPER_4;
import static moe4j.kernels.quant.LaneFolds.UPPER_8;
import static moe4j.kernels.quant.Simd.L;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;

/**
 * Dot products of rows of 256-element super-blocks (K-quants, IQ4_XS; Q8_0 and Q4_0 as eight blocks, F16 and BF16 as
 * 256 values; Q4_K's batches
 * take {@link PairTile} when the activations hold its code pairs) with {@link PreparedActivations}, decoding
 * each chunk of the row once for all tokens of a batch. A block decodes to its weights, {@code w = q * dl - M}
 * ({@code dl} the float product of super-scale and sub-block scale, {@code q} the unsigned quant, {@code M} the
 * sub-block's minimum, {@code dmin*m} for Q4_K, or the quant offset times {@code dl}, 32 for Q6_K, 4 for Q3_K) in
 * one fused multiply-add: the minimum costs nothing in the decode, where a separate pass of minimum terms against
 * 16-element activation sums (llama.cpp's way, which the one-token kernels keep) cost about 6% of a prompt.
 *
 * <p>Summation order, fixed so that a token's result is the same in any batch: one accumulator (16 lanes) per
 * (row, token) pair takes the row's 16-element groups first to last (the 4x6 tile holds 24 accumulators, which
 * leaves no registers for more per pair); the result is {@link Simd#sum} of it. The decode buffer interleaves the
 * four rows of a tile group by group, so a tile walks it and the activations straight through (measured on the
 * inner loop alone: 215 GFLOP/s, against 150-180 for four passes with a 256-byte stride, one per accumulator of
 * an earlier four-accumulator order). A single token takes the type's row kernel
 * ({@link BlockFormat#dotRows}), which decodes in registers and sums in its own order (minimum terms against the
 * activation sums; Q4_K and Q5_K sum a 32-element sub-block before scaling it), within float32 rounding of this.
 *
 * <p>The batch loops read decoded weights and activations from 64-byte-aligned native memory (the decode buffer and
 * {@link PreparedActivations#alignedValues()}): a heap array's elements are 64-byte aligned only by chance of where
 * the array lies, and where they are not every 64-byte load spans two cache lines. Measured on the same code, the
 * alignment of the decode buffer alone moved the tiled product between 63 and 84 GFLOP/s.
 *
 * <p>With 256-bit vectors (AVX2) an element group is 8 values, blocks decode through the type's dequantizer
 * ({@link #decode}), and a tile is 4 rows by 2 tokens ({@link #tilePair}), what 16 vector registers hold; the types
 * repacked there take tiles of their own instead, so this serves the prompts of F16 and BF16 (and of Q8_0 and IQ4_XS
 * rows left in the file's layout), which took the decode-then-dot path before (Zen 3, JMH {@code MatMulBenchmark} one
 * thread, 64 tokens: Q8_0 20 -> 38 GFLOP/s).
 */
final class ScaledDot {

    private ScaledDot() {}

    static final int QK = 256;
    static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long BLOCK_BYTES = QK * Float.BYTES;
    private static final long GROUP_BYTES = (long) L * Float.BYTES;
    /** Floats of a (row, token) pair's accumulator, kept between chunks. */
    static final int STATE = L;

    /** Rows per tile of {@link #dotTile}, and the fewest tokens it takes. */
    static final int TILE = 4;
    /**
     * Tokens of a wide tile: 4 rows times 6 tokens is 24 accumulators, the most that fit in the 32 vector registers
     * with the 4 weights and an activation; measured about 1.2x the multiply-adds per second of a 4 by 4 tile, which
     * loads a vector for every two multiply-adds instead of every 2.4. Narrow tiles of {@link #TILE} tokens cover
     * what wide ones cannot without recomputing tokens ({@link #tileTokens}).
     */
    private static final int WIDE = 6;
    /**
     * Tokens of a tile where the vectors are 256 bits ({@link Simd#HALVES}): with 16 vector registers the 4 x 4 and
     * 4 x 6 tiles spill their accumulators; 4 rows by 2 tokens keep their 8, a weight and 2 activations in registers.
     */
    private static final int PAIR = 2;
    /** (row, token) pairs of a tile, at most: pair {@code p} is row {@code p % TILE}, token {@code p / TILE}. */
    private static final int PAIRS = TILE * WIDE;
    /** Pairs that {@link #results} folds together: two tokens' rows. */
    private static final int FOLD_PAIRS = 2 * TILE;
    /**
     * Super-blocks of each tile row decoded at a time: 32 KB of floats for the four rows, which every token tile reads
     * again, so they stay in L1 while the activations stream through. {@link #dot} decodes as many, so that its sums
     * run in the same order.
     */
    private static final int TILE_CHUNK = 8;
    /** 16-element groups of a block. */
    private static final int GROUPS = QK / L;
    /** The same element group of each of the four rows of a tile, side by side in the decode buffer. */
    private static final long TILE_GROUP_BYTES = TILE * GROUP_BYTES;
    private static final int SLOTS = TILE * TILE_CHUNK;

    /** Per-thread decode buffers, and the accumulators of tokens between chunks. */
    static final class Scratch {
        /**
         * Decoded weights, native order, 64-byte aligned: block slot {@code i}'s element group {@code g} at byte
         * {@code at[i] + g * groupBytes}.
         */
        final MemorySegment w = Arena.ofAuto().allocate(SLOTS * BLOCK_BYTES, 64);
        /**
         * Where each slot's first group goes in {@link #w}: a table rather than a method, as a call C2 does not inline
         * into a decoder (it stops inlining once the Vector API has grown the graph) spills every vector around it.
         */
        long[] at;
        /** Bytes from one element group of a block to the next in {@link #w}. */
        long groupBytes;
        /** Unpacked scales of the block being decoded: sub-block scales from 0, its negated minimums after them. */
        final float[] scales = new float[2 * L];
        float[] state = new float[PAIRS * STATE];
        /** A block's weights for {@link ScaledDot#decode} with 256-bit vectors. */
        final float[] decoded = new float[QK];
        /** {@link #results}' partly folded sums of a group of pairs. */
        final float[] folds = new float[FOLD_PAIRS / 2 * L];

        Scratch() {
            interleave(1);
        }

        /**
         * Decodes blocks one after the other ({@code rows} 1), or the same block of each row of a tile side by side
         * ({@code rows} {@link ScaledDot#TILE}): slots {@code 4b .. 4b+3} interleave their element groups.
         */
        void interleave(int rows) {
            at = rows == 1 ? SEQUENTIAL : INTERLEAVED;
            groupBytes = rows * GROUP_BYTES;
        }
    }

    private static final long[] SEQUENTIAL = slotOffsets(1);
    private static final long[] INTERLEAVED = slotOffsets(TILE);

    private static long[] slotOffsets(int rows) {
        long[] at = new long[SLOTS];
        for (int i = 0; i < SLOTS; i++) {
            at[i] = (long) (i / rows) * rows * BLOCK_BYTES + (i % rows) * GROUP_BYTES;
        }
        return at;
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /**
     * Decodes the 256 elements at byte {@code block} into slot {@code slot}: by the type's own decoder with 512-bit
     * vectors; with 256-bit ones, whose element groups are 8 values, by its dequantizer (the weights the one-token
     * path multiplies) into {@link Scratch#decoded}, then group by group into the slot.
     */
    static void decode(BlockFormat format, MemorySegment src, long block, Scratch s, int slot) {
        if (Simd.FUSED) {
            format.decodeScaled(src, block, s, slot);
            return;
        }
        float[] decoded = s.decoded;
        format.dequantizeBlocks(src, block, decoded, 0, QK / format.type().blockSize(), true);
        MemorySegment w = s.w;
        long e = s.at[slot];
        long gb = s.groupBytes;
        for (int g = 0; g < GROUPS; g++) {
            FloatVector.fromArray(F, decoded, g * L).intoMemorySegment(w, e + g * gb, NATIVE);
        }
    }

    /** Arguments already checked; the row has {@code x.width()} elements. */
    static void dot(BlockFormat format, MemorySegment src, long srcOffset, PreparedActivations x, int firstRow,
            int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        long blockBytes = format.superBlockBytes();
        if (s.state.length < nTokens * STATE) {
            s.state = new float[nTokens * STATE];
        }
        float[] state = s.state;
        Arrays.fill(state, 0, nTokens * STATE, 0f);
        MemorySegment xv = x.alignedValues();
        long rowBytes = (long) width * Float.BYTES;
        s.interleave(1);
        for (int b0 = 0; b0 < blocks; b0 += TILE_CHUNK) {
            int n = Math.min(TILE_CHUNK, blocks - b0);
            for (int b = 0; b < n; b++) {
                decode(format, src, srcOffset + (b0 + b) * blockBytes, s, b);
            }
            int bytes = n * (int) BLOCK_BYTES;
            int t = 0;
            for (; t + 4 <= nTokens; t += 4) {
                int row = firstRow + t;
                accumulate4(s.w, bytes, xv, row * rowBytes + b0 * BLOCK_BYTES, rowBytes, state, STATE * t);
            }
            for (; t < nTokens; t++) {
                int row = firstRow + t;
                accumulate(s.w, bytes, xv, row * rowBytes + b0 * BLOCK_BYTES, state, STATE * t);
            }
        }
        for (int t = 0; t < nTokens; t++) {
            out[outOffset + t * outStride] = result(state, STATE * t);
        }
    }

    /** A token's dot product from its accumulator at {@code state[st ..]}. */
    private static float result(float[] state, int st) {
        return Simd.sum(FloatVector.fromArray(F, state, st));
    }

    /**
     * {@link #dot} of {@link #TILE} rows, row {@code r} at byte {@code srcOffset + r*rowStride} writing
     * {@code out[outOffset + r + t*outStride]}, with at least {@link #TILE} tokens; arguments already checked. Each
     * chunk of the four rows is decoded once, block {@code b} of row {@code r} into slot {@code 4b + r} (interleaved),
     * then multiplied with several tokens at a time ({@link #tileWide}, {@link #tile}), so each activation load
     * serves four rows and each weight load several tokens; every (row, token) pair still sees exactly {@link #dot}'s
     * operations in its order. A row's first chunk starts the accumulators from zero, so {@code state} only carries
     * them between chunks (one region per token tile when the row has more than one chunk) and to {@link #results}.
     */
    static void dotTile(BlockFormat format, MemorySegment src, long srcOffset, long rowStride, PreparedActivations x,
            int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        long blockBytes = format.superBlockBytes();
        int tiles = 0;
        for (int t = 0; t < nTokens; t += tileTokens(nTokens - t, nTokens)) {
            tiles++;
        }
        boolean chunked = blocks > TILE_CHUNK;
        int stateFloats = (chunked ? tiles : 1) * PAIRS * STATE;
        if (s.state.length < stateFloats) {
            s.state = new float[stateFloats];
        }
        float[] state = s.state;
        MemorySegment xv = x.alignedValues();
        long rowBytes = (long) width * Float.BYTES;
        s.interleave(TILE);
        for (int b0 = 0; b0 < blocks; b0 += TILE_CHUNK) {
            int n = Math.min(TILE_CHUNK, blocks - b0);
            for (int b = 0; b < n; b++) {
                long block = srcOffset + (b0 + b) * blockBytes;
                for (int r = 0; r < TILE; r++) {
                    decode(format, src, block + r * rowStride, s, TILE * b + r);
                }
            }
            boolean first = b0 == 0;
            int st = 0;
            for (int t = 0; t < nTokens; ) {
                int size = tileTokens(nTokens - t, nTokens);
                // a tile past the last token ends at it instead, recomputing tokens of the tile before
                int from = Math.min(t, nTokens - size);
                long xo = (firstRow + from) * rowBytes + b0 * BLOCK_BYTES;
                if (size == PAIR) {
                    tilePair(s.w, n, xv, xo, rowBytes, state, st, first);
                } else if (size == WIDE) {
                    tileWide(s.w, n, xv, xo, rowBytes, state, st, first);
                } else {
                    tile(s.w, n, xv, xo, rowBytes, state, st, first);
                }
                if (b0 + n == blocks) {
                    results(state, st, size * TILE, s.folds, out, outOffset + from * outStride, outStride);
                }
                t += size;
                if (chunked) {
                    st += PAIRS * STATE;
                }
            }
        }
    }

    /**
     * Tokens of the tile for the {@code rest} of {@code nTokens} tokens: wide tiles where they fit, narrow ones where
     * a wide tile would recompute more of the tokens before than narrow ones would (the last tile ends at the last
     * token). By measured cost, a narrow tile of 4 tokens being 1 and a wide one of 6 tokens 1.2: 7 and 8 tokens are
     * two narrow tiles, 5 one wide, 1 to 4 one narrow.
     */
    private static int tileTokens(int rest, int nTokens) {
        if (Simd.HALVES) {
            return PAIR;
        }
        return nTokens >= WIDE && (rest == 5 || rest == 6 || rest >= 9) ? WIDE : TILE;
    }

    /**
     * Adds {@code blocks} decoded blocks of four rows ({@link #dotTile}'s slots from 0) times four tokens' activations
     * (token {@code k} from byte {@code xo + k * xStride} of {@code x}) to the product accumulators of each (row,
     * token) pair: pair {@code p}'s at {@code state[st + p*STATE ..]}, zeros when {@code first}, element group after
     * group as {@link #accumulate} adds them. The four rows' groups lie side by side, so one weight address serves
     * them all; two groups a step.
     */
    private static void tile(MemorySegment w, int blocks, MemorySegment x, long xo, long xStride,
            float[] state, int st, boolean first) {
        long x1 = xo + xStride;
        long x2 = xo + 2 * xStride;
        long x3 = xo + 3 * xStride;
        int steps = blocks * GROUPS / 2;
        FloatVector c00 = FloatVector.zero(F);
        FloatVector c10 = c00;
        FloatVector c20 = c00;
        FloatVector c30 = c00;
        FloatVector c01 = c00;
        FloatVector c11 = c00;
        FloatVector c21 = c00;
        FloatVector c31 = c00;
        FloatVector c02 = c00;
        FloatVector c12 = c00;
        FloatVector c22 = c00;
        FloatVector c32 = c00;
        FloatVector c03 = c00;
        FloatVector c13 = c00;
        FloatVector c23 = c00;
        FloatVector c33 = c00;
        if (!first) {
            c00 = FloatVector.fromArray(F, state, st);
            c10 = FloatVector.fromArray(F, state, st + STATE);
            c20 = FloatVector.fromArray(F, state, st + 2 * STATE);
            c30 = FloatVector.fromArray(F, state, st + 3 * STATE);
            c01 = FloatVector.fromArray(F, state, st + 4 * STATE);
            c11 = FloatVector.fromArray(F, state, st + 5 * STATE);
            c21 = FloatVector.fromArray(F, state, st + 6 * STATE);
            c31 = FloatVector.fromArray(F, state, st + 7 * STATE);
            c02 = FloatVector.fromArray(F, state, st + 8 * STATE);
            c12 = FloatVector.fromArray(F, state, st + 9 * STATE);
            c22 = FloatVector.fromArray(F, state, st + 10 * STATE);
            c32 = FloatVector.fromArray(F, state, st + 11 * STATE);
            c03 = FloatVector.fromArray(F, state, st + 12 * STATE);
            c13 = FloatVector.fromArray(F, state, st + 13 * STATE);
            c23 = FloatVector.fromArray(F, state, st + 14 * STATE);
            c33 = FloatVector.fromArray(F, state, st + 15 * STATE);
        }
        for (int q = 0; q < steps; q++) {
            long wq = q * (2 * TILE_GROUP_BYTES);
            long xq = q * (2 * GROUP_BYTES);
            FloatVector v0 = FloatVector.fromMemorySegment(F, w, wq, NATIVE);
            FloatVector v1 = FloatVector.fromMemorySegment(F, w, wq + GROUP_BYTES, NATIVE);
            FloatVector v2 = FloatVector.fromMemorySegment(F, w, wq + 2 * GROUP_BYTES, NATIVE);
            FloatVector v3 = FloatVector.fromMemorySegment(F, w, wq + 3 * GROUP_BYTES, NATIVE);
            FloatVector y = FloatVector.fromMemorySegment(F, x, xo + xq, NATIVE);
            c00 = v0.fma(y, c00);
            c10 = v1.fma(y, c10);
            c20 = v2.fma(y, c20);
            c30 = v3.fma(y, c30);
            y = FloatVector.fromMemorySegment(F, x, x1 + xq, NATIVE);
            c01 = v0.fma(y, c01);
            c11 = v1.fma(y, c11);
            c21 = v2.fma(y, c21);
            c31 = v3.fma(y, c31);
            y = FloatVector.fromMemorySegment(F, x, x2 + xq, NATIVE);
            c02 = v0.fma(y, c02);
            c12 = v1.fma(y, c12);
            c22 = v2.fma(y, c22);
            c32 = v3.fma(y, c32);
            y = FloatVector.fromMemorySegment(F, x, x3 + xq, NATIVE);
            c03 = v0.fma(y, c03);
            c13 = v1.fma(y, c13);
            c23 = v2.fma(y, c23);
            c33 = v3.fma(y, c33);
            v0 = FloatVector.fromMemorySegment(F, w, wq + 4 * GROUP_BYTES, NATIVE);
            v1 = FloatVector.fromMemorySegment(F, w, wq + 5 * GROUP_BYTES, NATIVE);
            v2 = FloatVector.fromMemorySegment(F, w, wq + 6 * GROUP_BYTES, NATIVE);
            v3 = FloatVector.fromMemorySegment(F, w, wq + 7 * GROUP_BYTES, NATIVE);
            y = FloatVector.fromMemorySegment(F, x, xo + xq + GROUP_BYTES, NATIVE);
            c00 = v0.fma(y, c00);
            c10 = v1.fma(y, c10);
            c20 = v2.fma(y, c20);
            c30 = v3.fma(y, c30);
            y = FloatVector.fromMemorySegment(F, x, x1 + xq + GROUP_BYTES, NATIVE);
            c01 = v0.fma(y, c01);
            c11 = v1.fma(y, c11);
            c21 = v2.fma(y, c21);
            c31 = v3.fma(y, c31);
            y = FloatVector.fromMemorySegment(F, x, x2 + xq + GROUP_BYTES, NATIVE);
            c02 = v0.fma(y, c02);
            c12 = v1.fma(y, c12);
            c22 = v2.fma(y, c22);
            c32 = v3.fma(y, c32);
            y = FloatVector.fromMemorySegment(F, x, x3 + xq + GROUP_BYTES, NATIVE);
            c03 = v0.fma(y, c03);
            c13 = v1.fma(y, c13);
            c23 = v2.fma(y, c23);
            c33 = v3.fma(y, c33);
        }
        c00.intoArray(state, st);
        c10.intoArray(state, st + STATE);
        c20.intoArray(state, st + 2 * STATE);
        c30.intoArray(state, st + 3 * STATE);
        c01.intoArray(state, st + 4 * STATE);
        c11.intoArray(state, st + 5 * STATE);
        c21.intoArray(state, st + 6 * STATE);
        c31.intoArray(state, st + 7 * STATE);
        c02.intoArray(state, st + 8 * STATE);
        c12.intoArray(state, st + 9 * STATE);
        c22.intoArray(state, st + 10 * STATE);
        c32.intoArray(state, st + 11 * STATE);
        c03.intoArray(state, st + 12 * STATE);
        c13.intoArray(state, st + 13 * STATE);
        c23.intoArray(state, st + 14 * STATE);
        c33.intoArray(state, st + 15 * STATE);
    }

    /**
     * {@link #tile} for {@link #PAIR} tokens: the same sums of each (row, token) pair, one group a step. With two groups
     * a step C2 unrolled the loop and kept the activations of several steps on the stack (0.5x); with 3 tokens, 12
     * accumulators, it spilled them (0.8x).
     */
    private static void tilePair(MemorySegment w, int blocks, MemorySegment x, long xo, long xStride,
            float[] state, int st, boolean first) {
        long x1 = xo + xStride;
        int steps = blocks * GROUPS;
        FloatVector c00 = FloatVector.zero(F);
        FloatVector c10 = c00;
        FloatVector c20 = c00;
        FloatVector c30 = c00;
        FloatVector c01 = c00;
        FloatVector c11 = c00;
        FloatVector c21 = c00;
        FloatVector c31 = c00;
        if (!first) {
            c00 = FloatVector.fromArray(F, state, st);
            c10 = FloatVector.fromArray(F, state, st + STATE);
            c20 = FloatVector.fromArray(F, state, st + 2 * STATE);
            c30 = FloatVector.fromArray(F, state, st + 3 * STATE);
            c01 = FloatVector.fromArray(F, state, st + 4 * STATE);
            c11 = FloatVector.fromArray(F, state, st + 5 * STATE);
            c21 = FloatVector.fromArray(F, state, st + 6 * STATE);
            c31 = FloatVector.fromArray(F, state, st + 7 * STATE);
        }
        for (int q = 0; q < steps; q++) {
            long wq = q * TILE_GROUP_BYTES;
            long xq = q * GROUP_BYTES;
            FloatVector y = FloatVector.fromMemorySegment(F, x, xo + xq, NATIVE);
            FloatVector z = FloatVector.fromMemorySegment(F, x, x1 + xq, NATIVE);
            FloatVector v = FloatVector.fromMemorySegment(F, w, wq, NATIVE);
            c00 = v.fma(y, c00);
            c01 = v.fma(z, c01);
            v = FloatVector.fromMemorySegment(F, w, wq + GROUP_BYTES, NATIVE);
            c10 = v.fma(y, c10);
            c11 = v.fma(z, c11);
            v = FloatVector.fromMemorySegment(F, w, wq + 2 * GROUP_BYTES, NATIVE);
            c20 = v.fma(y, c20);
            c21 = v.fma(z, c21);
            v = FloatVector.fromMemorySegment(F, w, wq + 3 * GROUP_BYTES, NATIVE);
            c30 = v.fma(y, c30);
            c31 = v.fma(z, c31);
        }
        c00.intoArray(state, st);
        c10.intoArray(state, st + STATE);
        c20.intoArray(state, st + 2 * STATE);
        c30.intoArray(state, st + 3 * STATE);
        c01.intoArray(state, st + 4 * STATE);
        c11.intoArray(state, st + 5 * STATE);
        c21.intoArray(state, st + 6 * STATE);
        c31.intoArray(state, st + 7 * STATE);
    }

    /**
     * {@link #tile} for {@link #WIDE} tokens, one group a step: its 24 accumulators leave no registers for a
     * second step's loads (two a step spilled accumulators: measured about 0.65x).
     */
    private static void tileWide(MemorySegment w, int blocks, MemorySegment x, long xo, long xStride,
            float[] state, int st, boolean first) {
        long x1 = xo + xStride;
        long x2 = xo + 2 * xStride;
        long x3 = xo + 3 * xStride;
        long x4 = xo + 4 * xStride;
        long x5 = xo + 5 * xStride;
        int steps = blocks * GROUPS;
        FloatVector c00 = FloatVector.zero(F);
        FloatVector c10 = c00;
        FloatVector c20 = c00;
        FloatVector c30 = c00;
        FloatVector c01 = c00;
        FloatVector c11 = c00;
        FloatVector c21 = c00;
        FloatVector c31 = c00;
        FloatVector c02 = c00;
        FloatVector c12 = c00;
        FloatVector c22 = c00;
        FloatVector c32 = c00;
        FloatVector c03 = c00;
        FloatVector c13 = c00;
        FloatVector c23 = c00;
        FloatVector c33 = c00;
        FloatVector c04 = c00;
        FloatVector c14 = c00;
        FloatVector c24 = c00;
        FloatVector c34 = c00;
        FloatVector c05 = c00;
        FloatVector c15 = c00;
        FloatVector c25 = c00;
        FloatVector c35 = c00;
        if (!first) {
            c00 = FloatVector.fromArray(F, state, st);
            c10 = FloatVector.fromArray(F, state, st + STATE);
            c20 = FloatVector.fromArray(F, state, st + 2 * STATE);
            c30 = FloatVector.fromArray(F, state, st + 3 * STATE);
            c01 = FloatVector.fromArray(F, state, st + 4 * STATE);
            c11 = FloatVector.fromArray(F, state, st + 5 * STATE);
            c21 = FloatVector.fromArray(F, state, st + 6 * STATE);
            c31 = FloatVector.fromArray(F, state, st + 7 * STATE);
            c02 = FloatVector.fromArray(F, state, st + 8 * STATE);
            c12 = FloatVector.fromArray(F, state, st + 9 * STATE);
            c22 = FloatVector.fromArray(F, state, st + 10 * STATE);
            c32 = FloatVector.fromArray(F, state, st + 11 * STATE);
            c03 = FloatVector.fromArray(F, state, st + 12 * STATE);
            c13 = FloatVector.fromArray(F, state, st + 13 * STATE);
            c23 = FloatVector.fromArray(F, state, st + 14 * STATE);
            c33 = FloatVector.fromArray(F, state, st + 15 * STATE);
            c04 = FloatVector.fromArray(F, state, st + 16 * STATE);
            c14 = FloatVector.fromArray(F, state, st + 17 * STATE);
            c24 = FloatVector.fromArray(F, state, st + 18 * STATE);
            c34 = FloatVector.fromArray(F, state, st + 19 * STATE);
            c05 = FloatVector.fromArray(F, state, st + 20 * STATE);
            c15 = FloatVector.fromArray(F, state, st + 21 * STATE);
            c25 = FloatVector.fromArray(F, state, st + 22 * STATE);
            c35 = FloatVector.fromArray(F, state, st + 23 * STATE);
        }
        for (int q = 0; q < steps; q++) {
            long wq = q * TILE_GROUP_BYTES;
            long xq = q * GROUP_BYTES;
            FloatVector v0 = FloatVector.fromMemorySegment(F, w, wq, NATIVE);
            FloatVector v1 = FloatVector.fromMemorySegment(F, w, wq + GROUP_BYTES, NATIVE);
            FloatVector v2 = FloatVector.fromMemorySegment(F, w, wq + 2 * GROUP_BYTES, NATIVE);
            FloatVector v3 = FloatVector.fromMemorySegment(F, w, wq + 3 * GROUP_BYTES, NATIVE);
            FloatVector y = FloatVector.fromMemorySegment(F, x, xo + xq, NATIVE);
            c00 = v0.fma(y, c00);
            c10 = v1.fma(y, c10);
            c20 = v2.fma(y, c20);
            c30 = v3.fma(y, c30);
            y = FloatVector.fromMemorySegment(F, x, x1 + xq, NATIVE);
            c01 = v0.fma(y, c01);
            c11 = v1.fma(y, c11);
            c21 = v2.fma(y, c21);
            c31 = v3.fma(y, c31);
            y = FloatVector.fromMemorySegment(F, x, x2 + xq, NATIVE);
            c02 = v0.fma(y, c02);
            c12 = v1.fma(y, c12);
            c22 = v2.fma(y, c22);
            c32 = v3.fma(y, c32);
            y = FloatVector.fromMemorySegment(F, x, x3 + xq, NATIVE);
            c03 = v0.fma(y, c03);
            c13 = v1.fma(y, c13);
            c23 = v2.fma(y, c23);
            c33 = v3.fma(y, c33);
            y = FloatVector.fromMemorySegment(F, x, x4 + xq, NATIVE);
            c04 = v0.fma(y, c04);
            c14 = v1.fma(y, c14);
            c24 = v2.fma(y, c24);
            c34 = v3.fma(y, c34);
            y = FloatVector.fromMemorySegment(F, x, x5 + xq, NATIVE);
            c05 = v0.fma(y, c05);
            c15 = v1.fma(y, c15);
            c25 = v2.fma(y, c25);
            c35 = v3.fma(y, c35);
        }
        c00.intoArray(state, st);
        c10.intoArray(state, st + STATE);
        c20.intoArray(state, st + 2 * STATE);
        c30.intoArray(state, st + 3 * STATE);
        c01.intoArray(state, st + 4 * STATE);
        c11.intoArray(state, st + 5 * STATE);
        c21.intoArray(state, st + 6 * STATE);
        c31.intoArray(state, st + 7 * STATE);
        c02.intoArray(state, st + 8 * STATE);
        c12.intoArray(state, st + 9 * STATE);
        c22.intoArray(state, st + 10 * STATE);
        c32.intoArray(state, st + 11 * STATE);
        c03.intoArray(state, st + 12 * STATE);
        c13.intoArray(state, st + 13 * STATE);
        c23.intoArray(state, st + 14 * STATE);
        c33.intoArray(state, st + 15 * STATE);
        c04.intoArray(state, st + 16 * STATE);
        c14.intoArray(state, st + 17 * STATE);
        c24.intoArray(state, st + 18 * STATE);
        c34.intoArray(state, st + 19 * STATE);
        c05.intoArray(state, st + 20 * STATE);
        c15.intoArray(state, st + 21 * STATE);
        c25.intoArray(state, st + 22 * STATE);
        c35.intoArray(state, st + 23 * STATE);
    }

    /**
     * The results of a tile's first {@code pairs} (row, token) pairs from their accumulators at
     * {@code state[st + p*STATE ..]} (pair {@code p} writes {@code out[o + (p % TILE) + (p / TILE)*outStride]}):
     * {@link #result}'s sums, folded {@link #FOLD_PAIRS} vectors at a time. Fold {@code f} of {@link Simd#sum} adds
     * lanes {@code h = L >> (f+1)} apart; adding a vector and its rotation by {@code h} within each {@code 2h}-lane
     * segment puts that sum (same operands, same order) in both halves of the segment, so a blend can keep one
     * vector's sums in the lower halves and another's in the upper: each fold halves the number of vectors, and the
     * last, folded with itself, holds every pair's sum.
     */
    private static void results(float[] state, int st, int pairs, float[] folds, float[] out, int o, int outStride) {
        if (L != 16) {
            // the folds below are written for 16 lanes; each pair's own sum is the same value
            for (int p = 0; p < pairs; p++) {
                out[o + p % TILE + p / TILE * outStride] = result(state, st + p * STATE);
            }
            return;
        }
        for (int g = 0; g < pairs; g += FOLD_PAIRS) {
            // (a loop rather than straight code: C2 then checks the state indexes once per loop, not per load)
            // first fold of pairs 2i, 2i+1 of the group into vector i of folds
            for (int i = 0; i < FOLD_PAIRS / 2; i++) {
                int a = st + (g + 2 * i) * STATE;
                int b = a + STATE;
                FloatVector pa = FloatVector.fromArray(F, state, a);
                FloatVector pb = FloatVector.fromArray(F, state, b);
                pa.add(pa.rearrange(ROTATE_8)).blend(pb.rearrange(ROTATE_8).add(pb), UPPER_8).intoArray(folds, i * L);
            }
            FloatVector v0 = FloatVector.fromArray(F, folds, 0);
            FloatVector v1 = FloatVector.fromArray(F, folds, L);
            FloatVector v2 = FloatVector.fromArray(F, folds, 2 * L);
            FloatVector v3 = FloatVector.fromArray(F, folds, 3 * L);
            FloatVector u0 = v0.add(v0.rearrange(ROTATE_4)).blend(v1.rearrange(ROTATE_4).add(v1), UPPER_4);
            FloatVector u1 = v2.add(v2.rearrange(ROTATE_4)).blend(v3.rearrange(ROTATE_4).add(v3), UPPER_4);
            FloatVector t = u0.add(u0.rearrange(ROTATE_2)).blend(u1.rearrange(ROTATE_2).add(u1), UPPER_2);
            t.add(t.rearrange(ROTATE_1)).rearrange(PAIR_ORDER).intoArray(folds, 0);
            int o0 = o + g / TILE * outStride;
            int o1 = o0 + outStride;
            out[o0] = folds[0];
            out[o0 + 1] = folds[1];
            out[o0 + 2] = folds[2];
            out[o0 + 3] = folds[3];
            out[o1] = folds[4];
            out[o1 + 1] = folds[5];
            out[o1 + 2] = folds[6];
            out[o1 + 3] = folds[7];
        }
    }

    /** Moves the sum of pair {@code p} of a group to lane {@code p}. */
    private static final VectorShuffle<Float> PAIR_ORDER = pairOrder();

    /** Follows each pair's label through the blends of {@link #results}: the lower halves take the first vector's. */
    private static VectorShuffle<Float> pairOrder() {
        int[][] labels = new int[FOLD_PAIRS][L];
        for (int p = 0; p < FOLD_PAIRS; p++) {
            Arrays.fill(labels[p], p);
        }
        for (int h = L / 2, count = FOLD_PAIRS; count > 1; h /= 2, count /= 2) {
            for (int i = 0; i < count / 2; i++) {
                int[] merged = new int[L];
                for (int lane = 0; lane < L; lane++) {
                    merged[lane] = (lane & h) != 0 ? labels[2 * i + 1][lane] : labels[2 * i][lane];
                }
                labels[i] = merged;
            }
        }
        int[] order = new int[L];
        for (int lane = L - 1; lane >= 0; lane--) {
            if (labels[0][lane] < FOLD_PAIRS) {
                order[labels[0][lane]] = lane;
            }
        }
        return VectorShuffle.fromArray(F, order, 0);
    }

    /**
     * Adds the decoded blocks ({@code bytes} from slot 0) times {@code x} from byte {@code xo} to one token's
     * accumulator, element group after group.
     */
    private static void accumulate(MemorySegment w, int bytes, MemorySegment x, long xo, float[] state, int st) {
        FloatVector a = FloatVector.fromArray(F, state, st);
        for (int o = 0; o < bytes; o += GROUP_BYTES) {
            a = FloatVector.fromMemorySegment(F, w, o, NATIVE).fma(FloatVector.fromMemorySegment(F, x, xo + o, NATIVE), a);
        }
        a.intoArray(state, st);
    }

    /**
     * {@link #accumulate} for four consecutive tokens sharing each weight load: token {@code k}'s activations are
     * {@code x} from byte {@code xo + k * stride}; each token sees the same operations as alone.
     */
    private static void accumulate4(MemorySegment w, int bytes, MemorySegment x, long xo, long stride, float[] state,
            int st) {
        FloatVector a0 = FloatVector.fromArray(F, state, st);
        FloatVector a1 = FloatVector.fromArray(F, state, st + STATE);
        FloatVector a2 = FloatVector.fromArray(F, state, st + 2 * STATE);
        FloatVector a3 = FloatVector.fromArray(F, state, st + 3 * STATE);
        long x1 = xo + stride;
        long x2 = xo + 2 * stride;
        long x3 = xo + 3 * stride;
        for (int o = 0; o < bytes; o += GROUP_BYTES) {
            FloatVector v = FloatVector.fromMemorySegment(F, w, o, NATIVE);
            a0 = v.fma(FloatVector.fromMemorySegment(F, x, xo + o, NATIVE), a0);
            a1 = v.fma(FloatVector.fromMemorySegment(F, x, x1 + o, NATIVE), a1);
            a2 = v.fma(FloatVector.fromMemorySegment(F, x, x2 + o, NATIVE), a2);
            a3 = v.fma(FloatVector.fromMemorySegment(F, x, x3 + o, NATIVE), a3);
        }
        a0.intoArray(state, st);
        a1.intoArray(state, st + STATE);
        a2.intoArray(state, st + 2 * STATE);
        a3.intoArray(state, st + 3 * STATE);
    }

}
