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
            int st = STATE * t;
            FloatVector a = FloatVector.fromArray(F, state, st).add(FloatVector.fromArray(F, state, st + L))
                    .add(FloatVector.fromArray(F, state, st + 2 * L).add(FloatVector.fromArray(F, state, st + 3 * L)));
            out[outOffset + t * outStride] = Simd.sum(a) - Simd.sum(FloatVector.fromArray(F, state, st + 4 * L));
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

    /** Adds each block's minimum terms times the token's 16-element sums to its fifth accumulator. */
    private static void accumulateMins(MemorySegment mins, MemorySegment sums, float[] state, int st) {
        FloatVector a4 = FloatVector.fromArray(F, state, st + 4 * L);
        for (long o = 0, n = mins.byteSize(); o < n; o += GROUP_BYTES) {
            a4 = FloatVector.fromMemorySegment(F, mins, o, NATIVE).fma(FloatVector.fromMemorySegment(F, sums, o, NATIVE), a4);
        }
        a4.intoArray(state, st + 4 * L);
    }
}
