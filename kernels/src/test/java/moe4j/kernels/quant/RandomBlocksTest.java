package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;

class RandomBlocksTest {

    static Set<GgmlType> supportedTypes() { return QuantFormats.supported(); }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void randomBlocksDequantizeToFiniteVariedValues(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        int blocks = 4096 / type.blockSize() * 8;
        int count = blocks * type.blockSize();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + 3);
            format.randomBlocks(new SplittableRandom(1), data, 3, blocks);
            float[] values = new float[count];
            format.dequantize(data, 3, values, 0, count);
            double sumSquares = 0;
            float maxAbs = 0;
            for (int i = 0; i < count; i++) {
                if (!Float.isFinite(values[i])) {
                    fail(type + " element " + i + " is " + values[i]);
                }
                sumSquares += (double) values[i] * values[i];
                maxAbs = Math.max(maxAbs, Math.abs(values[i]));
            }
            double rms = Math.sqrt(sumSquares / count);
            assertTrue(rms > 1e-4 && maxAbs < 100, type + ": rms " + rms + ", max |x| " + maxAbs);
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void scalarDequantizationGivesTheVectorsBitsExactly(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        int blocks = 4096 / type.blockSize() * 4 + 1;  // a tail past the vector loops' steps where they have one
        int count = blocks * type.blockSize();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + 5);
            format.randomBlocks(new SplittableRandom(type.ordinal()), data, 5, blocks);
            float[] vectors = new float[count + 2];
            float[] scalar = new float[count + 2];
            format.dequantize(data, 5, vectors, 1, count);
            format.dequantizeScalar(data, 5, scalar, 1, count);
            for (int i = 0; i < count + 2; i++) {
                if (Float.floatToRawIntBits(vectors[i]) != Float.floatToRawIntBits(scalar[i])) {
                    fail(type + " element " + i + ": " + vectors[i] + " with vectors, " + scalar[i] + " without");
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void randomBlocksAreReproducibleFromTheSeedAndStayInRange(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        try (Arena arena = Arena.ofConfined()) {
            long bytes = 5L * type.blockBytes();
            MemorySegment a = arena.allocate(bytes + 2);
            MemorySegment b = arena.allocate(bytes + 2);
            a.fill((byte) 0x77);
            RandomGenerator seeded1 = new SplittableRandom(42);
            RandomGenerator seeded2 = new SplittableRandom(42);
            format.randomBlocks(seeded1, a, 1, 5);
            format.randomBlocks(seeded2, b, 1, 5);
            assertEquals(-1, a.asSlice(1, bytes).mismatch(b.asSlice(1, bytes)));
            assertEquals((byte) 0x77, a.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals((byte) 0x77, a.get(ValueLayout.JAVA_BYTE, bytes + 1));
        }
    }
}
