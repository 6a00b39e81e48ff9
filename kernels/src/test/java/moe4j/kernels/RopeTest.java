package moe4j.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class RopeTest {

    @Test
    void plainAnglesFollowTheFrequencyBase() {
        Rope rope = Rope.plain(128, Rope.Style.NEOX, 1_000_000f);
        float[] cos = new float[64];
        float[] sin = new float[64];
        rope.angles(37, cos, sin);
        for (int j = 0; j < 64; j++) {
            double theta = 37 * Math.pow(1_000_000, -2.0 * j / 128);
            assertEquals(Math.cos(theta), cos[j], 2e-5, "cos pair " + j);
            assertEquals(Math.sin(theta), sin[j], 2e-5, "sin pair " + j);
        }
    }

    @Test
    void linearScalingDividesThePosition() {
        Rope scaled = new Rope(64, Rope.Style.NEOX, 10000f, 0.25f, 0f, 1f, 32f, 1f, 0);
        Rope plain = Rope.plain(64, Rope.Style.NEOX, 10000f);
        float[] c1 = new float[32];
        float[] s1 = new float[32];
        float[] c2 = new float[32];
        float[] s2 = new float[32];
        scaled.angles(40, c1, s1);
        plain.angles(10, c2, s2);
        assertArrayEquals(c2, c1, 1e-5f);
        assertArrayEquals(s2, s1, 1e-5f);
    }

    /** YaRN from its definition, in double. */
    @Test
    void yarnBlendsInterpolationAndExtrapolationAndScalesTheMagnitude() {
        int d = 128;
        double base = 1_000_000;
        double factor = 4;
        int orig = 32768;
        Rope rope = new Rope(d, Rope.Style.NEOX, (float) base, (float) (1 / factor), 1f, 1f, 32f, 1f, orig);
        float[] cos = new float[d / 2];
        float[] sin = new float[d / 2];
        int pos = 1000;
        rope.angles(pos, cos, sin);
        double low = Math.max(0, Math.floor(corrDim(d, orig, 32, base)));
        double high = Math.min(d - 1, Math.ceil(corrDim(d, orig, 1, base)));
        double mscale = 1 + 0.1 * Math.log(factor);
        for (int j = 0; j < d / 2; j++) {
            double extrap = pos * Math.pow(base, -2.0 * j / d);
            double interp = extrap / factor;
            double ramp = 1 - Math.min(1, Math.max(0, (j - low) / Math.max(0.001, high - low)));
            double theta = interp * (1 - ramp) + extrap * ramp;
            assertEquals(Math.cos(theta) * mscale, cos[j], 1e-4, "cos pair " + j);
            assertEquals(Math.sin(theta) * mscale, sin[j], 1e-4, "sin pair " + j);
        }
    }

    private static double corrDim(int d, int orig, double beta, double base) {
        return d * Math.log(orig / (beta * 2 * Math.PI)) / (2 * Math.log(base));
    }

    @Test
    void normalStyleRotatesAdjacentPairs() {
        Rope rope = Rope.plain(4, Rope.Style.NORMAL, 10000f);
        float[] cos = new float[2];
        float[] sin = new float[2];
        rope.angles(1, cos, sin);
        float[] x = {1, 0, 1, 0};
        rope.rotate(x, 0, cos, sin);
        assertEquals(Math.cos(1), x[0], 1e-6);
        assertEquals(Math.sin(1), x[1], 1e-6);
        assertEquals(Math.cos(0.01), x[2], 1e-6);
        assertEquals(Math.sin(0.01), x[3], 1e-6);
    }

    @Test
    void rejectsOddDimensions() {
        assertThrows(IllegalArgumentException.class, () -> Rope.plain(7, Rope.Style.NEOX, 10000f));
    }
}
