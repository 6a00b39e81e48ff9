package moe4j.kernels.quant;

import static moe4j.kernels.quant.Simd.F;
import static moe4j.kernels.quant.Simd.L;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

import jdk.incubator.vector.FloatVector;

/**
 * Dot products through a small decoded scratch buffer: the path for types without a fused kernel, and
 * for batches, where one decoded chunk serves every token.
 *
 * <p>Every dot product in this package sums in the same canonical order, so a row gives bit-identical
 * results through {@code dot}, {@code dotBatch} and any fused kernel: element group {@code g} (elements
 * {@code [g*L, (g+1)*L)}, {@code L} = vector lanes) is accumulated by fused multiply-add into accumulator
 * {@code g % 4}; the four accumulators are combined by {@link #combine}; elements past the last whole
 * group are then added one by one with scalar fused multiply-adds.
 */
final class DecodedDot {

    private DecodedDot() {}

    /** Elements decoded at a time: 16 KB of floats stays in L1, and it is a multiple of every block size and of 4 lanes. */
    static final int CHUNK = 4096;

    /** Four accumulators of {@code L} lanes per token. */
    private static final int STATE = 4 * L;

    /** Start of the per-block scratch (unpacked scales) after the accumulators in {@link #fusedState}. */
    static final int FUSED_SCRATCH = STATE;

    private static final class Scratch {
        final float[] weights = new float[CHUNK];
        float[] state = new float[STATE];
        final float[] fused = new float[STATE + 32];
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** The canonical combination of the four accumulators. */
    static float combine(FloatVector a0, FloatVector a1, FloatVector a2, FloatVector a3) {
        return Simd.sum(a0.add(a1).add(a2.add(a3)));
    }

    /**
     * The calling thread's buffer for fused kernels: four zeroed accumulators of {@code L} lanes, then 32
     * floats of scratch from {@link #FUSED_SCRATCH}. Kernels for 256-element blocks keep their accumulators
     * here between blocks so that no vector crosses a method boundary (C2 boxes vectors it cannot inline,
     * and whole-row kernels exceed its inlining budget).
     */
    static float[] fusedState() {
        float[] state = SCRATCH.get().fused;
        Arrays.fill(state, 0, STATE, 0f);
        return state;
    }

    /** {@link #combine} of the accumulators held in {@code state}. */
    static float combine(float[] state) {
        return combine(FloatVector.fromArray(F, state, 0), FloatVector.fromArray(F, state, L),
                FloatVector.fromArray(F, state, 2 * L), FloatVector.fromArray(F, state, 3 * L));
    }

    /** Bytes of {@code elements} elements (whole blocks) of {@code format}. */
    private static long bytes(QuantFormat format, int elements) {
        return (long) (elements / format.blockSize()) * format.blockBytes();
    }

    private static int chunk(QuantFormat format) {
        int block = format.blockSize();
        return Math.max(block, CHUNK / block * block);
    }

