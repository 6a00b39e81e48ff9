package moe4j.kernels.cpu;

import static moe4j.kernels.quant.LaneFolds.ROTATE_1;
import static moe4j.kernels.quant.LaneFolds.ROTATE_2;
import static moe4j.kernels.quant.LaneFolds.ROTATE_4;
import static moe4j.kernels.quant.LaneFolds.ROTATE_8;
import static moe4j.kernels.quant.LaneFolds.UPPER_1;
import static moe4j.kernels.quant.LaneFolds.UPPER_2;
import static moe4j.kernels.quant.LaneFolds.UPPER_4;
import static moe4j.kernels.quant.LaneFolds.UPPER_8;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** f32 vector primitives with a fixed summation order (independent of threads and batch size). */
final class VectorMath {

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Float lanes of the vectors used here. */
    static final int LANES = L;

    private VectorMath() {}

    /**
     * {@code out[outOff+p] = q . rows[p*n ..] * scale} for {@code p < count}: per row two accumulators take
     * alternate 16-float slices, the elements past the last whole vector are multiply-added after the lanes are summed.
     * With 16 lanes and at most 16 rows the lane sums of all rows come out of one fold tree (each step adds lanes
     * {@code h} apart and blends two rows into one vector: the pairwise order of a lane fold), about 5 vector
     * operations a row instead of 16 dependent scalar adds, which took twice the time of the products in prompt
     * attention; otherwise the lanes are added first to last. {@code lanes} holds at least {@code 16 * LANES} floats.
     */
    static void dotRows(float[] q, int qOff, float[] rows, int count, int n, float scale,
                        float[] out, int outOff, float[] lanes) {
        int vectorEnd = n - n % L;
        if (L == 16 && n == HEAD_128) {
            dotRows128(q, qOff, rows, count, lanes);
        } else {
            dotRowProducts(q, qOff, rows, count, n, lanes);
        }
        foldRows(q, qOff, rows, count, n, vectorEnd, scale, out, outOff, lanes);
    }

    /** Head size with unrolled attention loops: the query (or output) held in 8 registers across the rows. */
    private static final int HEAD_128 = 128;

    /** {@link #dotRowProducts} for 128 elements with the query in registers: half the loads, the same operations. */
    private static void dotRows128(float[] q, int qOff, float[] rows, int count, float[] lanes) {
        FloatVector q0 = FloatVector.fromArray(F, q, qOff);
        FloatVector q1 = FloatVector.fromArray(F, q, qOff + 16);
        FloatVector q2 = FloatVector.fromArray(F, q, qOff + 32);
        FloatVector q3 = FloatVector.fromArray(F, q, qOff + 48);
        FloatVector q4 = FloatVector.fromArray(F, q, qOff + 64);
        FloatVector q5 = FloatVector.fromArray(F, q, qOff + 80);
        FloatVector q6 = FloatVector.fromArray(F, q, qOff + 96);
        FloatVector q7 = FloatVector.fromArray(F, q, qOff + 112);
        FloatVector zero = FloatVector.zero(F);
        for (int p = 0; p < count; p++) {
            int r = p * HEAD_128;
            FloatVector acc0 = q0.fma(FloatVector.fromArray(F, rows, r), zero);
            FloatVector acc1 = q1.fma(FloatVector.fromArray(F, rows, r + 16), zero);
            acc0 = q2.fma(FloatVector.fromArray(F, rows, r + 32), acc0);
            acc1 = q3.fma(FloatVector.fromArray(F, rows, r + 48), acc1);
            acc0 = q4.fma(FloatVector.fromArray(F, rows, r + 64), acc0);
            acc1 = q5.fma(FloatVector.fromArray(F, rows, r + 80), acc1);
            acc0 = q6.fma(FloatVector.fromArray(F, rows, r + 96), acc0);
            acc1 = q7.fma(FloatVector.fromArray(F, rows, r + 112), acc1);
            acc0.add(acc1).intoArray(lanes, p * L);
        }
    }

