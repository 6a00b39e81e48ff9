package moe4j.kernels.quant;

import static moe4j.kernels.quant.Simd.F;
import static moe4j.kernels.quant.Simd.L;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;

import jdk.incubator.vector.FloatVector;

/**
 * Dot products of 256-element super-block rows (K-quants, IQ4_XS) with {@link PreparedActivations}, decoding
 * each chunk of the row once for all tokens of a batch. A block decodes to weights without their minimum or
 * constant offset, {@code w = q * dl} ({@code dl} the float product of super-scale and sub-block scale, {@code q}
 * the unsigned quant), and sixteen minimum terms {@code M} (one per 16 elements: {@code dmin*m} for Q4_K, the
 * offset times {@code dl} for Q6_K's 32 or Q3_K's 4). The dot is {@code sum(w * x) - sum(M * s)} with {@code s}
 * the prepared 16-element sums of the activations, so minimums and offsets cost one multiply-add per block, as
 * in llama.cpp's kernels, rather than one operation per element.
 *
 * <p>Summation order, fixed so that a token's result is the same in any batch: element group {@code g} (16
 * elements, counted over the whole row) is multiply-added into accumulator {@code g % 4}; block {@code b}'s
 * minimum terms into a fifth; the result is {@code sum((a0 + a1) + (a2 + a3)) - sum(a4)} ({@link Simd#sum}).
 * Types with {@link BlockFormat#fusesScaled()} compute exactly this for a single token, decoding in registers.
 *
 * <p>The batch loops read decoded weights and activations from 64-byte-aligned native memory (see
 * {@link PreparedActivations}), addressing segment slices from offset 0 so that C2 hoists their bounds checks.
 */
final class ScaledDot {

    private ScaledDot() {}

    static final int QK = 256;
    /** Super-blocks decoded at a time: 24 KB of floats, within L1 with the activations. */
    private static final int CHUNK_BLOCKS = 24;
    private static final int GROUPS = QK / PreparedActivations.SUM_GROUP;
    static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final long BLOCK_BYTES = QK * Float.BYTES;
    private static final long GROUP_BYTES = (long) L * Float.BYTES;
    /** Per-token accumulators kept between chunks: four for the products, one for the minimum terms. */
    static final int STATE = 5 * L;

    /** Per-thread decode buffers, and the accumulators of tokens between chunks. */
    static final class Scratch {
        /** Decoded weights of block slot {@code i} at float {@code 256*i}. */
        final MemorySegment w;
        /** Minimum terms of block slot {@code i} at float {@code 16*i}. */
        final MemorySegment mins;
        /** Unpacked scales of the block being decoded: sub-block scales from 0, its minimum terms from 16. */
        final float[] scales = new float[2 * L];
        float[] state = new float[16 * STATE];

