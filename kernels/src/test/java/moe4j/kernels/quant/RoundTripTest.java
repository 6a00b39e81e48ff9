package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import moe4j.gguf.GgmlType;

/** Quantize then dequantize: the error stays within what each format's resolution allows. */
class RoundTripTest {

    private static float[] gaussianRow(long seed, int n) {
        SplittableRandom rnd = new SplittableRandom(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextGaussian() * 0.05);
        }
        return x;
    }

    private static float[] roundTrip(GgmlType type, float[] x) {
        QuantFormat format = QuantFormats.of(type);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment q = arena.allocate(type.bytesFor(x.length));
            format.quantize(x, 0, x.length, q, 0);
            float[] y = new float[x.length];
            format.dequantize(q, 0, y, 0, x.length);
            return y;
        }
    }

    /**
     * Relative RMS error of gaussian weights. Bounds sit about 15% above what these bit-exact ports of
     * the reference quantizers give on this row (Q8_0 0.0054, Q6_K 0.018, Q5_K 0.036, Q4_K 0.071,
     * Q4_0 0.086, Q3_K 0.151); Q8_0's matches uniform rounding theory, step/sqrt(12) = 0.0048.
     */
    @ParameterizedTest
    @CsvSource({"Q8_0, 0.0062", "Q6_K, 0.0205", "Q5_K, 0.0415", "Q4_K, 0.082", "Q4_0, 0.099", "Q3_K, 0.174"})
    void relativeRmsErrorIsWithinTheFormatsResolution(GgmlType type, double bound) {
        float[] x = gaussianRow(7, 256 * 64);
        float[] y = roundTrip(type, x);
        double err = 0;
        double ref = 0;
        for (int i = 0; i < x.length; i++) {
            err += (double) (x[i] - y[i]) * (x[i] - y[i]);
            ref += (double) x[i] * x[i];
        }
        double relRms = Math.sqrt(err / ref);
        assertTrue(relRms < bound, type + " relative RMS error " + relRms + " exceeds " + bound);
        assertTrue(relRms > bound / 4, type + " relative RMS error " + relRms + " is implausibly small for the format");
    }

    /** Q8_0 rounds each element to the nearest of 255 levels of the block scale d: |error| <= d/2 (+ fp16 rounding of d). */
    @Test
    void q8_0ErrorIsAtMostHalfAStepPerElement() {
        float[] x = gaussianRow(11, 32 * 200);
        float[] y = roundTrip(GgmlType.Q8_0, x);
        for (int b = 0; b < x.length / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]));
            double step = amax / 127.0;
            for (int j = 0; j < 32; j++) {
                int i = 32 * b + j;
                double bound = step * (0.5 + 127 * Math.scalb(1.0, -11));
                assertTrue(Math.abs(x[i] - y[i]) <= bound, "block " + b + " element " + j + ": " + x[i] + " -> " + y[i]);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"F16, 11", "BF16, 8"})
    void halfFormatsRoundToNearestWithinHalfAnUlp(GgmlType type, int mantissaBits) {
        float[] x = gaussianRow(3, 4096);
        float[] y = roundTrip(type, x);
        for (int i = 0; i < x.length; i++) {
            // relative bound holds for normal results; tiny inputs (F16 subnormals) get the absolute one
            double bound = Math.max(Math.abs(x[i]) * Math.scalb(1.0, -mantissaBits), Math.scalb(1.0, -25));
            assertTrue(Math.abs(x[i] - y[i]) <= bound, type + " element " + i + ": " + x[i] + " -> " + y[i]);
        }
    }

    @Test
    void f32RoundTripIsExact() {
        float[] x = gaussianRow(5, 1000);
        x[0] = Float.NaN;
        x[1] = Float.NEGATIVE_INFINITY;
        x[2] = -0.0f;
        float[] y = roundTrip(GgmlType.F32, x);
        for (int i = 0; i < x.length; i++) {
            assertEquals(Float.floatToRawIntBits(x[i]), Float.floatToRawIntBits(y[i]));
        }
    }

    @ParameterizedTest
    @CsvSource({"Q8_0", "Q4_0", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
    void zerosStayZero(GgmlType type) {
        float[] y = roundTrip(type, new float[type.blockSize() * 2]);
        for (float v : y) {
            assertEquals(0f, v, 0f);
        }
    }
}
