package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class ReadAheadTest {

    private static final long SIZE = 20_000;

    /** Byte {@code i} of the test segment. */
    private static int byteAt(long i) {
        return (int) (i % 7 + 1);
    }

    private static MemorySegment filled(Arena arena) {
        MemorySegment src = arena.allocate(SIZE);
        for (long i = 0; i < SIZE; i++) {
            src.set(ValueLayout.JAVA_BYTE, i, (byte) byteAt(i));
        }
        return src;
    }

    /** The sum of the bytes at every 64th offset of {@code [from, from + bytes)}. */
    private static int linesFrom(long from, long bytes) {
        int sum = 0;
        for (long o = 0; o < bytes; o += 64) {
            sum += byteAt(from + o);
        }
        return sum;
    }

    @ParameterizedTest(name = "{0} bytes ahead")
    @ValueSource(longs = {0, 2048, 8192})
    void readsOneByteOfEachLineAheadAndNothingPastTheEnd(long distance) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = filled(arena);
            long at = 100;
            int expected = distance == 0 ? 0 : linesFrom(at + distance, 210);
            assertEquals(expected, ReadAhead.touch(src, at, 210, distance), "the bytes at 0, 64, 128 and 192 past the distance");
            assertEquals(0, ReadAhead.touch(src, SIZE - distance - 100, 144, distance), "a block whose lines ahead end past the segment");
            assertEquals(0, ReadAhead.touch(src, SIZE - 1, 144, distance), "the segment's last byte");
            assertEquals(expected, ReadAhead.touchClamped(src, at, 210, SIZE - 210, distance), "clamped: the same bytes away from the end");
            int last = distance == 0 ? 0 : linesFrom(SIZE - 144, 144);
            assertEquals(last, ReadAhead.touchClamped(src, SIZE - distance - 100, 144, SIZE - 144, distance),
                    "a block whose lines ahead end past the segment reads the segment's last block instead");
            assertEquals(last, ReadAhead.touchClamped(src, SIZE - 1, 144, SIZE - 144, distance), "the segment's last byte");
        }
    }

    @ParameterizedTest(name = "{0} bytes ahead")
    @ValueSource(longs = {0, 2048, 8192})
    void touchesOneLineAheadOrTheLastByte(long distance) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = filled(arena);
            assertEquals(byteAt(300 + distance), ReadAhead.touchLine(src, 300, SIZE - 1, distance), "the byte the distance ahead");
            assertEquals(byteAt(SIZE - 1), ReadAhead.touchLine(src, SIZE - 10, SIZE - 1, distance == 0 ? 100 : distance),
                    "near the end, the last byte");
        }
    }

    @Test
    void theDefaultDistanceFollowsTheVectorsUnlessSet() {
        String set = System.getProperty("moe4j.cpu.readAhead");
        long expected = set != null ? Math.max(0, Long.parseLong(set)) : Simd.HALVES ? 0 : 2048;
        assertEquals(expected, ReadAhead.DISTANCE, "none with 256-bit vectors, 2 KiB with 512-bit ones");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = filled(arena);
            assertEquals(ReadAhead.touchLine(src, 300, SIZE - 1, expected), ReadAhead.touchLine(src, 300, SIZE - 1),
                    "the kernels' form reads at the default distance");
        }
    }
}