    /** Each row's two accumulators, added, into {@code lanes[p*L ..]}. */
    private static void dotRowProducts(float[] q, int qOff, float[] rows, int count, int n, float[] lanes) {
        for (int p = 0; p < count; p++) {
            int rOff = p * n;
            FloatVector acc0 = FloatVector.zero(F);
            FloatVector acc1 = FloatVector.zero(F);
            int i = 0;
            for (int bound = n - 2 * L; i <= bound; i += 2 * L) {
                acc0 = FloatVector.fromArray(F, q, qOff + i).fma(FloatVector.fromArray(F, rows, rOff + i), acc0);
                acc1 = FloatVector.fromArray(F, q, qOff + i + L).fma(FloatVector.fromArray(F, rows, rOff + i + L), acc1);
            }
            for (int bound = n - L; i <= bound; i += L) {
                acc0 = FloatVector.fromArray(F, q, qOff + i).fma(FloatVector.fromArray(F, rows, rOff + i), acc0);
            }
            acc0.add(acc1).intoArray(lanes, p * L);
        }
    }

    /** The rows' lane sums (and the elements past the last whole vector), scaled, into {@code out}. */
    private static void foldRows(float[] q, int qOff, float[] rows, int count, int n, int vectorEnd, float scale,
                                 float[] out, int outOff, float[] lanes) {
        if (L == 16 && count <= L) {
            // rows past count hold stale lanes: each output lane only ever adds lanes of its own row
            for (int i = 0; i < 8; i++) {
                FloatVector a = FloatVector.fromArray(F, lanes, 2 * i * L);
                FloatVector b = FloatVector.fromArray(F, lanes, (2 * i + 1) * L);
                a.add(a.rearrange(ROTATE_8)).blend(b.rearrange(ROTATE_8).add(b), UPPER_8).intoArray(lanes, i * L);
            }
            for (int i = 0; i < 4; i++) {
                FloatVector a = FloatVector.fromArray(F, lanes, 2 * i * L);
                FloatVector b = FloatVector.fromArray(F, lanes, (2 * i + 1) * L);
                a.add(a.rearrange(ROTATE_4)).blend(b.rearrange(ROTATE_4).add(b), UPPER_4).intoArray(lanes, i * L);
            }
            for (int i = 0; i < 2; i++) {
                FloatVector a = FloatVector.fromArray(F, lanes, 2 * i * L);
                FloatVector b = FloatVector.fromArray(F, lanes, (2 * i + 1) * L);
                a.add(a.rearrange(ROTATE_2)).blend(b.rearrange(ROTATE_2).add(b), UPPER_2).intoArray(lanes, i * L);
            }
            FloatVector a = FloatVector.fromArray(F, lanes, 0);
            FloatVector b = FloatVector.fromArray(F, lanes, L);
            a.add(a.rearrange(ROTATE_1)).blend(b.rearrange(ROTATE_1).add(b), UPPER_1).intoArray(lanes, 0);
            for (int p = 0; p < count; p++) {
                // row p's sum went through blends that keep it in the lanes of p's bits, reversed
                float sum = lanes[Integer.reverse(p) >>> 28];
                for (int i = vectorEnd; i < n; i++) {
                    sum = Math.fma(q[qOff + i], rows[p * n + i], sum);
                }
                out[outOff + p] = sum * scale;
            }
            return;
        }
        for (int p = 0; p < count; p++) {
            float sum = 0f;
            for (int lane = 0; lane < L; lane++) {
                sum += lanes[p * L + lane];
            }
            for (int i = vectorEnd; i < n; i++) {
                sum = Math.fma(q[qOff + i], rows[p * n + i], sum);
            }
            out[outOff + p] = sum * scale;
        }
    }

