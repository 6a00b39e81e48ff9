package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Split (sharded) models: written by GgufWriter.writeSplit, opened as one model by GgufFile. */
class GgufSplitTest {

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;

    private static GgufWriter model(int tensors) {
        GgufWriter w = new GgufWriter().putString("general.architecture", "test").putUInt32("general.alignment", 64)
                .putStringArray("tokenizer.ggml.tokens", List.of("a", "b"));
        for (int i = 0; i < tensors; i++) {
            addTensor(w, "blk." + i + ".w", i);
        }
        return w;
    }

    private static void addTensor(GgufWriter w, String name, int i) {
        float[] v = new float[16 * (i + 1)];
        for (int j = 0; j < v.length; j++) {
            v[j] = i * 1000 + j;
        }
        w.addTensor(name, GgmlType.F32, new long[] {16, i + 1}, TensorSource.ofFloats(v));
    }

    @Test
    void splitModelOpensAsOneModel() throws IOException {
        List<Path> parts = model(7).writeSplit(dir.resolve("m.gguf"), 3);
        assertEquals(List.of("m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"),
                parts.stream().map(p -> p.getFileName().toString()).toList());
        try (GgufFile f = GgufFile.open(parts.get(0))) {
            assertEquals(parts, f.paths());
            assertEquals(Files.size(parts.get(0)) + Files.size(parts.get(1)) + Files.size(parts.get(2)), f.fileBytes());
            assertEquals(7, f.tensors().size());
            for (int i = 0; i < 7; i++) {
                GgufTensor t = f.tensors().get(i);
                assertEquals("blk." + i + ".w", t.name());
                assertEquals(i * 1000 + 15f, t.data().getAtIndex(F32_LE, 15));
                assertEquals(0, f.tensor(t.name()).fileOffset() % 64);
            }
            assertEquals(3, f.tensors().stream().map(GgufTensor::file).distinct().count(), "tensors spread over all parts");
            GgufMetadata m = f.metadata();
            assertEquals("test", m.getString("general.architecture"));
            assertEquals(List.of("a", "b"), m.getStringList("tokenizer.ggml.tokens"));
            assertEquals(GgufValueType.UINT16, m.type("split.count"));
            assertEquals(3, m.getInt("split.count"));
            assertEquals(0, m.getInt("split.no"));
            assertEquals(GgufValueType.INT32, m.type("split.tensors.count"));
            assertEquals(7, m.getInt("split.tensors.count"));
        }
        try (GgufFile second = GgufFile.openSinglePart(parts.get(1))) {
            assertEquals(List.of("general.alignment", "split.no", "split.count", "split.tensors.count"),
                    List.copyOf(second.metadata().keys()));
            assertEquals(1, second.metadata().getInt("split.no"));
            assertEquals(64, second.alignment());
        }
    }

    @Test
    void aSplitModelReadIntoMemoryHoldsTheBytesOfItsMapping() throws IOException {
        List<Path> parts = model(7).writeSplit(dir.resolve("r.gguf"), 3);
        try (GgufFile mapped = GgufFile.open(parts.get(0)); GgufFile read = GgufFile.open(parts.get(0), true)) {
            assertTrue(mapped.mapped());
            assertFalse(read.mapped());
            assertEquals(mapped.paths(), read.paths());
            assertEquals(mapped.fileBytes(), read.fileBytes());
            assertEquals(List.copyOf(mapped.metadata().keys()), List.copyOf(read.metadata().keys()));
            assertEquals(mapped.tensors().size(), read.tensors().size());
            for (int i = 0; i < mapped.tensors().size(); i++) {
                GgufTensor a = mapped.tensors().get(i);
                GgufTensor b = read.tensors().get(i);
                assertEquals(a.name(), b.name());
                assertEquals(-1L, a.data().mismatch(b.data()), a.name() + "'s bytes");
                assertTrue(b.data().isReadOnly(), "read-only like the mapping");
            }
        }
    }

