package moe4j.kernels.cpu;

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

    /** {@code sum_i a[aOff+i] * b[bOff+i]} for {@code i < n}. */
    static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = FloatVector.zero(F);
        int i = 0;
        for (int bound = n - 2 * L; i <= bound; i += 2 * L) {
            acc0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc0);
            acc1 = FloatVector.fromArray(F, a, aOff + i + L).fma(FloatVector.fromArray(F, b, bOff + i + L), acc1);
        }
        for (int bound = n - L; i <= bound; i += L) {
            acc0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc0);
        }
        float sum = sumLanes(acc0.add(acc1));
        for (; i < n; i++) {
            sum = Math.fma(a[aOff + i], b[bOff + i], sum);
        }
        return sum;
    }

    /**
     * {@code out[outOff+p] = dot(q, qOff, rows, p*n, n) * scale} for {@code p < count}, each summed exactly as
     * {@link #dot} sums it. The lane sums go through {@code lanes} (at least {@code count * LANES} floats):
     * scalar reads of a stored vector cost far less than extracting lanes one by one.
     */
    static void dotRows(float[] q, int qOff, float[] rows, int count, int n, float scale,
                        float[] out, int outOff, float[] lanes) {
        int vectorEnd = n - n % L;
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
     * Adds the lanes first to last. {@code reduceLanes(ADD)} leaves the order open, and the interpreted
     * and compiled forms of it really do differ, which would make results depend on JIT warm-up.
     */
    private static float sumLanes(FloatVector v) {
        float sum = 0f;
        for (int lane = 0; lane < L; lane++) {
            sum += v.lane(lane);
        }
        return sum;
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
     * {@link #exp} on every lane. Only IEEE adds, multiplies, fused multiply-adds, comparisons and bit moves: the same
     * in the interpreter and in compiled code, and {@link #exp} gives each lane's result bit for bit, so a value does
     * not depend on whether it lands in a vector or in a scalar tail.
     */
    static FloatVector exp(FloatVector x) {
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
        return p.mul(2f).mul(half)
                .blend(Float.POSITIVE_INFINITY, x.compare(VectorOperators.GT, EXP_MAX))
                .blend(0f, x.compare(VectorOperators.LT, EXP_MIN));
    }

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
     * {@link #exp}, 16 lanes at a time, the tail with the scalar form (same bits). ggml's own SiLU is vectorized the
     * same way; {@code Math.exp} per element cost about 6% of a decoding step.
     */
    static void siluMul(float[] g, float[] u, int from, int to) {
        int i = from;
        for (int bound = to - L; i <= bound; i += L) {
            FloatVector x = FloatVector.fromArray(F, g, i);
            x.div(exp(x.neg()).add(1f)).mul(FloatVector.fromArray(F, u, i)).intoArray(g, i);
        }
        for (; i < to; i++) {
            g[i] = silu(g[i]) * u[i];
        }
    }

    /**
     * In-place softmax of {@code v[off .. off+len)} as ggml computes it, f32 exponentials ({@link #exp}, 16 lanes at a
     * time) summed in f64 first to last, scaled by the f32 reciprocal of the sum.
     */
    static void softmax(float[] v, int off, int len) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) {
            max = Math.max(max, v[off + i]);
        }
        int i = 0;
        for (int bound = len - L; i <= bound; i += L) {
            exp(FloatVector.fromArray(F, v, off + i).sub(max)).intoArray(v, off + i);
        }
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

    /** SiLU of one element with {@link #siluMul}'s operations. */
    static float silu(float x) {
        return x / (exp(-x) + 1f);
    }
}