    /**
     * {@code axpy(w[wOff+p], rows, p*n, y, yOff, n)} for {@code p = 0 .. count-1} in turn, with the same
     * results, but each slice of {@code y} stays in a register across the rows.
     */
    static void axpyRows(float[] w, int wOff, float[] rows, int count, int n, float[] y, int yOff) {
        if ((L == 16 || L == 8) && n == HEAD_128) {
            for (int col = 0; col < HEAD_128; col += 8 * L) {
                axpyRowsEight(w, wOff, rows, count, y, yOff, col);
            }
            return;
        }
        int i = 0;
        for (int bound = n - L; i <= bound; i += L) {
            FloatVector acc = FloatVector.fromArray(F, y, yOff + i);
            for (int p = 0; p < count; p++) {
                acc = FloatVector.fromArray(F, rows, p * n + i).fma(FloatVector.broadcast(F, w[wOff + p]), acc);
            }
            acc.intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            float acc = y[yOff + i];
            for (int p = 0; p < count; p++) {
                acc = Math.fma(w[wOff + p], rows[p * n + i], acc);
            }
            y[yOff + i] = acc;
        }
    }

    /**
     * {@link #axpyRows} for elements {@code col .. col + 8L - 1} of 128-element rows with that slice of {@code y} in eight
     * registers across the rows, the same operations: all 128 with 16 lanes, half of them with 8 (AVX2), where the loop
     * above ran one accumulator per vector through every row, a chain of multiply-adds each waiting on the one before.
     */
    private static void axpyRowsEight(float[] w, int wOff, float[] rows, int count, float[] y, int yBase, int col) {
        int yOff = yBase + col;
        FloatVector y0 = FloatVector.fromArray(F, y, yOff);
        FloatVector y1 = FloatVector.fromArray(F, y, yOff + L);
        FloatVector y2 = FloatVector.fromArray(F, y, yOff + 2 * L);
        FloatVector y3 = FloatVector.fromArray(F, y, yOff + 3 * L);
        FloatVector y4 = FloatVector.fromArray(F, y, yOff + 4 * L);
        FloatVector y5 = FloatVector.fromArray(F, y, yOff + 5 * L);
        FloatVector y6 = FloatVector.fromArray(F, y, yOff + 6 * L);
        FloatVector y7 = FloatVector.fromArray(F, y, yOff + 7 * L);
        for (int p = 0; p < count; p++) {
            int r = p * HEAD_128 + col;
            FloatVector wp = FloatVector.broadcast(F, w[wOff + p]);
            y0 = FloatVector.fromArray(F, rows, r).fma(wp, y0);
            y1 = FloatVector.fromArray(F, rows, r + L).fma(wp, y1);
            y2 = FloatVector.fromArray(F, rows, r + 2 * L).fma(wp, y2);
            y3 = FloatVector.fromArray(F, rows, r + 3 * L).fma(wp, y3);
            y4 = FloatVector.fromArray(F, rows, r + 4 * L).fma(wp, y4);
            y5 = FloatVector.fromArray(F, rows, r + 5 * L).fma(wp, y5);
            y6 = FloatVector.fromArray(F, rows, r + 6 * L).fma(wp, y6);
            y7 = FloatVector.fromArray(F, rows, r + 7 * L).fma(wp, y7);
        }
        y0.intoArray(y, yOff);
        y1.intoArray(y, yOff + L);
        y2.intoArray(y, yOff + 2 * L);
        y3.intoArray(y, yOff + 3 * L);
        y4.intoArray(y, yOff + 4 * L);
        y5.intoArray(y, yOff + 5 * L);
        y6.intoArray(y, yOff + 6 * L);
        y7.intoArray(y, yOff + 7 * L);
    }