        Scratch() {
            Arena arena = Arena.ofAuto();
            w = arena.allocate(CHUNK_BLOCKS * BLOCK_BYTES, 64);
            mins = arena.allocate(CHUNK_BLOCKS * GROUPS * Float.BYTES, 64);
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Arguments already checked; the row has {@code x.width()} elements. */
    static void dot(BlockFormat format, MemorySegment src, long srcOffset, PreparedActivations x, int firstRow,
            int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        int blockBytes = format.blockBytes();
        if (s.state.length < nTokens * STATE) {
            s.state = new float[nTokens * STATE];
        }
        float[] state = s.state;
        Arrays.fill(state, 0, nTokens * STATE, 0f);
        MemorySegment xv = x.alignedValues();
        MemorySegment sums = x.sums();
        long rowBytes = (long) width * Float.BYTES;
        long rowSums = rowBytes / PreparedActivations.SUM_GROUP;
        if (nTokens == 1 && format.fusesScaled()) {
            // one pass over the weights: decoding dominates, and array accesses check cheaper than segment ones
            float[] xa = x.values();
            float[] sa = x.sumsArray();
            int xo = firstRow * width;
            for (int b = 0; b < blocks; b++) {
                format.accumulateScaled(src, srcOffset + (long) b * blockBytes, xa, xo + b * QK, sa,
                        xo / PreparedActivations.SUM_GROUP + b * GROUPS, state, s);
            }
        } else {
            for (int b0 = 0; b0 < blocks; b0 += CHUNK_BLOCKS) {
                int n = Math.min(CHUNK_BLOCKS, blocks - b0);
                for (int b = 0; b < n; b++) {
                    format.decodeScaled(src, srcOffset + (long) (b0 + b) * blockBytes, s, b);
                }
                long bytes = n * BLOCK_BYTES;
                long minBytes = n * GROUP_BYTES;
                MemorySegment w = s.w.asSlice(0, bytes);
                MemorySegment m = s.mins.asSlice(0, minBytes);
                int t = 0;
                for (; t + 4 <= nTokens; t += 4) {
                    long row = firstRow + t;
                    long xo = row * rowBytes + b0 * BLOCK_BYTES;
                    long so = row * rowSums + b0 * GROUP_BYTES;
                    accumulate4(w, xv.asSlice(xo, 3 * rowBytes + bytes), rowBytes, state, STATE * t);
                    accumulateMins4(m, sums.asSlice(so, 3 * rowSums + minBytes), rowSums, state, STATE * t);
                }
                for (; t + 2 <= nTokens; t += 2) {
                    long row = firstRow + t;
                    long xo = row * rowBytes + b0 * BLOCK_BYTES;
                    long so = row * rowSums + b0 * GROUP_BYTES;
                    accumulate2(w, xv.asSlice(xo, bytes), xv.asSlice(xo + rowBytes, bytes), state, STATE * t);
                    accumulateMins(m, sums.asSlice(so, minBytes), state, STATE * t);
                    accumulateMins(m, sums.asSlice(so + rowSums, minBytes), state, STATE * (t + 1));
                }
                for (; t < nTokens; t++) {
                    long row = firstRow + t;
                    accumulate(w, xv.asSlice(row * rowBytes + b0 * BLOCK_BYTES, bytes), state, STATE * t);
                    accumulateMins(m, sums.asSlice(row * rowSums + b0 * GROUP_BYTES, minBytes), state, STATE * t);
                }
            }
        }
        for (int t = 0; t < nTokens; t++) {
            out[outOffset + t * outStride] = result(state, STATE * t);
        }
    }

    /** A token's dot product from its five accumulators at {@code state[st ..]}. */
    private static float result(float[] state, int st) {
        FloatVector a = FloatVector.fromArray(F, state, st).add(FloatVector.fromArray(F, state, st + L))
                .add(FloatVector.fromArray(F, state, st + 2 * L).add(FloatVector.fromArray(F, state, st + 3 * L)));
        return Simd.sum(a) - Simd.sum(FloatVector.fromArray(F, state, st + 4 * L));
    }

    /** Rows per tile of {@link #dotTile}, and tokens per tile. */
    static final int TILE = 4;
    /** Super-blocks of each tile row decoded at a time, so that the tile's rows fill the decode buffer. */
    private static final int TILE_CHUNK = CHUNK_BLOCKS / TILE;

    /**
     * {@link #dot} of {@link #TILE} rows, row {@code r} at byte {@code srcOffset + r*rowStride} writing
     * {@code out[outOffset + r + t*outStride]}, with at least {@link #TILE} tokens; arguments already checked. Each
     * chunk of the four rows is decoded once, then multiplied with four tokens at a time ({@link #tile}), so each
     * activation load serves four rows and each weight load four tokens; every (row, token) pair still sees exactly
     * {@link #dot}'s operations in its order.
     */
    static void dotTile(BlockFormat format, MemorySegment src, long srcOffset, long rowStride, PreparedActivations x,
            int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        int blockBytes = format.blockBytes();
        int rowState = nTokens * STATE;
        if (s.state.length < TILE * rowState) {
            s.state = new float[TILE * rowState];
        }
        float[] state = s.state;
        Arrays.fill(state, 0, TILE * rowState, 0f);
        MemorySegment xv = x.alignedValues();
        MemorySegment sums = x.sums();
        long rowBytes = (long) width * Float.BYTES;
        long rowSums = rowBytes / PreparedActivations.SUM_GROUP;
        for (int b0 = 0; b0 < blocks; b0 += TILE_CHUNK) {
            int n = Math.min(TILE_CHUNK, blocks - b0);
            for (int r = 0; r < TILE; r++) {
                for (int b = 0; b < n; b++) {
                    format.decodeScaled(src, srcOffset + r * rowStride + (long) (b0 + b) * blockBytes, s, r * n + b);
                }
            }
            long bytes = n * BLOCK_BYTES;
            long minBytes = n * GROUP_BYTES;
            MemorySegment w = s.w.asSlice(0, TILE * bytes);
            int t = 0;
            for (; t + TILE <= nTokens; t += TILE) {
                long row = firstRow + t;
                tile(w, bytes, xv.asSlice(row * rowBytes + b0 * BLOCK_BYTES, 3 * rowBytes + bytes), rowBytes, state,
                        STATE * t, rowState);
                MemorySegment sm = sums.asSlice(row * rowSums + b0 * GROUP_BYTES, 3 * rowSums + minBytes);
                for (int r = 0; r < TILE; r++) {
                    accumulateMins4(s.mins.asSlice(r * minBytes, minBytes), sm, rowSums, state, r * rowState + STATE * t);
                }
            }
            for (; t < nTokens; t++) {
                long row = firstRow + t;
                MemorySegment xs = xv.asSlice(row * rowBytes + b0 * BLOCK_BYTES, bytes);
                MemorySegment ss = sums.asSlice(row * rowSums + b0 * GROUP_BYTES, minBytes);
                for (int r = 0; r < TILE; r++) {
                    accumulate(w.asSlice(r * bytes, bytes), xs, state, r * rowState + STATE * t);
                    accumulateMins(s.mins.asSlice(r * minBytes, minBytes), ss, state, r * rowState + STATE * t);
                }
            }
        }
        for (int r = 0; r < TILE; r++) {
            for (int t = 0; t < nTokens; t++) {
                out[outOffset + r + t * outStride] = result(state, r * rowState + STATE * t);
            }
        }
    }

    /**
     * Adds four rows of decoded weights (row {@code r} from byte {@code r * wStride} of {@code w}) times four tokens'
     * activations (token {@code k} from byte {@code k * xStride} of {@code x}) to the product accumulators of each
     * (row, token) pair: row {@code r}, token {@code k}'s at {@code state[st + r*rowState + k*STATE]}. One pass per
     * accumulator index {@code j} takes element groups {@code j, j+4, ..} in order, exactly the sequence that
     * {@link #accumulate} adds into accumulator {@code j}, with sixteen accumulators live instead of sixty-four.
     */
    private static void tile(MemorySegment w, long wStride, MemorySegment x, long xStride, float[] state, int st,
            int rowState) {
        long w1 = wStride;
        long w2 = 2 * wStride;
        long w3 = 3 * wStride;
        long x1 = xStride;
        long x2 = 2 * xStride;
        long x3 = 3 * xStride;
        int r1 = rowState;
        int r2 = 2 * rowState;
        int r3 = 3 * rowState;
        for (int j = 0; j < 4; j++) {
            int a = st + j * L;
            FloatVector c00 = FloatVector.fromArray(F, state, a);
            FloatVector c01 = FloatVector.fromArray(F, state, a + STATE);
            FloatVector c02 = FloatVector.fromArray(F, state, a + 2 * STATE);
            FloatVector c03 = FloatVector.fromArray(F, state, a + 3 * STATE);
            FloatVector c10 = FloatVector.fromArray(F, state, a + r1);
            FloatVector c11 = FloatVector.fromArray(F, state, a + r1 + STATE);
            FloatVector c12 = FloatVector.fromArray(F, state, a + r1 + 2 * STATE);
            FloatVector c13 = FloatVector.fromArray(F, state, a + r1 + 3 * STATE);
            FloatVector c20 = FloatVector.fromArray(F, state, a + r2);
            FloatVector c21 = FloatVector.fromArray(F, state, a + r2 + STATE);
            FloatVector c22 = FloatVector.fromArray(F, state, a + r2 + 2 * STATE);
            FloatVector c23 = FloatVector.fromArray(F, state, a + r2 + 3 * STATE);
            FloatVector c30 = FloatVector.fromArray(F, state, a + r3);
            FloatVector c31 = FloatVector.fromArray(F, state, a + r3 + STATE);
            FloatVector c32 = FloatVector.fromArray(F, state, a + r3 + 2 * STATE);
            FloatVector c33 = FloatVector.fromArray(F, state, a + r3 + 3 * STATE);
            for (long o = j * GROUP_BYTES; o < wStride; o += 4 * GROUP_BYTES) {
                FloatVector v0 = FloatVector.fromMemorySegment(F, w, o, NATIVE);
                FloatVector v1 = FloatVector.fromMemorySegment(F, w, w1 + o, NATIVE);
                FloatVector v2 = FloatVector.fromMemorySegment(F, w, w2 + o, NATIVE);
                FloatVector v3 = FloatVector.fromMemorySegment(F, w, w3 + o, NATIVE);
                FloatVector y0 = FloatVector.fromMemorySegment(F, x, o, NATIVE);
                FloatVector y1 = FloatVector.fromMemorySegment(F, x, x1 + o, NATIVE);
                FloatVector y2 = FloatVector.fromMemorySegment(F, x, x2 + o, NATIVE);
                FloatVector y3 = FloatVector.fromMemorySegment(F, x, x3 + o, NATIVE);
                c00 = v0.fma(y0, c00);
                c01 = v0.fma(y1, c01);
                c02 = v0.fma(y2, c02);
                c03 = v0.fma(y3, c03);
                c10 = v1.fma(y0, c10);
                c11 = v1.fma(y1, c11);
                c12 = v1.fma(y2, c12);
                c13 = v1.fma(y3, c13);
                c20 = v2.fma(y0, c20);
                c21 = v2.fma(y1, c21);
                c22 = v2.fma(y2, c22);
                c23 = v2.fma(y3, c23);
                c30 = v3.fma(y0, c30);
                c31 = v3.fma(y1, c31);
                c32 = v3.fma(y2, c32);
                c33 = v3.fma(y3, c33);
            }
            c00.intoArray(state, a);
            c01.intoArray(state, a + STATE);
            c02.intoArray(state, a + 2 * STATE);
            c03.intoArray(state, a + 3 * STATE);
            c10.intoArray(state, a + r1);
            c11.intoArray(state, a + r1 + STATE);
            c12.intoArray(state, a + r1 + 2 * STATE);
            c13.intoArray(state, a + r1 + 3 * STATE);
            c20.intoArray(state, a + r2);
            c21.intoArray(state, a + r2 + STATE);
            c22.intoArray(state, a + r2 + 2 * STATE);
            c23.intoArray(state, a + r2 + 3 * STATE);
            c30.intoArray(state, a + r3);
            c31.intoArray(state, a + r3 + STATE);
            c32.intoArray(state, a + r3 + 2 * STATE);
            c33.intoArray(state, a + r3 + 3 * STATE);
        }
    }

    /** Adds {@code w * x} (same length, whole blocks) to one token's four product accumulators. */
    private static void accumulate(MemorySegment w, MemorySegment x, float[] state, int st) {
        FloatVector a0 = FloatVector.fromArray(F, state, st);
        FloatVector a1 = FloatVector.fromArray(F, state, st + L);
        FloatVector a2 = FloatVector.fromArray(F, state, st + 2 * L);
        FloatVector a3 = FloatVector.fromArray(F, state, st + 3 * L);
        for (long o = 0, n = w.byteSize(); o < n; o += 4 * GROUP_BYTES) {
            a0 = FloatVector.fromMemorySegment(F, w, o, NATIVE).fma(FloatVector.fromMemorySegment(F, x, o, NATIVE), a0);
            a1 = FloatVector.fromMemorySegment(F, w, o + 64, NATIVE).fma(FloatVector.fromMemorySegment(F, x, o + 64, NATIVE), a1);
            a2 = FloatVector.fromMemorySegment(F, w, o + 128, NATIVE).fma(FloatVector.fromMemorySegment(F, x, o + 128, NATIVE), a2);
            a3 = FloatVector.fromMemorySegment(F, w, o + 192, NATIVE).fma(FloatVector.fromMemorySegment(F, x, o + 192, NATIVE), a3);
        }
        a0.intoArray(state, st);
        a1.intoArray(state, st + L);
        a2.intoArray(state, st + 2 * L);
        a3.intoArray(state, st + 3 * L);
    }

    /** {@link #accumulate} for two tokens sharing each weight load; each sees the same operations as alone. */
    private static void accumulate2(MemorySegment w, MemorySegment x, MemorySegment y, float[] state, int st) {
        FloatVector a0 = FloatVector.fromArray(F, state, st);
        FloatVector a1 = FloatVector.fromArray(F, state, st + L);
        FloatVector a2 = FloatVector.fromArray(F, state, st + 2 * L);
        FloatVector a3 = FloatVector.fromArray(F, state, st + 3 * L);
        FloatVector b0 = FloatVector.fromArray(F, state, st + STATE);
        FloatVector b1 = FloatVector.fromArray(F, state, st + STATE + L);
        FloatVector b2 = FloatVector.fromArray(F, state, st + STATE + 2 * L);
        FloatVector b3 = FloatVector.fromArray(F, state, st + STATE + 3 * L);
        for (long o = 0, n = w.byteSize(); o < n; o += 4 * GROUP_BYTES) {
            FloatVector w0 = FloatVector.fromMemorySegment(F, w, o, NATIVE);
            FloatVector w1 = FloatVector.fromMemorySegment(F, w, o + 64, NATIVE);
            FloatVector w2 = FloatVector.fromMemorySegment(F, w, o + 128, NATIVE);
            FloatVector w3 = FloatVector.fromMemorySegment(F, w, o + 192, NATIVE);
            a0 = w0.fma(FloatVector.fromMemorySegment(F, x, o, NATIVE), a0);
            a1 = w1.fma(FloatVector.fromMemorySegment(F, x, o + 64, NATIVE), a1);
            a2 = w2.fma(FloatVector.fromMemorySegment(F, x, o + 128, NATIVE), a2);
            a3 = w3.fma(FloatVector.fromMemorySegment(F, x, o + 192, NATIVE), a3);
            b0 = w0.fma(FloatVector.fromMemorySegment(F, y, o, NATIVE), b0);
            b1 = w1.fma(FloatVector.fromMemorySegment(F, y, o + 64, NATIVE), b1);
            b2 = w2.fma(FloatVector.fromMemorySegment(F, y, o + 128, NATIVE), b2);
            b3 = w3.fma(FloatVector.fromMemorySegment(F, y, o + 192, NATIVE), b3);
        }
        a0.intoArray(state, st);
        a1.intoArray(state, st + L);
        a2.intoArray(state, st + 2 * L);
        a3.intoArray(state, st + 3 * L);
        b0.intoArray(state, st + STATE);
        b1.intoArray(state, st + STATE + L);
        b2.intoArray(state, st + STATE + 2 * L);
        b3.intoArray(state, st + STATE + 3 * L);
    }

    /**
     * {@link #accumulate} for four consecutive tokens sharing each weight load: token {@code k}'s activations are
     * {@code x} from byte {@code k * stride} (one slice for all four, so C2 checks its bounds once per call); each
     * token sees the same operations as alone.
     */
    private static void accumulate4(MemorySegment w, MemorySegment x, long stride, float[] state, int st) {
        FloatVector a00 = FloatVector.fromArray(F, state, st);
        FloatVector a01 = FloatVector.fromArray(F, state, st + L);
        FloatVector a02 = FloatVector.fromArray(F, state, st + 2 * L);
        FloatVector a03 = FloatVector.fromArray(F, state, st + 3 * L);
        FloatVector a10 = FloatVector.fromArray(F, state, st + STATE);
        FloatVector a11 = FloatVector.fromArray(F, state, st + STATE + L);
        FloatVector a12 = FloatVector.fromArray(F, state, st + STATE + 2 * L);
        FloatVector a13 = FloatVector.fromArray(F, state, st + STATE + 3 * L);
        FloatVector a20 = FloatVector.fromArray(F, state, st + 2 * STATE);
        FloatVector a21 = FloatVector.fromArray(F, state, st + 2 * STATE + L);
        FloatVector a22 = FloatVector.fromArray(F, state, st + 2 * STATE + 2 * L);
        FloatVector a23 = FloatVector.fromArray(F, state, st + 2 * STATE + 3 * L);
        FloatVector a30 = FloatVector.fromArray(F, state, st + 3 * STATE);
        FloatVector a31 = FloatVector.fromArray(F, state, st + 3 * STATE + L);
        FloatVector a32 = FloatVector.fromArray(F, state, st + 3 * STATE + 2 * L);
        FloatVector a33 = FloatVector.fromArray(F, state, st + 3 * STATE + 3 * L);
        long x1 = stride;
        long x2 = 2 * stride;
        long x3 = 3 * stride;
        for (long o = 0, n = w.byteSize(); o < n; o += 4 * GROUP_BYTES) {
            FloatVector w0 = FloatVector.fromMemorySegment(F, w, o, NATIVE);
            FloatVector w1 = FloatVector.fromMemorySegment(F, w, o + 64, NATIVE);
            FloatVector w2 = FloatVector.fromMemorySegment(F, w, o + 128, NATIVE);
            FloatVector w3 = FloatVector.fromMemorySegment(F, w, o + 192, NATIVE);
            a00 = w0.fma(FloatVector.fromMemorySegment(F, x, o, NATIVE), a00);
            a01 = w1.fma(FloatVector.fromMemorySegment(F, x, o + 64, NATIVE), a01);
            a02 = w2.fma(FloatVector.fromMemorySegment(F, x, o + 128, NATIVE), a02);
            a03 = w3.fma(FloatVector.fromMemorySegment(F, x, o + 192, NATIVE), a03);
            a10 = w0.fma(FloatVector.fromMemorySegment(F, x, x1 + o, NATIVE), a10);
            a11 = w1.fma(FloatVector.fromMemorySegment(F, x, x1 + o + 64, NATIVE), a11);
            a12 = w2.fma(FloatVector.fromMemorySegment(F, x, x1 + o + 128, NATIVE), a12);
            a13 = w3.fma(FloatVector.fromMemorySegment(F, x, x1 + o + 192, NATIVE), a13);
            a20 = w0.fma(FloatVector.fromMemorySegment(F, x, x2 + o, NATIVE), a20);
            a21 = w1.fma(FloatVector.fromMemorySegment(F, x, x2 + o + 64, NATIVE), a21);
            a22 = w2.fma(FloatVector.fromMemorySegment(F, x, x2 + o + 128, NATIVE), a22);
            a23 = w3.fma(FloatVector.fromMemorySegment(F, x, x2 + o + 192, NATIVE), a23);
            a30 = w0.fma(FloatVector.fromMemorySegment(F, x, x3 + o, NATIVE), a30);
            a31 = w1.fma(FloatVector.fromMemorySegment(F, x, x3 + o + 64, NATIVE), a31);
            a32 = w2.fma(FloatVector.fromMemorySegment(F, x, x3 + o + 128, NATIVE), a32);
            a33 = w3.fma(FloatVector.fromMemorySegment(F, x, x3 + o + 192, NATIVE), a33);
        }
        a00.intoArray(state, st);
        a01.intoArray(state, st + L);
        a02.intoArray(state, st + 2 * L);
        a03.intoArray(state, st + 3 * L);
        a10.intoArray(state, st + STATE);
        a11.intoArray(state, st + STATE + L);
        a12.intoArray(state, st + STATE + 2 * L);
        a13.intoArray(state, st + STATE + 3 * L);
        a20.intoArray(state, st + 2 * STATE);
        a21.intoArray(state, st + 2 * STATE + L);
        a22.intoArray(state, st + 2 * STATE + 2 * L);
        a23.intoArray(state, st + 2 * STATE + 3 * L);
        a30.intoArray(state, st + 3 * STATE);
        a31.intoArray(state, st + 3 * STATE + L);
        a32.intoArray(state, st + 3 * STATE + 2 * L);
        a33.intoArray(state, st + 3 * STATE + 3 * L);
    }

    /** {@link #accumulateMins} for four consecutive tokens, token {@code k}'s sums from byte {@code k * stride} of {@code sums}. */
    private static void accumulateMins4(MemorySegment mins, MemorySegment sums, long stride, float[] state, int st) {
        FloatVector a0 = FloatVector.fromArray(F, state, st + 4 * L);
        FloatVector a1 = FloatVector.fromArray(F, state, st + STATE + 4 * L);
        FloatVector a2 = FloatVector.fromArray(F, state, st + 2 * STATE + 4 * L);
        FloatVector a3 = FloatVector.fromArray(F, state, st + 3 * STATE + 4 * L);
        long s1 = stride;
        long s2 = 2 * stride;
        long s3 = 3 * stride;
        for (long o = 0, n = mins.byteSize(); o < n; o += GROUP_BYTES) {
            FloatVector m = FloatVector.fromMemorySegment(F, mins, o, NATIVE);
            a0 = m.fma(FloatVector.fromMemorySegment(F, sums, o, NATIVE), a0);
            a1 = m.fma(FloatVector.fromMemorySegment(F, sums, s1 + o, NATIVE), a1);
            a2 = m.fma(FloatVector.fromMemorySegment(F, sums, s2 + o, NATIVE), a2);
            a3 = m.fma(FloatVector.fromMemorySegment(F, sums, s3 + o, NATIVE), a3);
        }
        a0.intoArray(state, st + 4 * L);
        a1.intoArray(state, st + STATE + 4 * L);
        a2.intoArray(state, st + 2 * STATE + 4 * L);
        a3.intoArray(state, st + 3 * STATE + 4 * L);
    }

    /** Adds each block's minimum terms times the token's 16-element sums to its fifth accumulator. */
    private static void accumulateMins(MemorySegment mins, MemorySegment sums, float[] state, int st) {
        FloatVector a4 = FloatVector.fromArray(F, state, st + 4 * L);
        for (long o = 0, n = mins.byteSize(); o < n; o += GROUP_BYTES) {
            a4 = FloatVector.fromMemorySegment(F, mins, o, NATIVE).fma(FloatVector.fromMemorySegment(F, sums, o, NATIVE), a4);
        }
        a4.intoArray(state, st + 4 * L);
    }
}