    @Test
    void aFileLargerThanTheMachinesMemoryIsNotReadIntoIt() throws IOException {
        // a sparse file (no disk used) on Linux, where every file system moe4j runs on makes one
        Assumptions.assumeTrue(System.getProperty("os.name", "").toLowerCase(java.util.Locale.ROOT).startsWith("linux"),
                "sparse files are only assumed on Linux");
        long physical = ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
                .getOperatingSystemMXBean()).getTotalMemorySize();
        Path huge = dir.resolve("huge.gguf");
        model(2).write(huge);  // a valid header, then a sparse tail past the machine's memory
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(huge.toFile(), "rw")) {
            f.setLength(physical + (1L << 30));
        }
        IOException e = assertThrows(IOException.class, () -> GgufFile.open(huge, true));
        assertTrue(e.getMessage().contains("does not fit in this machine's memory"), e.getMessage());
        assertTrue(e.getMessage().contains("without --no-mmap"), e.getMessage());
        Files.delete(huge);

        // a split model whose parts fit one by one but not together: refused before any part is read
        List<Path> parts = model(7).writeSplit(dir.resolve("big.gguf"), 3);
        for (Path part : parts.subList(1, 3)) {
            try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(part.toFile(), "rw")) {
                f.setLength(physical / 2 + (1L << 30));
            }
        }
        e = assertThrows(IOException.class, () -> GgufFile.open(parts.get(0), true));
        assertTrue(e.getMessage().contains("does not fit in this machine's memory"), e.getMessage());
        for (Path part : parts) {
            Files.delete(part);
        }
    }

    @Test
    void partNameMayBeGivenAsAPartAndMorePartsThanTensorsIsFine() throws IOException {
        List<Path> parts = model(2).writeSplit(dir.resolve("x-00001-of-00004.gguf"), 4);
        assertEquals(dir.resolve("x-00004-of-00004.gguf"), parts.get(3));
        try (GgufFile f = GgufFile.open(parts.get(0))) {
            assertEquals(4, f.paths().size());
            assertEquals(List.of("blk.0.w", "blk.1.w"), f.tensors().stream().map(GgufTensor::name).toList());
        }
    }

    @Test
    void onePartSplitIsASingleFile() throws IOException {
        List<Path> parts = model(3).writeSplit(dir.resolve("one.gguf"), 1);
        assertEquals(List.of(dir.resolve("one-00001-of-00001.gguf")), parts);
        try (GgufFile f = GgufFile.open(parts.get(0))) {
            assertEquals(3, f.tensors().size());
            assertEquals(1, f.metadata().getInt("split.count"));
        }
    }

    @Test
    void openingALaterPartPointsToTheFirst() throws IOException {
        List<Path> parts = model(3).writeSplit(dir.resolve("m.gguf"), 3);
        GgufFormatException e = assertThrows(GgufFormatException.class, () -> GgufFile.open(parts.get(1)));
        assertTrue(e.getMessage().contains("this is split part 2 of 3; open the first part m-00001-of-00003.gguf"),
                e.getMessage());
        assertEquals(parts.get(1), e.file());
    }

    @Test
    void missingPart() throws IOException {
        List<Path> parts = model(3).writeSplit(dir.resolve("m.gguf"), 3);
        Files.delete(parts.get(2));
        GgufFormatException e = assertThrows(GgufFormatException.class, () -> GgufFile.open(parts.get(0)));
        assertTrue(e.getMessage().contains("split part 3 of 3 (m-00003-of-00003.gguf) does not exist"), e.getMessage());
    }

    /** A hand-made part with the given split keys (no writeSplit), so inconsistencies can be produced. */
    private Path part(String name, int no, int count, int tensorsCount, String... tensorNames) throws IOException {
        GgufWriter w = new GgufWriter().putUInt16("split.no", no).putUInt16("split.count", count)
                .putInt32("split.tensors.count", tensorsCount);
        for (String t : tensorNames) {
            addTensor(w, t, 0);
        }
        Path p = dir.resolve(name);
        w.write(p);
        return p;
    }

    @Test
    void inconsistentParts() throws IOException {
        Path first = part("s-00001-of-00002.gguf", 0, 2, 2, "a");
        part("s-00002-of-00002.gguf", 1, 2, 2, "a");
        GgufFormatException dup = assertThrows(GgufFormatException.class, () -> GgufFile.open(first));
        assertTrue(dup.getMessage().contains("tensor 'a' also appears in s-00001-of-00002.gguf"), dup.getMessage());
        assertEquals(dir.resolve("s-00002-of-00002.gguf"), dup.file());

        part("s-00002-of-00002.gguf", 1, 2, 2, "b", "c");
        GgufFormatException count = assertThrows(GgufFormatException.class, () -> GgufFile.open(first));
        assertTrue(count.getMessage().contains("split.tensors.count is 2 but the 2 parts hold 3 tensors"), count.getMessage());

        part("s-00002-of-00002.gguf", 0, 2, 2, "b");
        GgufFormatException no = assertThrows(GgufFormatException.class, () -> GgufFile.open(first));
        assertTrue(no.getMessage().contains("split.no is 0 but this file is part 2"), no.getMessage());

        part("s-00002-of-00002.gguf", 1, 3, 2, "b");
        GgufFormatException c = assertThrows(GgufFormatException.class, () -> GgufFile.open(first));
        assertTrue(c.getMessage().contains("split.count is 3 but the first part says 2"), c.getMessage());

        part("s-00002-of-00002.gguf", 1, 2, 2, "b");
        try (GgufFile ok = GgufFile.open(first)) {
            assertEquals(List.of("a", "b"), ok.tensors().stream().map(GgufTensor::name).toList());
        }
    }

    @Test
    void splitNameAndKeysMustAgree() throws IOException {
        Path unnamed = part("plain.gguf", 0, 2, 1, "a");
        GgufFormatException e = assertThrows(GgufFormatException.class, () -> GgufFile.open(unnamed));
        assertTrue(e.getMessage().contains("split.count is 2 but the file name does not end in -00001-of-00002.gguf"),
                e.getMessage());

        Path noKeys = dir.resolve("k-00001-of-00002.gguf");
        new GgufWriter().putString("general.architecture", "t").write(noKeys);
        GgufFormatException k = assertThrows(GgufFormatException.class, () -> GgufFile.open(noKeys));
        assertTrue(k.getMessage().contains("the file name says part 00001 of 2 but the file has no split.count key"),
                k.getMessage());

        Path wrongCount = part("w-00001-of-00003.gguf", 0, 2, 1, "a");
        GgufFormatException w = assertThrows(GgufFormatException.class, () -> GgufFile.open(wrongCount));
        assertTrue(w.getMessage().contains("split.count is 2 but the file name says 3 parts"), w.getMessage());
    }
}