    /** {@code y[yOff+i] += alpha * x[xOff+i]}. */
    static void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        FloatVector va = FloatVector.broadcast(F, alpha);
        for (int bound = n - L; i <= bound; i += L) {
            FloatVector.fromArray(F, x, xOff + i).fma(va, FloatVector.fromArray(F, y, yOff + i))
                    .intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] = Math.fma(alpha, x[xOff + i], y[yOff + i]);
        }
    }

    /** {@code y[yOff+i] += x[xOff+i]}. */
    static void add(float[] x, int xOff, float[] y, int yOff, int n) {
        int i = 0;
        for (int bound = n - L; i <= bound; i += L) {
            FloatVector.fromArray(F, x, xOff + i).add(FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] += x[xOff + i];
        }
    }

    // exp(t) = 2^(n-1) * 2e^r with n = round(t / ln 2), r = t - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two parts, so
    // that n ln 2 is exact), e^r by its Taylor polynomial to degree 7 (truncation under 1e-8 relative, below float
    // rounding). 2^(n-1) rather than 2^n keeps exp(88.72) finite; above it exp is infinite (SiLU of a very negative x
    // is then -0, as x / (1 + exp(-x)) gives in float). Below -86.6, where 2^(n-1) would not be a normal float, exp
    // is 0 (the true values are under 2.4e-38).
    private static final float EXP_MIN = -86.6f;
    private static final float EXP_MAX = 88.72f;
    private static final float LOG2_E = 1.44269504f;
    private static final float LN2_HIGH = 0.693145751953125f;
    private static final float LN2_LOW = 1.428606765330187e-06f;
    /** Adding and subtracting 1.5 * 2^23 rounds a float of magnitude under 2^22 to the nearest integer. */
    private static final float ROUNDER = 12582912f;
    private static final float C2 = 1f / 2;
    private static final float C3 = 1f / 6;
    private static final float C4 = 1f / 24;
    private static final float C5 = 1f / 120;
    private static final float C6 = 1f / 720;
    private static final float C7 = 1f / 5040;
    // vector operands rather than scalars: C2 does not intrinsify the scalar-count shift (the Java fallback ran)
    private static final IntVector EXP_BIAS = IntVector.broadcast(VectorSpecies.of(int.class, F.vectorShape()), 126);
    private static final IntVector EXP_SHIFT = IntVector.broadcast(VectorSpecies.of(int.class, F.vectorShape()), 23);

    /**
     * {@code dst[dstAt + k] = exp(src[srcAt + k] * scale - shift)} for the {@code L} lanes from there, each lane as
     * {@link #exp(float)} gives it, bit for bit ({@code * 1} and {@code * -1} are exact). Only IEEE adds, multiplies,
     * fused multiply-adds, comparisons and bit moves: the same in the interpreter and in compiled code, so a value does
     * not depend on whether it lands in a vector or in a scalar tail. No vector crosses the method's boundary: taking
     * a {@code FloatVector}, the method compiled on its own (as softmax's early calls over short contexts left it) ran
     * the Vector API's Java fallback for its masked blends and scalar operands, allocating on every call (JFR: prompts
     * of the Q4_K_M file allocated 1.51 MiB a token in three runs of four, in softmax's exponentials).
     */
    static void expLanes(float[] src, int srcAt, float scale, float shift, float[] dst, int dstAt) {
        FloatVector x = FloatVector.fromArray(F, src, srcAt).mul(scale).sub(shift);
        FloatVector t = x.max(EXP_MIN).min(EXP_MAX);
        FloatVector n = t.mul(LOG2_E).add(ROUNDER).sub(ROUNDER);
        FloatVector r = n.fma(FloatVector.broadcast(F, -LN2_HIGH), t);
        r = n.fma(FloatVector.broadcast(F, -LN2_LOW), r);
        FloatVector p = r.fma(C7, C6);
        p = p.fma(r, FloatVector.broadcast(F, C5));
        p = p.fma(r, FloatVector.broadcast(F, C4));
        p = p.fma(r, FloatVector.broadcast(F, C3));
        p = p.fma(r, FloatVector.broadcast(F, C2));
        p = p.fma(r, FloatVector.broadcast(F, 1f));
        p = p.fma(r, FloatVector.broadcast(F, 1f));
        FloatVector half = ((IntVector) n.convert(VectorOperators.F2I, 0)).add(EXP_BIAS)
                .lanewise(VectorOperators.LSHL, EXP_SHIFT).reinterpretAsFloats();
        p.mul(2f).mul(half)
                .blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, EXP_MAX))
                .blend(0f, x.compare(VectorOperators.LT, EXP_MIN))
                .intoArray(dst, dstAt);
    }

    /** {@link #siluMul}'s exponentials of one vector: {@code L} floats a thread. */
    private static final ThreadLocal<float[]> EXP_LANES = ThreadLocal.withInitial(() -> new float[L]);

    /** e^t within about one float rounding for {@code t} in [-86.6, 88.72]; infinity above, 0 below, NaN for NaN. */
    static float exp(float t) {
        if (t > EXP_MAX) {
            return Float.POSITIVE_INFINITY;
        }
        if (t < EXP_MIN) {
            return 0f;
        }
        t = Math.min(Math.max(t, EXP_MIN), EXP_MAX);
        float n = t * LOG2_E + ROUNDER - ROUNDER;
        float r = Math.fma(n, -LN2_HIGH, t);
        r = Math.fma(n, -LN2_LOW, r);
        float p = Math.fma(r, C7, C6);
        p = Math.fma(p, r, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        p = Math.fma(p, r, 1f);
        p = Math.fma(p, r, 1f);
        return p * 2f * Float.intBitsToFloat(((int) n + 126) << 23);
    }

    /**
     * {@code g[i] = silu(g[i]) * u[i]} for {@code from <= i < to}, {@code silu(x) = x / (1 + exp(-x))} with
     * {@link #expLanes}, a vector at a time, the tail with the scalar form (same bits). ggml's own SiLU is vectorized the
     * same way; {@code Math.exp} per element cost about 6% of a decoding step.
     */
    static void siluMul(float[] g, float[] u, int from, int to) {
        int i = from;
        float[] e = EXP_LANES.get();
        for (int bound = to - L; i <= bound; i += L) {
            expLanes(g, i, -1f, 0f, e, 0);
            FloatVector.fromArray(F, g, i).div(FloatVector.fromArray(F, e, 0).add(1f))
                    .mul(FloatVector.fromArray(F, u, i)).intoArray(g, i);
        }
        for (; i < to; i++) {
            g[i] = silu(g[i]) * u[i];
        }
    }

    /**
     * In-place softmax of {@code v[off .. off+len)} as ggml computes it, f32 exponentials ({@link #expLanes}, a vector at a
     * time) summed in f64 first to last, scaled by the f32 reciprocal of the sum.
     */
    static void softmax(float[] v, int off, int len) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) {
            max = Math.max(max, v[off + i]);
        }
        int i = len >= L ? expShifted(v, off, len, max) : 0;
        for (; i < len; i++) {
            v[off + i] = exp(v[off + i] - max);
        }
        double sum = 0;
        for (int k = 0; k < len; k++) {
            sum += v[off + k];
        }
        float inv = (float) (1.0 / sum);
        for (int k = 0; k < len; k++) {
            v[off + k] *= inv;
        }
    }

    /**
     * {@code v[off + i] = exp(v[off + i] - shift)} for whole vectors of the first {@code len} (at least one vector),
     * returning where the scalar tail starts.
     */
    private static int expShifted(float[] v, int off, int len, float shift) {
        int i = 0;
        for (int bound = len - L; i <= bound; i += L) {
            expLanes(v, off + i, 1f, shift, v, off + i);
        }
        return i;
    }

    /** SiLU of one element with {@link #siluMul}'s operations. */
    static float silu(float x) {
        return x / (exp(-x) + 1f);
    }
}