    static float dot(QuantFormat format, MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        Objects.checkFromIndexSize(xOffset, count, x.length);
        float[] w = SCRATCH.get().weights;
        int chunk = chunk(format);
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        int done = 0;
        while (done < count) {
            int n = Math.min(chunk, count - done);
            format.dequantize(src, srcOffset + bytes(format, done), w, 0, n);
            int xo = xOffset + done;
            int i = 0;
            for (; i <= n - 4 * L; i += 4 * L) {
                a0 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a0);
                a1 = FloatVector.fromArray(F, w, i + L).fma(FloatVector.fromArray(F, x, xo + i + L), a1);
                a2 = FloatVector.fromArray(F, w, i + 2 * L).fma(FloatVector.fromArray(F, x, xo + i + 2 * L), a2);
                a3 = FloatVector.fromArray(F, w, i + 3 * L).fma(FloatVector.fromArray(F, x, xo + i + 3 * L), a3);
            }
            // only the last chunk can end inside a run of four groups
            if (i <= n - L) {
                a0 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a0);
                i += L;
            }
            if (i <= n - L) {
                a1 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a1);
                i += L;
            }
            if (i <= n - L) {
                a2 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a2);
                i += L;
            }
            done += i;
            if (i < n) {
                float sum = combine(a0, a1, a2, a3);
                for (; i < n; i++) {
                    sum = Math.fma(w[i], x[xo + i], sum);
                }
                return sum;
            }
        }
        return combine(a0, a1, a2, a3);
    }

    /** Checks the arguments of {@link QuantFormat#dotBatch} that concern the activations and outputs. */
    static void checkBatch(float[] x, int xOffset, int xStride, int nTokens, float[] out, int outOffset, int outStride,
            int count) {
        if (nTokens < 0 || xStride < 0 || outStride < 0) {
            throw new IllegalArgumentException("negative token count or stride: nTokens " + nTokens + ", xStride "
                    + xStride + ", outStride " + outStride);
        }
        if (nTokens == 0) {
            return;
        }
        long lastX = xOffset + (long) (nTokens - 1) * xStride;
        if (xOffset < 0 || lastX + count > x.length) {
            throw new IndexOutOfBoundsException("activations of " + nTokens + " tokens of " + count
                    + " elements from offset " + xOffset + " with stride " + xStride + " exceed the array of "
                    + x.length);
        }
        long lastOut = outOffset + (long) (nTokens - 1) * outStride;
        if (outOffset < 0 || lastOut >= out.length) {
            throw new IndexOutOfBoundsException("outputs of " + nTokens + " tokens from offset " + outOffset
                    + " with stride " + outStride + " exceed the array of " + out.length);
        }
    }

    /** Checks the arguments of {@link QuantFormat#dotPrepared} that concern the activations and outputs. */
    static void checkPrepared(QuantFormat format, PreparedActivations x, int firstRow, int nTokens, float[] out,
            int outOffset, int outStride) {
        if (x.rounding() != format.activationRounding()) {
            throw new IllegalArgumentException("activations prepared with " + x.rounding() + " rounding, "
                    + format.type().ggmlName() + " weights need " + format.activationRounding());
        }
        if (nTokens < 0 || outStride < 0) {
            throw new IllegalArgumentException("negative token count or stride: nTokens " + nTokens + ", outStride "
                    + outStride);
        }
        Objects.checkFromIndexSize(firstRow, nTokens, x.rows());
        if (nTokens > 0 && (outOffset < 0 || outOffset + (long) (nTokens - 1) * outStride >= out.length)) {
            throw new IndexOutOfBoundsException("outputs of " + nTokens + " tokens from offset " + outOffset
                    + " with stride " + outStride + " exceed the array of " + out.length);
        }
    }

    /**
     * Decodes each chunk of the row once and applies it to every token; per-token accumulators persist
     * across chunks so each result is bit-identical to {@link #dot}. Arguments are already checked.
     */
    static void dotBatch(QuantFormat format, MemorySegment src, long srcOffset, float[] x, int xOffset, int xStride,
            int nTokens, float[] out, int outOffset, int outStride, int count) {
        if (nTokens == 0) {
            return;
        }
        Scratch scratch = SCRATCH.get();
        float[] w = scratch.weights;
        if (scratch.state.length < nTokens * STATE) {
            scratch.state = new float[nTokens * STATE];
        }
        float[] state = scratch.state;
        Arrays.fill(state, 0, nTokens * STATE, 0f);
        int chunk = chunk(format);
        int groups = count / L * L;
        for (int done = 0; done < count; done += chunk) {
            int n = Math.min(chunk, count - done);
            format.dequantize(src, srcOffset + bytes(format, done), w, 0, n);
            int vectorEnd = Math.min(n, groups - done);
            for (int t = 0; t < nTokens; t++) {
                accumulate(w, vectorEnd, x, xOffset + t * xStride + done, state, t * STATE);
            }
            if (done + n == count) {
                for (int t = 0; t < nTokens; t++) {
                    int s = t * STATE;
                    float sum = combine(FloatVector.fromArray(F, state, s), FloatVector.fromArray(F, state, s + L),
                            FloatVector.fromArray(F, state, s + 2 * L), FloatVector.fromArray(F, state, s + 3 * L));
                    int xo = xOffset + t * xStride + done;
                    for (int i = vectorEnd; i < n; i++) {
                        sum = Math.fma(w[i], x[xo + i], sum);
                    }
                    out[outOffset + t * outStride] = sum;
                }
            }
        }
    }

    /** Adds whole groups {@code w[0..n)} times {@code x[xo..]} into one token's four stored accumulators. */
    private static void accumulate(float[] w, int n, float[] x, int xo, float[] state, int s) {
        FloatVector a0 = FloatVector.fromArray(F, state, s);
        FloatVector a1 = FloatVector.fromArray(F, state, s + L);
        FloatVector a2 = FloatVector.fromArray(F, state, s + 2 * L);
        FloatVector a3 = FloatVector.fromArray(F, state, s + 3 * L);
        int i = 0;
        for (; i <= n - 4 * L; i += 4 * L) {
            a0 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a0);
            a1 = FloatVector.fromArray(F, w, i + L).fma(FloatVector.fromArray(F, x, xo + i + L), a1);
            a2 = FloatVector.fromArray(F, w, i + 2 * L).fma(FloatVector.fromArray(F, x, xo + i + 2 * L), a2);
            a3 = FloatVector.fromArray(F, w, i + 3 * L).fma(FloatVector.fromArray(F, x, xo + i + 3 * L), a3);
        }
        if (i < n) {
            a0 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a0);
            i += L;
        }
        if (i < n) {
            a1 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a1);
            i += L;
        }
        if (i < n) {
            a2 = FloatVector.fromArray(F, w, i).fma(FloatVector.fromArray(F, x, xo + i), a2);
        }
        a0.intoArray(state, s);
        a1.intoArray(state, s + L);
        a2.intoArray(state, s + 2 * L);
        a3.intoArray(state, s + 3 * L);
    }
}
