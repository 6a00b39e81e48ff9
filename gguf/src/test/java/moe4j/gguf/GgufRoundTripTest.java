package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.NoSuchElementException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** GgufWriter output read back by GgufFile: every value type, tensor layouts, alignments. */
class GgufRoundTripTest {

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;

    /** Every scalar type at its extremes plus arrays of every element type, including nested and empty arrays. */
    static GgufWriter everyValueType() {
        GgufWriter w = new GgufWriter();
        w.putUInt8("u8", 255).putInt8("i8", -128).putUInt16("u16", 65535).putInt16("i16", -32768)
                .putUInt32("u32", 0xFFFF_FFFFL).putInt32("i32", Integer.MIN_VALUE)
                .putUInt64("u64", -1L).putInt64("i64", Long.MIN_VALUE)
                .putFloat32("f32", -1.5e-7f).putFloat64("f64", Math.PI)
                .putBool("bool.t", true).putBool("bool.f", false)
                .putString("str", "héllo ☃ 🙂").putString("str.empty", "");
        w.putArray("a.u8", GgufArray.ofIntegers(GgufValueType.UINT8, 0, 1, 255));
        w.putArray("a.i8", GgufArray.ofIntegers(GgufValueType.INT8, -128, 0, 127));
        w.putArray("a.u16", GgufArray.ofIntegers(GgufValueType.UINT16, 0, 65535));
        w.putArray("a.i16", GgufArray.ofIntegers(GgufValueType.INT16, -32768, 32767));
        w.putUInt32Array("a.u32", 0, 0xFFFF_FFFFL);
        w.putInt32Array("a.i32", Integer.MIN_VALUE, -1, 0, Integer.MAX_VALUE);
        w.putArray("a.u64", GgufArray.ofIntegers(GgufValueType.UINT64, 0, -1));
        w.putArray("a.i64", GgufArray.ofIntegers(GgufValueType.INT64, Long.MIN_VALUE, Long.MAX_VALUE));
        w.putFloat32Array("a.f32", 0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, 3.25f);
        w.putArray("a.f64", GgufArray.ofFloats(GgufValueType.FLOAT64, Double.MIN_VALUE, -2.5));
        w.putBoolArray("a.bool", true, false, true);
        w.putStringArray("a.str", List.of("a", "", "ünïcode", "x".repeat(1000)));
        w.putInt32Array("a.empty");
        w.putArray("a.nested", GgufArray.ofArrays(List.of(
                GgufArray.ofInt32(1, 2, 3),
                GgufArray.ofStrings(List.of("x", "y")),
                GgufArray.ofArrays(List.of(GgufArray.ofFloat32(7f))),
                GgufArray.ofArrays(List.of()))));
        return w;
    }

