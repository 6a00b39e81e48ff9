package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/** Typed metadata access: lenient widening where safe, and precise errors otherwise. */
class GgufMetadataTest {

    @TempDir
    Path dir;

    private GgufFile file;
    private GgufMetadata m;

    @BeforeEach
    void open() throws IOException {
        Path p = dir.resolve("meta.gguf");
        GgufRoundTripTest.everyValueType().putString("qwen3moe.block_count", "forty-eight").write(p);
        file = GgufFile.open(p);
        m = file.metadata();
    }

    @AfterEach
    void close() {
        file.close();
    }

    private void assertMetadataError(String expectedMessage, Executable call) {
        GgufMetadataException e = assertThrows(GgufMetadataException.class, call);
        assertEquals(expectedMessage, e.getMessage());
    }

    @Test
    void integersWidenWhenTheValueFits() {
        assertEquals(255, m.getInt("u8"));
        assertEquals(-128, m.getInt("i8"));
        assertEquals(65535, m.getInt("u16"));
        assertEquals(Integer.MIN_VALUE, m.getInt("i32"));
        assertEquals(0xFFFF_FFFFL, m.getLong("u32"));
        assertEquals(Long.MIN_VALUE, m.getLong("i64"));
        assertEquals(-1.5e-7f, m.getFloat("f32"));
        assertEquals((float) Math.PI, m.getFloat("f64"));
        assertEquals(Math.PI, m.getDouble("f64"));
        assertEquals((double) -1.5e-7f, m.getDouble("f32"));
        assertTrue(m.getBoolean("bool.t"));
    }

    @Test
    void wrongTypesNameKeyExpectationActualTypeAndFile() {
        assertMetadataError("qwen3moe.block_count: expected an integer, found STRING (in meta.gguf)",
                () -> m.getInt("qwen3moe.block_count"));
        assertMetadataError("u32: expected an integer that fits in int, found UINT32 value 4294967295 (in meta.gguf)",
                () -> m.getInt("u32"));
        assertMetadataError("u64: expected an integer that fits in long, found UINT64 value 18446744073709551615 (in meta.gguf)",
                () -> m.getLong("u64"));
        assertMetadataError("u8: expected a float, found UINT8 (in meta.gguf)", () -> m.getFloat("u8"));
        assertMetadataError("f32: expected a string, found FLOAT32 (in meta.gguf)", () -> m.getString("f32"));
        assertMetadataError("str: expected a boolean, found STRING (in meta.gguf)", () -> m.getBoolean("str"));
        assertMetadataError("a.str: expected an integer, found ARRAY of STRING (in meta.gguf)", () -> m.getInt("a.str"));
        assertMetadataError("a.str: expected an array of integers, found ARRAY of STRING (in meta.gguf)",
                () -> m.getIntArray("a.str"));
        assertMetadataError("a.i32: expected an array of strings, found ARRAY of INT32 (in meta.gguf)",
                () -> m.getStringList("a.i32"));
        assertMetadataError("a.i32: expected an array of floats, found ARRAY of INT32 (in meta.gguf)",
                () -> m.getFloatArray("a.i32"));
        assertMetadataError("str: expected an array, found STRING (in meta.gguf)", () -> m.arrayLength("str"));
        assertMetadataError("a.u32: expected an array of integers that fit in int, but element 1 of the UINT32 array is "
                + "4294967295 (in meta.gguf)", () -> m.getIntArray("a.u32"));
        GgufMetadataException e = assertThrows(GgufMetadataException.class, () -> m.getIntArray("a.u64"));
        assertEquals("a.u64", e.key());
    }

    @Test
    void missingKeys() {
        assertMetadataError("qwen3moe.expert_count: expected an integer, but the key is missing (in meta.gguf)",
                () -> m.getInt("qwen3moe.expert_count"));
        assertMetadataError("x: expected a value, but the key is missing (in meta.gguf)", () -> m.get("x"));
        assertFalse(m.contains("x"));
        assertEquals(OptionalInt.empty(), m.findInt("x"));
        assertEquals(Optional.empty(), m.findString("x"));
        assertEquals(Optional.empty(), m.findFloat("x"));
        assertEquals(Optional.empty(), m.findBoolean("x"));
        assertEquals(7, m.getInt("x", 7));
        assertEquals(0.5f, m.getFloat("x", 0.5f));
        assertEquals("d", m.getString("x", "d"));
        assertTrue(m.getBoolean("x", true));
        assertEquals(9L, m.getLong("x", 9L));
    }

    @Test
    void optionalAccessorsReturnPresentValuesAndStillCheckTypes() {
        assertEquals(OptionalInt.of(65535), m.findInt("u16"));
        assertEquals(Optional.of("héllo ☃ 🙂"), m.findString("str"));
        assertEquals(Optional.of(-1.5e-7f), m.findFloat("f32"));
        assertEquals(Optional.of(false), m.findBoolean("bool.f"));
        assertEquals(255, m.getInt("u8", 0));
        assertThrows(GgufMetadataException.class, () -> m.findInt("str"));
        assertThrows(GgufMetadataException.class, () -> m.getInt("str", 3));
    }

    @Test
    void arraysAndTypes() {
        assertEquals(GgufValueType.ARRAY, m.type("a.f32"));
        assertEquals(GgufValueType.FLOAT32, m.arrayElementType("a.f32"));
        assertEquals(5, m.arrayLength("a.f32"));
        assertArrayEquals(new float[] {0f, -2.5f}, m.getFloatArray("a.f64"));    // FLOAT64 narrowed; MIN_VALUE underflows
        assertEquals(List.of("a", "", "ünïcode", "x".repeat(1000)), m.getStringList("a.str"));
        assertThrows(UnsupportedOperationException.class, () -> m.getStringList("a.str").add("z"));
        assertThrows(UnsupportedOperationException.class, () -> m.keys().add("z"));
        assertEquals(m.keys().size(), m.size());
    }
}
