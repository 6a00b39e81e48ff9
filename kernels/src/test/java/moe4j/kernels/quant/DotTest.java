package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Set;
import java.util.SplittableRandom;

import jdk.incubator.vector.FloatVector;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;

/**
 * Fused dot products against the double-precision dot of the dequantized row, and the promise that
 * {@code dot}, {@code dotBatch} and the decode-then-dot paths ({@link DecodedDot}) agree bit for bit.
 *
 * <p>Error bound: weights are decoded exactly, so only the float32 sum rounds. Each element passes
 * through at most {@code k = count/(4L) + log2(4L) + L} roundings (a fused multiply-add chain in one of
 * four L-lane accumulators, the pairwise combination, then the scalar tail), giving
 * {@code |dot - exact| <= (k + 1) * 2^-24 * sum |w_i x_i|}.
 */
class DotTest {

    private static final int L = FloatVector.SPECIES_PREFERRED.length();

    static Set<GgmlType> supportedTypes() { return QuantFormats.supported(); }

    /** Element counts: one block, a few (odd) blocks, a typical row, and for 1-element types lengths with a tail. */
    private static int[] lengths(GgmlType type) {
        int qk = type.blockSize();
        return qk == 1 ? new int[] {1, 15, 17, 63, 64, 65, 100, 1000, 4095, 4096, 5000, 9000}
                : new int[] {qk, 2 * qk, 3 * qk, 7 * qk, Math.max(4096, qk) + qk, 9216 / qk * qk, 20 * 256};
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void dotMatchesTheExactDotOfTheDequantizedRowWithinFloatRounding(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(type.id());
        try (Arena arena = Arena.ofConfined()) {
            for (int count : lengths(type)) {
                for (int srcShift : new int[] {0, 3}) {
                    for (int xOffset : new int[] {0, 5}) {
                        int blocks = count / type.blockSize();
                        MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + srcShift);
                        format.randomBlocks(rnd, data, srcShift, blocks);
                        float[] x = randomActivations(rnd, xOffset + count + 3);
                        float[] w = new float[count];
                        format.dequantize(data, srcShift, w, 0, count);
                        double exact = 0;
                        double magnitude = 0;
                        for (int i = 0; i < count; i++) {
                            exact += (double) w[i] * x[xOffset + i];
                            magnitude += Math.abs((double) w[i] * x[xOffset + i]);
                        }
                        double k = count / (4.0 * L) + 2 + Math.log(L) / Math.log(2) + L;
                        double bound = (k + 1) * 0x1p-24 * magnitude;
                        float dot = format.dot(data, srcShift, x, xOffset, count);
                        String what = type + " count " + count + " srcShift " + srcShift + " xOffset " + xOffset;
                        assertTrue(Math.abs(dot - exact) <= bound,
                                what + ": dot " + dot + " exact " + exact + " error " + Math.abs(dot - exact) + " bound " + bound);
                        assertTrue(magnitude > 0, what + ": degenerate test data");
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void fusedKernelSumsInTheCanonicalOrderOfTheDecodedPath(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(100 + type.id());
        try (Arena arena = Arena.ofConfined()) {
            for (int count : lengths(type)) {
                int blocks = count / type.blockSize();
                MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + 1);
                format.randomBlocks(rnd, data, 1, blocks);
                float[] x = randomActivations(rnd, count + 1);
                float fused = format.dot(data, 1, x, 1, count);
                float decoded = DecodedDot.dot(format, data, 1, x, 1, count);
                assertEquals(Float.floatToRawIntBits(decoded), Float.floatToRawIntBits(fused),
                        type + " count " + count + ": fused " + fused + " decoded " + decoded);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void dotBatchEqualsDotForEveryTokenBitForBit(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(200 + type.id());
        try (Arena arena = Arena.ofConfined()) {
            for (int count : lengths(type)) {
                for (int tokens : new int[] {1, 3, 6}) {
                    int blocks = count / type.blockSize();
                    MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + 2);
                    format.randomBlocks(rnd, data, 2, blocks);
                    int xStride = count + 7;
                    float[] x = randomActivations(rnd, 4 + tokens * xStride);
                    float[] out = new float[1 + 2 * tokens];
                    out[0] = 42;
                    format.dotBatch(data, 2, x, 4, xStride, tokens, out, 1, 2, count);
                    assertEquals(42f, out[0], "dotBatch wrote before its output offset");
                    float[] decodedOnce = new float[tokens];
                    DecodedDot.dotBatch(format, data, 2, x, 4, xStride, tokens, decodedOnce, 0, 1, count);
                    for (int t = 0; t < tokens; t++) {
                        float single = format.dot(data, 2, x, 4 + t * xStride, count);
                        assertEquals(Float.floatToRawIntBits(single), Float.floatToRawIntBits(out[1 + 2 * t]),
                                type + " count " + count + " token " + t + " of " + tokens);
                        assertEquals(Float.floatToRawIntBits(single), Float.floatToRawIntBits(decodedOnce[t]),
                                type + " count " + count + " token " + t + " of " + tokens + " (decode-once path)");
                        if (t + 1 < tokens) {
                            assertEquals(0f, out[2 + 2 * t], "dotBatch wrote between output strides");
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void badArgumentsAreRejectedWithClearMessages(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        int count = Math.max(type.blockSize(), 64);
        long bytes = type.bytesFor(count);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(bytes);
            format.randomBlocks(new SplittableRandom(1), data, 0, count / type.blockSize());
            float[] x = new float[count];
            if (type.blockSize() > 1) {
                IllegalArgumentException partial = assertThrows(IllegalArgumentException.class,
                        () -> format.dot(data, 0, x, 0, count - 1));
                assertTrue(partial.getMessage().contains("whole number"), partial.getMessage());
            }
            IndexOutOfBoundsException pastSegment = assertThrows(IndexOutOfBoundsException.class,
                    () -> format.dot(data, 1, x, 0, count));
            assertTrue(pastSegment.getMessage().contains("outside the segment"), pastSegment.getMessage());
            assertThrows(IndexOutOfBoundsException.class, () -> format.dot(data, 0, x, 1, count));
            float[] out = new float[2];
            IndexOutOfBoundsException shortX = assertThrows(IndexOutOfBoundsException.class,
                    () -> format.dotBatch(data, 0, x, 0, count, 2, out, 0, 1, count));
            assertTrue(shortX.getMessage().contains("activations"), shortX.getMessage());
            IndexOutOfBoundsException shortOut = assertThrows(IndexOutOfBoundsException.class,
                    () -> format.dotBatch(data, 0, new float[2 * count], 0, count, 2, out, 1, 1, count));
            assertTrue(shortOut.getMessage().contains("outputs"), shortOut.getMessage());
            assertThrows(IllegalArgumentException.class, () -> format.dotBatch(data, 0, x, 0, 0, -1, out, 0, 1, count));
        }
    }

    private static float[] randomActivations(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (2 * rnd.nextDouble() - 1);
        }
        return x;
    }
}
