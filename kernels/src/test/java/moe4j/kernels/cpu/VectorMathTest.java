package moe4j.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

/** The polynomial exponential and the vectorized SiLU: accuracy against double precision, and lanes equal to the scalar form. */
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
}
