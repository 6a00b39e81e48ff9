package moe4j.kernels.cpu;

import jdk.incubator.vector.FloatVector;
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

    /** SiLU as ggml's scalar path computes it. */
    static float silu(float x) {
        return x / (1.0f + (float) Math.exp(-x));
    }
}
