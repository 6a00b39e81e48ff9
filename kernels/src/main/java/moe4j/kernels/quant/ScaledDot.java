package moe4j.kernels.quant;

import static moe4j.kernels.quant.Simd.F;
import static moe4j.kernels.quant.Simd.L;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.FloatVector;

/**
 * Dot products of 256-element super-block rows (K-quants, IQ4_XS) with {@link PreparedActivations}, decoding
 * each chunk of the row once for all tokens. A block decodes to integer-valued floats {@code q*sc} (quant
 * times its sub-block's integer scale: exact), one float super-scale {@code d}, and sixteen float minimum
 * terms {@code M} (one per 16 elements); its contribution is {@code d * sum(q*sc * x) - sum(M * s)} where
 * {@code s} are the prepared 16-element sums of the activations. Minimums and constant quant offsets
 * (Q3_K's 4, Q6_K's 32) thus cost one multiply-add per block instead of one per element, as in llama.cpp's
 * kernels.
 *
 * <p>Summation order, fixed so that every token's result is the same whatever the batch: per block, element
 * group {@code g} (16 elements) is multiply-added into accumulator {@code g % 4} (starting from zero), the four are added as {@code (c0+c1)+(c2+c3)}
 * and multiply-added with {@code d} into the row accumulator; the minimum terms go to a second accumulator;
 * the result is {@code sum(acc) - sum(accMin)} ({@link Simd#sum}).
 */
final class ScaledDot {

    private ScaledDot() {}

    static final int QK = 256;
    /** Super-blocks decoded at a time: 24 KB of floats, within L1 with the activations. */
    private static final int CHUNK_BLOCKS = 24;
    private static final int GROUPS = QK / PreparedActivations.SUM_GROUP;

    /** Per-thread decode buffers, and the accumulators of tokens between chunks. */
    static final class Scratch {
        final float[] w = new float[CHUNK_BLOCKS * QK];
        final float[] d = new float[CHUNK_BLOCKS];
        final float[] mins = new float[CHUNK_BLOCKS * GROUPS];
        /** Integer scale codes of the block being decoded. */
        final int[] codes = new int[2 * L];
        float[] state = new float[16 * 2 * L];
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Arguments already checked; the row has {@code x.width()} elements. */
    static void dot(BlockFormat format, MemorySegment src, long srcOffset, PreparedActivations x, int firstRow,
            int nTokens, float[] out, int outOffset, int outStride) {
        Scratch s = SCRATCH.get();
        int width = x.width();
        int blocks = width / QK;
        int blockBytes = format.blockBytes();
        if (s.state.length < nTokens * 2 * L) {
            s.state = new float[nTokens * 2 * L];
        }
        float[] state = s.state;
        Arrays.fill(state, 0, nTokens * 2 * L, 0f);
        float[] xv = x.values();
        float[] sums = x.sums();
        if (nTokens == 1 && format.fusesScaled()) {
            int xo = firstRow * width;
            for (int b = 0; b < blocks; b++) {
                format.accumulateScaled(src, srcOffset + (long) b * blockBytes, xv, xo + b * QK,
                        sums, (xo + b * QK) / PreparedActivations.SUM_GROUP, state, s);
            }
            out[outOffset] = Simd.sum(FloatVector.fromArray(F, state, 0)) - Simd.sum(FloatVector.fromArray(F, state, L));
            return;
        }
        for (int b0 = 0; b0 < blocks; b0 += CHUNK_BLOCKS) {
            int n = Math.min(CHUNK_BLOCKS, blocks - b0);
            for (int b = 0; b < n; b++) {
                format.decodeScaled(src, srcOffset + (long) (b0 + b) * blockBytes, s, b);
            }
            for (int t = 0; t < nTokens; t++) {
                int xo = (firstRow + t) * width + b0 * QK;
                accumulate(s.w, s.d, s.mins, n, xv, xo, sums, xo / PreparedActivations.SUM_GROUP, state, 2 * L * t);
            }
        }
        for (int t = 0; t < nTokens; t++) {
            out[outOffset + t * outStride] = Simd.sum(FloatVector.fromArray(F, state, 2 * L * t))
                    - Simd.sum(FloatVector.fromArray(F, state, 2 * L * t + L));
        }
    }

    private static void accumulate(float[] w, float[] d, float[] mins, int blocks, float[] x, int xo, float[] sums,
            int so, float[] state, int st) {
        FloatVector acc = FloatVector.fromArray(F, state, st);
        FloatVector accMin = FloatVector.fromArray(F, state, st + L);
        for (int b = 0; b < blocks; b++) {
            int wb = b * QK;
            int xb = xo + b * QK;
            FloatVector c0 = FloatVector.zero(F);
            FloatVector c1 = c0;
            FloatVector c2 = c0;
            FloatVector c3 = c0;
            for (int g = 0; g < QK; g += 4 * L) {
                c0 = FloatVector.fromArray(F, w, wb + g).fma(FloatVector.fromArray(F, x, xb + g), c0);
                c1 = FloatVector.fromArray(F, w, wb + g + L).fma(FloatVector.fromArray(F, x, xb + g + L), c1);
                c2 = FloatVector.fromArray(F, w, wb + g + 2 * L).fma(FloatVector.fromArray(F, x, xb + g + 2 * L), c2);
                c3 = FloatVector.fromArray(F, w, wb + g + 3 * L).fma(FloatVector.fromArray(F, x, xb + g + 3 * L), c3);
            }
            acc = c0.add(c1).add(c2.add(c3)).fma(FloatVector.broadcast(F, d[b]), acc);
            accMin = FloatVector.fromArray(F, mins, b * GROUPS).fma(FloatVector.fromArray(F, sums, so + b * GROUPS), accMin);
        }
        acc.intoArray(state, st);
        accMin.intoArray(state, st + L);
    }
}
