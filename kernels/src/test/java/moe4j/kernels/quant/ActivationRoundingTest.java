package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.Random;

import org.junit.jupiter.api.Test;

class ActivationRoundingTest {

    private final Random random = new Random(7);

    private float[] gaussian(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) random.nextGaussian();
        }
        return v;
    }

    @Test
    void aQ8KBlockHoldingNaNRoundsToNaNAndLeavesItsNeighboursAlone() {
        float[] x = gaussian(3 * 256);
        float[] alone = new float[256];
        ActivationRounding.Q8_K.round(x, 512, alone, 0, 256);
        x[256 + 17] = Float.NaN;
        float[] r = new float[x.length];
        ActivationRounding.Q8_K.round(x, 0, r, 0, x.length);
        for (int i = 256; i < 512; i++) {
            assertTrue(Float.isNaN(r[i]), "value " + i + " of the block with NaN: " + r[i]);
        }
        for (int i = 0; i < 256; i++) {
            assertTrue(Float.isFinite(r[i]), "value " + i + " of the block before: " + r[i]);
        }
        assertArrayEquals(alone, Arrays.copyOfRange(r, 512, 768), "the block after, as rounded on its own");
    }

    @Test
    void aQ8KBlockRoundsToMultiplesOfItsScaleWithTheLargestMagnitudeExact() {
        float[] x = gaussian(256);
        x[100] = -5f;  // the largest magnitude, negative
        float[] r = new float[256];
        ActivationRounding.Q8_K.round(x, 0, r, 0, 256);
        assertEquals(-5f, r[100], 1e-6f);
        float d = 5f / 127;
        for (int i = 0; i < 256; i++) {
            float q = r[i] / d;
            assertEquals(Math.round(q), q, 1e-3f, "value " + i + " is a multiple of the block's scale");
            assertTrue(Math.abs(r[i] - x[i]) <= d / 2 * 1.0001f, "value " + i + " within half a step");
        }
        float[] zeros = new float[256];
        ActivationRounding.Q8_K.round(new float[256], 0, r, 0, 256);
        assertArrayEquals(zeros, r, "an all-zero block");
    }

    @Test
    void theCodesOfQ8KBlocksTimesTheirScalesAreTheRoundedValues() {
        float[] x = gaussian(5 * 256);
        Arrays.fill(x, 256, 512, 0f);      // an all-zero block
        x[512 + 3] = Float.NaN;            // a block holding NaN
        x[768 + 40] = 9f;                  // the largest magnitude of its block, positive: its code is -127
        Coded coded = roundToCodes(ActivationRounding.Q8_K, x);
        float[] values = coded.values();
        int[] codes = coded.codes();
        float[] scales = coded.scales();
        assertEquals(0f, scales[2], "the all-zero block's scale");
        assertTrue(Float.isNaN(scales[3]), "the NaN block's scale: " + scales[3]);
        assertEquals(-127, codes[1 + 768 + 40]);
        for (int i = 0; i < x.length; i++) {
            int code = codes[1 + i];
            assertTrue(code >= -127 && code <= 127, "code " + i + ": " + code);
            if (i / 256 != 2) {
                assertEquals(values[i], scales[1 + i / 256] * code, "value " + i + " = scale * code");
            }
        }
    }

    /** Values, codes (from index 1) and block scales (from index 1) of {@code x}, its values checked against {@code round}. */
    private record Coded(float[] values, int[] codes, float[] scales) {}

    private static Coded roundToCodes(ActivationRounding rounding, float[] x) {
        float[] rounded = new float[x.length];
        rounding.round(x, 0, rounded, 0, x.length);
        Coded coded = new Coded(new float[x.length], new int[x.length + 1], new float[x.length / rounding.blockSize() + 1]);
        rounding.roundToCodes(x, 0, coded.values(), 0, x.length, coded.codes(), 1, coded.scales(), 1);
        assertArrayEquals(rounded, coded.values(), "the same values as round()");
        return coded;
    }

    @Test
    void theCodesOfQ8_0BlocksTimesTheirScalesAreTheRoundedValues() {
        float[] x = gaussian(6 * 32);
        Arrays.fill(x, 32, 64, 0f);                 // an all-zero block
        x[64 + 3] = Float.NaN;                      // a block holding NaN
        x[96 + 5] = Float.NEGATIVE_INFINITY;        // a block holding an infinity
        x[128 + 7] = -9f;                           // the largest magnitude of its block, negative: its code is -127
        Coded coded = roundToCodes(ActivationRounding.Q8_0, x);
        float[] values = coded.values();
        int[] codes = coded.codes();
        float[] scales = coded.scales();
        assertEquals(0f, scales[2], "the all-zero block's scale");
        assertTrue(Float.isNaN(scales[3]), "the NaN block's scale: " + scales[3]);
        assertTrue(Float.isInfinite(scales[4]), "the infinite block's scale: " + scales[4]);
        assertEquals(-127, codes[1 + 128 + 7]);
        for (int i = 0; i < x.length; i++) {
            int code = codes[1 + i];
            if (i / 32 == 2 || i / 32 == 3) {
                assertEquals(0, code, "a code of a block that is not finite, " + i);
                continue;
            }
            assertTrue(code >= -127 && code <= 127, "code " + i + ": " + code);
            assertEquals(values[i], scales[1 + i / 32] * code, "value " + i + " = scale * code");
        }
    }

    @Test
    void aQ8KBlockTooSmallForAFiniteInverseScaleRoundsToZerosWithCodesInRange() {
        float[] x = gaussian(256);
        for (int i = 0; i < 256; i++) {
            x[i] *= 1e-38f;  // -127 / max overflows to -infinity
        }
        float[] values = new float[256];
        int[] codes = new int[256];
        float[] scales = new float[1];
        ActivationRounding.Q8_K.roundToCodes(x, 0, values, 0, 256, codes, 0, scales, 0);
        assertEquals(0f, scales[0]);
        assertArrayEquals(new float[256], values);
        assertArrayEquals(new int[256], codes);
    }
}
