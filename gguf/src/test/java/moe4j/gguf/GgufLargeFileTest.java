package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A sparse file over 4 GiB: offsets past 2^32 work and opening does not pull tensor data onto the heap. */
class GgufLargeFileTest {

    private static final long BIG = (1L << 32) + 4096;

    @TempDir
    Path dir;

    @Test
    void tensorBeyondFourGigabytesIsReadableWithoutHeapGrowth() throws IOException {
        Path p = dir.resolve("large.gguf");
        try {
            // The writer maps the data region without touching the big tensor's pages: the file stays sparse.
            new GgufWriter().putString("general.architecture", "large")
                    .addTensor("big", GgmlType.I8, new long[] {BIG}, t -> t.set(ValueLayout.JAVA_BYTE, t.byteSize() - 1, (byte) 42))
                    .addTensor("tail", GgmlType.F32, new long[] {4}, TensorSource.ofFloats(1f, 2f, 3f, 4f))
                    .write(p);
            assertTrue(Files.size(p) > BIG);

            MemoryMXBean memory = ManagementFactory.getMemoryMXBean();
            System.gc();
            long before = memory.getHeapMemoryUsage().getUsed();
            try (GgufFile f = GgufFile.open(p)) {
                GgufTensor big = f.tensor("big");
                GgufTensor tail = f.tensor("tail");
                assertEquals(BIG, big.byteSize());
                assertTrue(tail.fileOffset() > 1L << 32);
                assertEquals(42, big.data().get(ValueLayout.JAVA_BYTE, BIG - 1));
                assertEquals(0, big.data().get(ValueLayout.JAVA_BYTE, 1L << 32));
                assertArrayEquals(new float[] {1f, 2f, 3f, 4f},
                        tail.data().toArray(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN)));
                System.gc();
                long growth = memory.getHeapMemoryUsage().getUsed() - before;
                assertTrue(growth < 32L << 20, "opening a " + Files.size(p) + "-byte file grew the heap by " + growth + " bytes");
            }
        } finally {
            Files.deleteIfExists(p);
        }
    }
}