    @Test
    void everyValueTypeRoundTrips() throws IOException {
        Path p = dir.resolve("values.gguf");
        everyValueType().write(p);
        try (GgufFile f = GgufFile.open(p)) {
            GgufMetadata m = f.metadata();
            assertEquals(3, f.version());
            assertEquals(0, f.tensors().size());
            assertEquals(List.of("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool.t", "bool.f",
                    "str", "str.empty", "a.u8", "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.u64", "a.i64", "a.f32",
                    "a.f64", "a.bool", "a.str", "a.empty", "a.nested"), List.copyOf(m.keys()));

            assertEquals(GgufValueType.UINT8, m.type("u8"));
            assertEquals(255, m.get("u8"));
            assertEquals(-128, m.get("i8"));
            assertEquals(65535, m.get("u16"));
            assertEquals(-32768, m.get("i16"));
            assertEquals(0xFFFF_FFFFL, m.get("u32"));
            assertEquals(Integer.MIN_VALUE, m.get("i32"));
            assertEquals(-1L, m.get("u64"));
            assertEquals(GgufValueType.UINT64, m.type("u64"));
            assertEquals(Long.MIN_VALUE, m.get("i64"));
            assertEquals(-1.5e-7f, m.get("f32"));
            assertEquals(Math.PI, m.get("f64"));
            assertEquals(true, m.get("bool.t"));
            assertEquals(false, m.get("bool.f"));
            assertEquals("héllo ☃ 🙂", m.get("str"));
            assertEquals("", m.getString("str.empty"));

            assertArrayEquals(new int[] {0, 1, 255}, m.getIntArray("a.u8"));
            assertArrayEquals(new int[] {-128, 0, 127}, m.getIntArray("a.i8"));
            assertArrayEquals(new int[] {0, 65535}, m.getIntArray("a.u16"));
            assertArrayEquals(new int[] {-32768, 32767}, m.getIntArray("a.i16"));
            assertArrayEquals(new long[] {0, 0xFFFF_FFFFL}, m.getLongArray("a.u32"));
            assertArrayEquals(new int[] {Integer.MIN_VALUE, -1, 0, Integer.MAX_VALUE}, m.getIntArray("a.i32"));
            assertEquals(-1L, m.getArray("a.u64").getLong(1));
            assertArrayEquals(new long[] {Long.MIN_VALUE, Long.MAX_VALUE}, m.getLongArray("a.i64"));
            assertArrayEquals(new float[] {0f, -0f, Float.NaN, Float.POSITIVE_INFINITY, 3.25f}, m.getFloatArray("a.f32"));
            assertArrayEquals(new double[] {Double.MIN_VALUE, -2.5}, m.getDoubleArray("a.f64"));
            GgufArray bools = m.getArray("a.bool");
            assertEquals(GgufValueType.BOOL, bools.elementType());
            assertEquals(List.of(true, false, true), List.of(bools.get(0), bools.get(1), bools.get(2)));
            assertEquals(List.of("a", "", "ünïcode", "x".repeat(1000)), m.getStringList("a.str"));
            assertEquals(0, m.arrayLength("a.empty"));
            assertEquals(GgufValueType.INT32, m.arrayElementType("a.empty"));

            GgufArray nested = m.getArray("a.nested");
            assertEquals(GgufValueType.ARRAY, nested.elementType());
            assertEquals(4, nested.length());
            assertEquals(GgufArray.ofInt32(1, 2, 3), nested.getArray(0));
            assertEquals(List.of("x", "y"), nested.getArray(1).strings());
            assertEquals(7f, (float) nested.getArray(2).getArray(0).getDouble(0));
            assertEquals(0, nested.getArray(3).length());
        }
    }

