package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every kind of malformed input is rejected with a GgufFormatException naming the file, the offset and the problem. */
class GgufMalformedFileTest {

    private static final int F32 = GgmlType.F32.id();

    @TempDir
    Path dir;

    /** Opens {@code raw} and asserts the rejection happens at {@code offset} with a message containing {@code problem}. */
    private GgufFormatException rejects(RawGguf raw, long offset, String problem) {
        return rejects(raw.toBytes(), offset, problem);
    }

    private GgufFormatException rejects(byte[] bytes, long offset, String problem) {
        Path file;
        try {
            file = Files.write(dir.resolve("bad.gguf"), bytes);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        GgufFormatException e = assertThrows(GgufFormatException.class, () -> GgufFile.open(file).close());
        assertEquals(file, e.file());
        assertEquals(offset, e.offset(), () -> "offset of: " + e.getMessage());
        assertTrue(e.getMessage().contains(problem), () -> "expected '" + problem + "' in: " + e.getMessage());
        assertTrue(e.getMessage().startsWith(file + ": at byte " + offset + ": "), e.getMessage());
        return e;
    }

    /** A valid file with one metadata key and one 4-float tensor, to be compared against the broken variants. */
    private static RawGguf validWithOneTensor() {
        RawGguf r = new RawGguf().header(3, 1, 1).kvString("general.architecture", "test");
        r.tensor("t", F32, 0, 4).padTo(32);
        return r.zeros(16);
    }

    @Test
    void theValidBaselineOpens() throws IOException {
        Path p = validWithOneTensor().write(dir, "ok.gguf");
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(16, f.tensor("t").byteSize());
            assertEquals("test", f.metadata().getString("general.architecture"));
        }
    }

    @Test
    void wrongMagic() {
        byte[] b = validWithOneTensor().toBytes();
        b[0] = 'X';
        rejects(b, 0, "bad magic");
    }

    @Test
    void emptyFile() {
        rejects(new byte[0], 0, "empty file");
    }

