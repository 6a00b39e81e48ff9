package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
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
        long size = 3 * HugePages.PAGE + 12345;
        try (Arena arena = Arena.ofConfined()) {
            Optional<MemorySegment> memory = HugePages.allocate(size, arena);
            assertEquals(linux(), memory.isPresent(), "huge-page memory on Linux only");
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
     * A mapped model file carries the kernel's huge-page advice over its tensor data ({@code hg} among the flags of
     * the mapping that holds the data, in {@code /proc/self/smaps}), so that pages read into the page cache after it
     * come as 2 MiB folios.
     */
    @Test
    void aMappedModelsTensorDataIsAdvisedForHugePagesOnLinux() throws IOException {
        Assumptions.assumeTrue(linux() && Files.isDirectory(Path.of("/sys/kernel/mm/transparent_hugepage")),
                "Linux with transparent huge pages only");
        Path file = dir.resolve("advised.gguf");
        new GgufWriter().putString("general.architecture", "test").putString("padding", "x".repeat(10_000))
                .addTensor("t", GgmlType.F32, new long[] {1 << 20}, target -> { }).write(file);
        try (GgufFile f = GgufFile.open(file)) {
            long address = f.tensor("t").data().address();
            Optional<String> flags = flagsOfMappingAt(file, address);
            Assumptions.assumeTrue(flags.isPresent(), "this kernel's smaps lists no VmFlags");
            assertTrue(flags.get().contains(" hg"), "advised for huge pages: " + flags.get());
        }
    }

    /** The {@code VmFlags} line of the mapping of {@code file} that holds {@code address}, if smaps lists one. */
    private static Optional<String> flagsOfMappingAt(Path file, long address) throws IOException {
        String name = file.toRealPath().toString();
        boolean inside = false;
        for (String line : Files.readAllLines(Path.of("/proc/self/smaps"))) {
            if (line.matches("^[0-9a-f]+-[0-9a-f]+ .*")) {
                String[] range = line.substring(0, line.indexOf(' ')).split("-");
                inside = line.endsWith(" " + name) && Long.parseUnsignedLong(range[0], 16) <= address
                        && address < Long.parseUnsignedLong(range[1], 16);
            } else if (inside && line.startsWith("VmFlags:")) {
                return Optional.of(line);
            }
        }
        return Optional.empty();
    }

    /** A mapped model reports the share of its resident pages mapped with 2 MiB entries; a model read into memory none. */
    @Test
    void aMappedModelReportsTheShareOfItsResidentPagesInHugePages() throws IOException {
        Assumptions.assumeTrue(linux() && Files.isReadable(Path.of("/proc/self/smaps")), "Linux with smaps only");
        Path file = dir.resolve("share.gguf");
        new GgufWriter().putString("general.architecture", "test")
                .addTensor("t", GgmlType.F32, new long[] {1 << 20}, target -> target.fill((byte) 1)).write(file);
        try (GgufFile f = GgufFile.open(file)) {
            MemorySegment data = f.tensor("t").data();
            long sum = 0;
            for (long at = 0; at < data.byteSize(); at += 4096) {
                sum += data.get(ValueLayout.JAVA_BYTE, at);
            }
            assertEquals(data.byteSize() / 4096, sum, "every page read");
            Optional<Double> share = f.hugePageShare();
            assertTrue(share.isPresent(), "the mapping's resident pages are found in smaps");
            assertTrue(f.hugePagesAdvised(), "a small mapped model is offered 2 MiB pages");
            assertTrue(share.get() >= 0 && share.get() <= 1, "a share: " + share.get());
        }
        try (GgufFile f = GgufFile.open(file, true)) {
            assertTrue(f.hugePageShare().isEmpty(), "read into memory: no mapping to report on");
            assertFalse(f.hugePagesAdvised(), "read into memory: no mapping to advise");
        }
    }
}
