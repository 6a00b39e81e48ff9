package moe4j.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

/**
 * The polynomial exponential, the vectorized SiLU and softmax: accuracy against double precision, and vector lanes
 * equal to the scalar form.
 */
class VectorMathTest {

    @Test
    void expIsWithinTwoRoundingsOfTheDoublePrecisionExponential() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (int i = 0; i < 200_000; i++) {
            float t = Math.min(88.72f, i < 1000 ? -86.6f + i * (88.72f + 86.6f) / 999 : (float) rnd.nextDouble(-86.6, 88.72));
            double exact = Math.exp(t);
            float e = VectorMath.exp(t);
            assertTrue(Math.abs(e - exact) <= 2 * Math.ulp((float) exact), "exp(" + t + ") = " + e + ", exact " + exact);
        }
        assertEquals(Float.POSITIVE_INFINITY, VectorMath.exp(88.73f), 0f);
        assertEquals(0f, VectorMath.exp(-86.7f), 0f);
        assertEquals(0f, VectorMath.exp(Float.NEGATIVE_INFINITY), 0f);
        assertTrue(Float.isNaN(VectorMath.exp(Float.NaN)));
        assertEquals(1f, VectorMath.exp(0f), 0f);
        assertEquals(1f, VectorMath.exp(-0f), 0f);
    }

    @Test
    void siluMulMatchesDoublePrecisionIncludingExtremes() {
        float[] special = {0f, -0f, 1e-30f, -1e-30f, 1f, -1f, 20f, -20f, 87.3f, -87.3f, 88.8f, -88.8f, 100f, -100f,
                Float.MAX_VALUE, -Float.MAX_VALUE, Float.POSITIVE_INFINITY};
        SplittableRandom rnd = new SplittableRandom(11);
        int n = 10_000 + special.length;
        float[] g = new float[n];
        float[] u = new float[n];
        for (int i = 0; i < n; i++) {
            g[i] = i < special.length ? special[i] : (float) rnd.nextDouble(-40, 40);
            u[i] = i < special.length ? 1f : (float) rnd.nextDouble(-3, 3);
        }
        float[] y = g.clone();
        VectorMath.siluMul(y, u, 0, n);
        for (int i = 0; i < n; i++) {
            double exact = g[i] / (1 + Math.exp(-(double) g[i])) * u[i];
            String what = "silu(" + g[i] + ") * " + u[i];
            // below -88.72, exp(-x) overflows float: SiLU is -0 there, as the float formula x / (1 + exp(-x)) gives
            if (Double.isInfinite(exact)) {
                assertEquals((float) exact, y[i], 0f, what);
            } else {
                assertTrue(Math.abs(y[i] - exact) <= 4 * Math.ulp((float) exact) + 1e-36, what + " = " + y[i]
                        + ", exact " + exact);
            }
        }
        float[] nan = {Float.NaN, Float.NEGATIVE_INFINITY};
        VectorMath.siluMul(nan, new float[] {1f, 1f}, 0, 2);
        assertTrue(Float.isNaN(nan[0]) && Float.isNaN(nan[1]), "NaN in, NaN out; -inf * 0 is NaN as in x / (1 + exp(-x))");
    }

    @Test
    void vectorLanesEqualTheScalarFormBitForBit() {
        SplittableRandom rnd = new SplittableRandom(3);
        int n = 16 * 37 + 5;
        float[] g = new float[n];
        float[] u = new float[n];
        for (int i = 0; i < n; i++) {
            g[i] = (float) rnd.nextDouble(-30, 30);
            u[i] = (float) rnd.nextDouble(-3, 3);
        }
        for (int from : new int[] {0, 3, 16}) {
            float[] y = g.clone();
            VectorMath.siluMul(y, u, from, n);
            for (int i = 0; i < n; i++) {
                float expected = i < from ? g[i] : VectorMath.silu(g[i]) * u[i];
                assertEquals(expected, y[i], 0f, "element " + i + " of a range from " + from);
            }
        }
    }

    @Test
    void expLanesEqualTheScalarFormIncludingSpecialValues() {
        SplittableRandom rnd = new SplittableRandom(5);
        float[] t = new float[16 * 64];
        for (int i = 0; i < t.length; i++) {
            t[i] = (float) rnd.nextDouble(-100, 100);
        }
        float[] special = {0f, -0f, -86.6f, -86.61f, 88.72f, 88.73f, Float.NaN, Float.POSITIVE_INFINITY,
                Float.NEGATIVE_INFINITY, Float.MAX_VALUE, -Float.MAX_VALUE, 1e-30f, -1e-30f, 0.34657f, -0.34657f, 1f};
        System.arraycopy(special, 0, t, 0, special.length);
        float[] lanes = new float[t.length];
        float[] negatedShifted = new float[t.length];
        for (int i = 0; i < t.length; i += VectorMath.LANES) {
            VectorMath.expLanes(t, i, 1f, 0f, lanes, i);
            VectorMath.expLanes(t, i, -1f, 2.5f, negatedShifted, i);
        }
        for (int i = 0; i < t.length; i++) {
            assertEquals(Float.floatToRawIntBits(VectorMath.exp(t[i])), Float.floatToRawIntBits(lanes[i]), "exp(" + t[i] + ")");
            float expected = VectorMath.exp(-t[i] - 2.5f);
            if (Float.isNaN(expected)) {
                // a product by -1 keeps a NaN's sign where a negation flips it
                assertTrue(Float.isNaN(negatedShifted[i]), "exp(-NaN - 2.5)");
            } else {
                assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(negatedShifted[i]),
                        "exp(-" + t[i] + " - 2.5)");
            }
        }
    }

    @Test
    void softmaxMatchesDoublePrecisionAndSumsToOne() {
        SplittableRandom rnd = new SplittableRandom(9);
        for (int len : new int[] {1, 7, 16, 37, 128, 1000}) {
            float[] v = new float[len + 3];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) rnd.nextDouble(-30, 30);
            }
            float[] in = v.clone();
            VectorMath.softmax(v, 3, len);
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < len; i++) {
                max = Math.max(max, in[3 + i]);
            }
            // the differences from the maximum are float subtractions, as in ggml
            double sum = 0;
            for (int i = 0; i < len; i++) {
                sum += Math.exp(in[3 + i] - max);
            }
            double total = 0;
            for (int i = 0; i < len; i++) {
                double exact = Math.exp(in[3 + i] - max) / sum;
                total += v[3 + i];
                assertTrue(Math.abs(v[3 + i] - exact) <= 4 * Math.ulp((float) exact) + 1e-37, "length " + len + " element "
                        + i + ": " + v[3 + i] + ", exact " + exact);
            }
            assertEquals(1.0, total, 1e-5, "length " + len);
            assertEquals(in[0], v[0], 0f, "outside the range");
        }
    }

    @Test
    void dotRowsMatchDoublePrecisionForEveryRowCountAndATail() {
        SplittableRandom rnd = new SplittableRandom(13);
        for (int n : new int[] {128, 40, 16}) {
            float[] q = new float[n + 5];
            float[] rows = new float[16 * n];
            for (int i = 0; i < q.length; i++) {
                q[i] = (float) rnd.nextGaussian();
            }
            for (int i = 0; i < rows.length; i++) {
                rows[i] = (float) rnd.nextGaussian();
            }
            float[] lanes = new float[16 * VectorMath.LANES];
            for (int count = 1; count <= 16; count++) {
                float[] out = new float[count + 2];
                VectorMath.dotRows(q, 5, rows, count, n, 0.5f, out, 1, lanes);
                for (int p = 0; p < count; p++) {
                    double exact = 0;
                    double magnitude = 0;
                    for (int i = 0; i < n; i++) {
                        exact += (double) q[5 + i] * rows[p * n + i];
                        magnitude += Math.abs((double) q[5 + i] * rows[p * n + i]);
                    }
                    assertEquals(exact * 0.5, out[1 + p], 1e-6 * magnitude, "n " + n + ", " + count + " rows, row " + p);
                }
                assertEquals(0f, out[0], 0f);
                assertEquals(0f, out[count + 1], 0f);
            }
        }
    }

    @Test
    void axpyRowsAreSequentialFusedMultiplyAddsPerElement() {
        SplittableRandom rnd = new SplittableRandom(17);
        for (int n : new int[] {128, 40}) {
            for (int count : new int[] {1, 5, 16}) {
                float[] w = new float[count + 2];
                float[] rows = new float[count * n];
                float[] y = new float[n + 3];
                for (int i = 0; i < w.length; i++) {
                    w[i] = (float) rnd.nextGaussian();
                }
                for (int i = 0; i < rows.length; i++) {
                    rows[i] = (float) rnd.nextGaussian();
                }
                for (int i = 0; i < y.length; i++) {
                    y[i] = (float) rnd.nextGaussian();
                }
                float[] expected = y.clone();
                for (int i = 0; i < n; i++) {
                    for (int p = 0; p < count; p++) {
                        expected[3 + i] = Math.fma(rows[p * n + i], w[2 + p], expected[3 + i]);
                    }
                }
                VectorMath.axpyRows(w, 2, rows, count, n, y, 3);
                for (int i = 0; i < y.length; i++) {
                    assertEquals(expected[i], y[i], 0f, "n " + n + ", " + count + " rows, element " + i);
                }
            }
        }
    }
}
