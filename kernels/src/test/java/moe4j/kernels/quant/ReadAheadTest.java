package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.api.Test;

class ReadAheadTest {

    @Test
    void readsOneByteOfEachLineAheadAndNothingPastTheEnd() {
        try (Arena arena = Arena.ofConfined()) {
            long size = ReadAhead.DISTANCE + 1000;
            MemorySegment src = arena.allocate(size);
            for (long i = 0; i < size; i++) {
                src.set(ValueLayout.JAVA_BYTE, i, (byte) (i % 7 + 1));
            }
            long at = 100;
            int expected = 0;
            for (long o = 0; o < 210; o += 64) {
                expected += (int) ((at + ReadAhead.DISTANCE + o) % 7 + 1);
            }
            if (ReadAhead.DISTANCE == 0) {
                expected = 0; // turned off with -Dmoe4j.cpu.readAhead=0
            }
            assertEquals(expected, ReadAhead.touch(src, at, 210), "the bytes at 0, 64, 128 and 192 past the distance");
            assertEquals(0, ReadAhead.touch(src, size - ReadAhead.DISTANCE - 100, 144), "a block whose lines ahead end past the segment");
            assertEquals(0, ReadAhead.touch(src, size - 1, 144), "the segment's last byte");
            assertEquals(expected, ReadAhead.touchClamped(src, at, 210, size - 210), "clamped: the same bytes away from the end");
            int last = 0;
            for (long o = 0; o < 144; o += 64) {
                last += (int) ((size - 144 + o) % 7 + 1);
            }
            if (ReadAhead.DISTANCE == 0) {
                last = 0;
            }
            assertEquals(last, ReadAhead.touchClamped(src, size - ReadAhead.DISTANCE - 100, 144, size - 144),
                    "a block whose lines ahead end past the segment reads the segment's last block instead");
            assertEquals(last, ReadAhead.touchClamped(src, size - 1, 144, size - 144), "the segment's last byte");
        }
    }
}
