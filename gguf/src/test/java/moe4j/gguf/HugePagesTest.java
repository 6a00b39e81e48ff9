package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Optional;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HugePagesTest {

    @TempDir
    Path dir;

    private static boolean linux() {
        return System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux");
    }

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

    /**
     * A mapped model file carries the kernel's huge-page advice ({@code hg} among its mapping's flags in
     * {@code /proc/self/smaps}), so that pages read into the page cache after it come as 2 MiB folios.
     */
    @Test
    void aMappedModelFileIsAdvisedForHugePagesOnLinux() throws IOException {
        Assumptions.assumeTrue(linux() && Files.isDirectory(Path.of("/sys/kernel/mm/transparent_hugepage")),
                "Linux with transparent huge pages only");
        Path file = dir.resolve("advised.gguf");
        new GgufWriter().putString("general.architecture", "test").addTensor("t", GgmlType.F32, new long[] {1 << 20},
                target -> { }).write(file);
        try (GgufFile f = GgufFile.open(file)) {
            List<String> flags = mappingFlags(file);
            assertTrue(!flags.isEmpty(), "the file is mapped: " + file);
            assertTrue(flags.stream().allMatch(line -> line.contains(" hg")), "advised for huge pages: " + flags);
        }
    }

    /** The {@code VmFlags} lines of this process's mappings of {@code file}. */
    private static List<String> mappingFlags(Path file) throws IOException {
        List<String> lines = Files.readAllLines(Path.of("/proc/self/smaps"));
        String name = file.toRealPath().toString();
        List<String> flags = new ArrayList<>();
        boolean inside = false;
        for (String line : lines) {
            if (line.matches("^[0-9a-f]+-[0-9a-f]+ .*")) {
                inside = line.endsWith(" " + name);
            } else if (inside && line.startsWith("VmFlags:")) {
                flags.add(line);
            }
        }
        return flags;
    }
}