    @Test
    void truncatedHeader() {
        rejects(Arrays.copyOf(validWithOneTensor().toBytes(), 2), 0, "truncated: the magic number");
        rejects(Arrays.copyOf(validWithOneTensor().toBytes(), 13), 8, "truncated: the tensor count");
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 4, 99})
    void unsupportedVersion(int version) {
        String problem = version == 1 ? "version 1 is no longer supported" : version == 0 ? "version 0" : "version " + version;
        rejects(new RawGguf().header(version, 0, 0), 4, problem);
    }

    @Test
    void byteSwappedFile() {
        rejects(new RawGguf().header(0x0300_0000, 0, 0), 4, "byte-swapped (big-endian)");
    }

    @Test
    void negativeCounts() {
        rejects(new RawGguf().header(3, -1, 0), 8, "negative tensor count");
        rejects(new RawGguf().header(3, 0, -5), 16, "negative metadata count");
    }

    @Test
    void absurdCountsAreRejectedBeforeAllocating() {
        rejects(new RawGguf().header(3, 0, 1L << 40).zeros(100), 16, "metadata count 1099511627776 is impossible");
        rejects(new RawGguf().header(3, Long.MAX_VALUE, 0).zeros(100), 8, "tensor count " + Long.MAX_VALUE + " is impossible");
    }

    @Test
    void truncatedMetadata() {
        RawGguf r = new RawGguf().header(3, 0, 1);
        long keyAt = r.pos();
        r.i64(100).zeros(20);    // declares a 100-byte key, only 20 bytes follow
        rejects(r, keyAt, "truncated: the key of metadata record 0 is a string of 100 bytes but only 20 remain");

        RawGguf v = new RawGguf().header(3, 0, 1).string("k").i32(GgufValueType.UINT64.id());
        long valueAt = v.pos();
        v.i32(7);
        rejects(v, valueAt, "truncated: the value of 'k' needs 8 bytes but only 4 remain");
    }

    @Test
    void hugeStringLength() {
        RawGguf r = new RawGguf().header(3, 0, 1).string("k").i32(GgufValueType.STRING.id());
        long at = r.pos();
        r.i64(-2).zeros(20);
        rejects(r, at, "exceeds the limit");
    }

    @Test
    void arrayLongerThanTheFileIsRejectedBeforeAllocating() {
        RawGguf r = new RawGguf().header(3, 0, 1).string("arr").i32(GgufValueType.ARRAY.id()).i32(GgufValueType.INT64.id());
        long countAt = r.pos();
        r.i64(1L << 29).zeros(64);
        rejects(r, countAt, "array 'arr' declares 536870912 INT64 elements, which need at least 4294967296 bytes, but only 64 remain");

        RawGguf s = new RawGguf().header(3, 0, 1).string("arr").i32(GgufValueType.ARRAY.id()).i32(GgufValueType.STRING.id());
        long sAt = s.pos();
        s.i64(1000).zeros(64);
        rejects(s, sAt, "declares 1000 STRING elements");

        RawGguf h = new RawGguf().header(3, 0, 1).string("arr").i32(GgufValueType.ARRAY.id()).i32(GgufValueType.UINT8.id());
        long hAt = h.pos();
        h.i64((1L << 30) + 1);
        rejects(h, hAt, "exceeds the limit of 1073741824");
    }

    @Test
    void unknownValueTypes() {
        RawGguf r = new RawGguf().header(3, 0, 1).string("k");
        long at = r.pos();
        r.i32(13).i32(0);
        rejects(r, at, "unknown value type id 13 for metadata key 'k'");

        RawGguf a = new RawGguf().header(3, 0, 1).string("k").i32(GgufValueType.ARRAY.id());
        long elemAt = a.pos();
        a.i32(-1).i64(0);
        rejects(a, elemAt, "unknown value type id -1 for the elements of array 'k'");
    }

    @Test
    void arraysNestedTooDeep() {
        RawGguf r = new RawGguf().header(3, 0, 1).string("deep").i32(GgufValueType.ARRAY.id());
        for (int i = 0; i < 40; i++) {
            r.i32(GgufValueType.ARRAY.id()).i64(1);
        }
        GgufFormatException e = rejects(r.zeros(12), 24 + 12 + 4 + 15 * 12, "nests arrays more than 16 levels deep");
        assertTrue(e.getMessage().contains("'deep'"));
    }

    @Test
    void emptyAndDuplicateKeys() {
        RawGguf r = new RawGguf().header(3, 0, 1);
        long at = r.pos();
        r.string("").i32(GgufValueType.UINT8.id()).u8(1).zeros(8);
        rejects(r, at, "metadata record 0 has an empty key");

        RawGguf d = new RawGguf().header(3, 0, 2).kvU32("a.b", 1);
        long second = d.pos();
        d.kvU32("a.b", 2);
        rejects(d, second, "duplicate metadata key 'a.b'");
    }

    @Test
    void badAlignment() {
        RawGguf wrongType = new RawGguf().header(3, 0, 1);
        wrongType.string("general.alignment").i32(GgufValueType.INT32.id()).i32(32);
        rejects(wrongType, 24, "general.alignment must be UINT32, found INT32");

        for (int a : new int[] {0, 48}) {
            RawGguf r = new RawGguf().header(3, 0, 1).kvU32("general.alignment", a);
            rejects(r, r.pos() - 4, "general.alignment is " + a + ", which is not a non-zero power of two");
        }
    }

    /** A file whose metadata is one key, then {@code tensorInfo} (a tensor record), with {@code dataBytes} of data. */
    private static RawGguf oneTensorPrefix() {
        return new RawGguf().header(3, 1, 1).kvString("general.architecture", "test");
    }

    @Test
    void badTensorNames() {
        RawGguf empty = oneTensorPrefix();
        long at = empty.pos();
        empty.tensor("", F32, 0, 4).padTo(32).zeros(16);
        rejects(empty, at, "tensor 0 has an empty name");

        RawGguf longName = oneTensorPrefix();
        long lAt = longName.pos();
        longName.tensor("x".repeat(64), F32, 0, 4).padTo(32).zeros(16);
        rejects(longName, lAt, "is 64 bytes long; at most 63 are allowed");

        RawGguf dup = new RawGguf().header(3, 2, 0).tensor("w", F32, 0, 4);
        long dAt = dup.pos();
        dup.tensor("w", F32, 32, 4).padTo(32).zeros(64);
        rejects(dup, dAt, "duplicate tensor name 'w'");
    }

    @Test
    void tooManyDimensions() {
        RawGguf r = oneTensorPrefix().string("t");
        long at = r.pos();
        r.i32(5);
        for (int i = 0; i < 5; i++) {
            r.i64(1);
        }
        r.i32(F32).i64(0).padTo(32).zeros(16);
        rejects(r, at, "tensor 't' has 5 dimensions; at most 4 are allowed");
    }

    @Test
    void negativeDimension() {
        RawGguf r = oneTensorPrefix().string("t").i32(2).i64(4);
        long at = r.pos();
        r.i64(-3).i32(F32).i64(0).padTo(32).zeros(16);
        rejects(r, at, "tensor 't' dimension 1 is negative (-3)");
    }

    @Test
    void sizeOverflow() {
        RawGguf r = oneTensorPrefix().string("t");
        long at = r.pos();
        r.i32(3).i64(1L << 31).i64(1L << 31).i64(1L << 31).i32(F32).i64(0).padTo(32).zeros(16);
        rejects(r, at + 4, "overflow a 64-bit element count or byte size");

        RawGguf bytes = oneTensorPrefix().string("t");
        long bAt = bytes.pos();
        bytes.i32(2).i64(1L << 31).i64(1L << 31).i32(GgmlType.F64.id()).i64(0).padTo(32).zeros(16);
        rejects(bytes, bAt + 4, "overflow a 64-bit element count or byte size");
    }

    @Test
    void unknownAndRemovedTensorTypes() {
        RawGguf unknown = oneTensorPrefix().string("t").i32(1).i64(32);
        long at = unknown.pos();
        unknown.i32(43).i64(0).padTo(32).zeros(32);
        rejects(unknown, at, "tensor 't' has unknown ggml type id 43");

        RawGguf removed = oneTensorPrefix().string("t").i32(1).i64(32);
        long rAt = removed.pos();
        removed.i32(4).i64(0).padTo(32).zeros(32);
        rejects(removed, rAt, "has type q4_2 (id 4), which was removed from ggml");
    }

    @Test
    void rowLengthNotAWholeNumberOfBlocks() {
        RawGguf r = oneTensorPrefix().string("q");
        long at = r.pos();
        r.i32(2).i64(48).i64(2).i32(GgmlType.Q4_0.id()).i64(0).padTo(32).zeros(64);
        rejects(r, at + 4, "tensor 'q' row length 48 is not a multiple of the Q4_0 block size 32");
    }

    @Test
    void misalignedOffset() {
        RawGguf r = oneTensorPrefix().string("t").i32(1).i64(4).i32(F32);
        long at = r.pos();
        r.i64(16).padTo(32).zeros(64);
        rejects(r, at, "tensor 't' data offset 16 is not a multiple of the alignment 32");
    }

    @Test
    void negativeOffset() {
        RawGguf r = oneTensorPrefix().string("t").i32(1).i64(4).i32(F32);
        long at = r.pos();
        r.i64(-32).padTo(32).zeros(64);
        rejects(r, at, "data offset 18446744073709551584 is out of range");
    }

    @Test
    void tensorDataPastTheEnd() {
        RawGguf r = oneTensorPrefix();
        long at = r.pos();
        r.tensor("t", F32, 0, 4).padTo(32).zeros(15);    // one byte short
        rejects(r, at, "tensor 't' data (16 bytes at data offset 0");
        rejects(r, at, "extends past the end of the file");

        RawGguf far = oneTensorPrefix();
        long fAt = far.pos();
        far.tensor("t", F32, Long.MAX_VALUE - 31, 4).padTo(32).zeros(16);
        rejects(far, fAt, "extends past the end of the file");
    }

    @Test
    void truncatedTensorInfos() {
        byte[] full = validWithOneTensor().toBytes();
        RawGguf prefix = oneTensorPrefix();
        long infoAt = prefix.pos();
        // cut inside the tensor's dimension field
        byte[] cut = Arrays.copyOf(full, (int) infoAt + 8 + 1 + 4 + 3);
        rejects(cut, infoAt + 13, "truncated: dimension 0 of tensor 't'");
    }

    @Test
    void overlappingTensors() {
        RawGguf r = new RawGguf().header(3, 2, 0).tensor("a", F32, 0, 16);
        long bAt = r.pos();
        r.tensor("b", F32, 32, 8).padTo(32).zeros(64);
        rejects(r, bAt, "tensor 'b' data [");
        rejects(r, bAt, "overlaps tensor 'a' data [");
    }

    @Test
    void outOfOrderAlignedNonOverlappingTensorsAreAccepted() throws IOException {
        RawGguf r = new RawGguf().header(3, 3, 0).tensor("late", F32, 64, 8).tensor("early", F32, 0, 4)
                .tensor("empty", F32, 32, 0).padTo(32);
        long dataStart = r.pos();
        r.zeros(96);
        try (GgufFile f = GgufFile.open(r.write(dir, "ooo.gguf"))) {
            assertEquals(dataStart + 64, f.tensor("late").fileOffset());
            assertEquals(dataStart, f.tensor("early").fileOffset());
            assertEquals(0, f.tensor("empty").byteSize());
            assertEquals(3, f.tensors().size());
        }
    }
}
