package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Locale;
import java.util.Optional;

import org.junit.jupiter.api.Test;

class HugePagesTest {

    @Test
    void givesZeroedWritableMemoryOnA2MiBBoundaryOnLinux() {
        boolean linux = System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux");
        long size = 3 * HugePages.PAGE + 12345;
        try (Arena arena = Arena.ofConfined()) {
            Optional<MemorySegment> memory = HugePages.allocate(size, arena);
            assertEquals(linux, memory.isPresent(), "huge-page memory on Linux only");
            if (memory.isEmpty()) {
                return;
            }
            MemorySegment m = memory.get();
            assertEquals(size, m.byteSize());
            assertEquals(0, m.address() % HugePages.PAGE, "starts on a 2 MiB boundary");
            assertEquals(-1L, m.mismatch(arena.allocate(size)), "zeroed");
            m.set(ValueLayout.JAVA_LONG_UNALIGNED, size - 8, 0x0123456789abcdefL);
            assertEquals(0x0123456789abcdefL, m.get(ValueLayout.JAVA_LONG_UNALIGNED, size - 8));
            assertTrue(m.scope().isAlive());
        }
        assertTrue(HugePages.allocate(0, Arena.global()).isEmpty(), "nothing for an empty request");
    }
}