    @Test
    void metadataCopiedFromAFileWritesTheSameBytes() throws IOException {
        Path a = dir.resolve("a.gguf");
        Path b = dir.resolve("b.gguf");
        everyValueType().write(a);
        try (GgufFile f = GgufFile.open(a)) {
            new GgufWriter().putAll(f.metadata()).write(b);
        }
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b));
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 8, 32, 64, 4096})
    void tensorsArePackedAlignedAndZeroPadded(int alignment) throws IOException {
        GgufWriter w = new GgufWriter().putString("general.architecture", "test");
        if (alignment != 0) {
            w.putUInt32("general.alignment", alignment);
        }
        float[] v = {1f, -2f, 3.5f};
        byte[] q = new byte[2 * GgmlType.Q8_0.blockBytes()];
        for (int i = 0; i < q.length; i++) {
            q[i] = (byte) (i * 7 + 1);
        }
        w.addTensor("vec", GgmlType.F32, new long[] {3}, TensorSource.ofFloats(v));
        w.addTensor("q8", GgmlType.Q8_0, new long[] {32, 2}, TensorSource.ofBytes(q));
        w.addTensor("empty", GgmlType.F16, new long[] {0, 5}, t -> { });
        w.addTensor("cube", GgmlType.I8, new long[] {2, 3, 4, 5}, t -> t.fill((byte) 9));
        Path p = dir.resolve("t.gguf");
        w.write(p);

        long expectedAlignment = alignment == 0 ? 32 : alignment;
        byte[] file = Files.readAllBytes(p);
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(expectedAlignment, f.alignment());
            assertEquals(0, f.dataStart() % expectedAlignment);
            assertEquals(List.of("vec", "q8", "empty", "cube"), f.tensors().stream().map(GgufTensor::name).toList());
            long expectedOffset = f.dataStart();
            for (GgufTensor t : f.tensors()) {
                assertEquals(expectedOffset, t.fileOffset(), t.name());      // packed in order, as llama.cpp requires
                assertEquals(t.type().bytesFor(t.elementCount()), t.byteSize());
                long end = t.fileOffset() + t.byteSize();
                long padded = GgufParser.alignUp(end, expectedAlignment);
                for (long i = end; i < padded; i++) {
                    assertEquals(0, file[(int) i], "padding after " + t.name());
                }
                expectedOffset = padded;
            }
            assertEquals(expectedOffset, file.length);

            GgufTensor vec = f.tensor("vec");
            assertArrayEquals(new long[] {3}, vec.dims());
            assertArrayEquals(new long[] {3, 1, 1, 1}, vec.shape());
            assertArrayEquals(v, vec.data().toArray(F32_LE));
            assertArrayEquals(q, f.tensor("q8").data().toArray(ValueLayout.JAVA_BYTE));
            assertEquals(2, f.tensor("q8").rowCount());
            assertEquals(34, f.tensor("q8").rowBytes());
            assertArrayEquals(new long[] {0, 5}, f.tensor("empty").dims());
            GgufTensor cube = f.tensor("cube");
            assertEquals(4, cube.nDims());
            assertEquals(120, cube.byteSize());
            assertEquals(-1, cube.data().asByteBuffer().mismatch(java.nio.ByteBuffer.wrap(filled(120, (byte) 9))));
            assertTrue(cube.data().isReadOnly());
        }
    }

    private static byte[] filled(int n, byte b) {
        byte[] a = new byte[n];
        java.util.Arrays.fill(a, b);
        return a;
    }

    @Test
    void fileApi() throws IOException {
        Path p = dir.resolve("api.gguf");
        new GgufWriter().putString("general.architecture", "x")
                .addTensor("w", GgmlType.F32, new long[] {4}, TensorSource.ofFloats(1, 2, 3, 4)).write(p);
        GgufFile f = GgufFile.open(p);
        assertEquals(List.of(p), f.paths());
        assertEquals(Files.size(p), f.fileBytes());
        assertTrue(f.findTensor("w").isPresent());
        assertFalse(f.findTensor("nope").isPresent());
        NoSuchElementException e = assertThrows(NoSuchElementException.class, () -> f.tensor("nope"));
        assertTrue(e.getMessage().contains("'nope'") && e.getMessage().contains("api.gguf"), e.getMessage());
        MemorySegment data = f.tensor("w").data();
        f.close();
        f.close();    // idempotent
        assertThrows(IllegalStateException.class, () -> data.get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void writerRejectsInvalidInput() {
        GgufWriter w = new GgufWriter();
        assertThrows(IllegalArgumentException.class, () -> w.putUInt32("general.alignment", 48));
        assertThrows(IllegalArgumentException.class, () -> w.putInt32("general.alignment", 32));
        assertThrows(IllegalArgumentException.class, () -> w.putUInt8("k", 256));
        assertThrows(IllegalArgumentException.class, () -> w.putUInt32("k", -1));
        assertThrows(IllegalArgumentException.class, () -> w.put("k", GgufValueType.STRING, 3));
        assertThrows(IllegalArgumentException.class, () -> w.putString("", "v"));
        TensorSource none = t -> { };
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("", GgmlType.F32, new long[] {1}, none));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("x".repeat(64), GgmlType.F32, new long[] {1}, none));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {1, 1, 1, 1, 1}, none));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {-1}, none));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.Q4_K, new long[] {128}, none));
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.Q4_2_REMOVED, new long[] {32}, none));
        w.addTensor("t", GgmlType.F32, new long[] {1}, none);
        assertThrows(IllegalArgumentException.class, () -> w.addTensor("t", GgmlType.F32, new long[] {1}, none));
        assertEquals(1, w.tensorCount());
    }

    @Test
    void aFailingSourceLeavesNoFile() {
        Path p = dir.resolve("fail.gguf");
        GgufWriter w = new GgufWriter().addTensor("t", GgmlType.F32, new long[] {4}, TensorSource.ofFloats(1, 2, 3));
        assertThrows(IllegalArgumentException.class, () -> w.write(p));
        assertFalse(Files.exists(p));
    }

    @Test
    void puttingAKeyAgainReplacesItInPlace() throws IOException {
        Path p = dir.resolve("replace.gguf");
        new GgufWriter().putUInt32("a", 1).putString("b", "x").putFloat32("a", 2f).remove("b").putBool("c", true).write(p);
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(List.of("a", "c"), List.copyOf(f.metadata().keys()));
            assertEquals(2f, f.metadata().getFloat("a"));
        }
    }

    @Test
    void metadataOnlyFileWithLargeAlignmentIsPadded() throws IOException {
        Path p = dir.resolve("meta.gguf");
        new GgufWriter().putUInt32("general.alignment", 1024).putString("k", "v").write(p);
        assertEquals(1024, Files.size(p));
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(1024, f.alignment());
            assertEquals("v", f.metadata().getString("k"));
        }
    }
}
