package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;

/**
 * Bit-exactness against ggml itself: the vectors under {@code ggml-reference/} were produced by
 * libggml-base's {@code to_float} and {@code from_float_ref} (see the README there).
 */
class GgmlReferenceTest {

    static Stream<GgmlType> dequantizable() {
        return QuantFormats.supported().stream().filter(t -> t != GgmlType.F32);
    }

    static Stream<GgmlType> quantizableWithReference() {
        return Stream.of(GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q3_K, GgmlType.Q4_K,
                GgmlType.Q5_K, GgmlType.Q6_K);
    }

    @ParameterizedTest
    @MethodSource("dequantizable")
    void dequantizeMatchesGgmlBitForBit(GgmlType type) throws IOException {
        ByteBuffer in = resource(type, "dequant", "GGDQ");
        assertEquals(type.id(), in.getInt(), "type id in reference file");
        int blocks = in.getInt();
        assertEquals(type.blockBytes(), in.getInt(), "block bytes");
        assertEquals(type.blockSize(), in.getInt(), "block size");
        int bytes = blocks * type.blockBytes();
        int count = blocks * type.blockSize();
        assertTrue(blocks > 0);

        QuantFormat format = QuantFormats.of(type);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = copyOf(arena, in, bytes);
            float[] actual = new float[count];
            format.dequantize(src, 0, actual, 0, count);
            for (int i = 0; i < count; i++) {
                int expected = Float.floatToRawIntBits(in.getFloat());
                if (expected != Float.floatToRawIntBits(actual[i])) {
                    fail(type + " block " + i / type.blockSize() + " element " + i % type.blockSize() + ": expected "
                            + Float.intBitsToFloat(expected) + " (0x" + Integer.toHexString(expected) + ") but was "
                            + actual[i] + " (0x" + Integer.toHexString(Float.floatToRawIntBits(actual[i])) + ")");
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("quantizableWithReference")
    void quantizeMatchesGgmlReferenceQuantizerByteForByte(GgmlType type) throws IOException {
        ByteBuffer in = resource(type, "quant", "GGQT");
        assertEquals(type.id(), in.getInt(), "type id in reference file");
        int count = in.getInt();
        int bytes = in.getInt();
        assertEquals(type.bytesFor(count), bytes);
        float[] src = new float[count];
        in.asFloatBuffer().get(src);
        in.position(in.position() + 4 * count);

        QuantFormat format = QuantFormats.of(type);
        assertTrue(format.canQuantize());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment actual = arena.allocate(bytes);
            format.quantize(src, 0, count, actual, 0);
            for (int i = 0; i < bytes; i++) {
                byte expected = in.get();
                byte got = actual.get(ValueLayout.JAVA_BYTE, i);
                if (expected != got) {
                    fail(type + " block " + i / type.blockBytes() + " byte " + i % type.blockBytes() + ": expected 0x"
                            + Integer.toHexString(expected & 0xFF) + " but was 0x" + Integer.toHexString(got & 0xFF));
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"F16", "BF16", "Q8_0", "Q4_0", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
    void quantizingAtAnOffsetWritesOnlyTheTargetBlocks(GgmlType type) throws IOException {
        ByteBuffer in = resource(type, "quant", "GGQT");
        in.getInt();
        in.getInt();
        in.getInt();
        int n = type.blockSize() == 1 ? 64 : type.blockSize() * 2;
        float[] src = new float[n + 3];
        in.asFloatBuffer().get(src, 3, n);
        QuantFormat format = QuantFormats.of(type);
        long bytes = type.bytesFor(n);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment atZero = arena.allocate(bytes);
            format.quantize(src, 3, n, atZero, 0);
            MemorySegment padded = arena.allocate(bytes + 10);
            padded.fill((byte) 0x5A);
            format.quantize(src, 3, n, padded, 7);
            assertEquals(-1, atZero.mismatch(padded.asSlice(7, bytes)));
            for (long i : new long[] {0, 6, 7 + bytes, 9 + bytes}) {
                assertEquals((byte) 0x5A, padded.get(ValueLayout.JAVA_BYTE, i), "byte " + i);
            }
        }
    }

    private static ByteBuffer resource(GgmlType type, String kind, String magic) throws IOException {
        String name = "/ggml-reference/" + type.ggmlName() + "." + kind + ".bin";
        try (InputStream stream = GgmlReferenceTest.class.getResourceAsStream(name)) {
            assertNotNull(stream, "missing test resource " + name);
            ByteBuffer buffer = ByteBuffer.wrap(stream.readAllBytes()).order(ByteOrder.LITTLE_ENDIAN);
            byte[] head = new byte[4];
            buffer.get(head);
            assertEquals(magic, new String(head, StandardCharsets.US_ASCII), name + " magic");
            return buffer;
        }
    }

    private static MemorySegment copyOf(Arena arena, ByteBuffer in, int bytes) {
        MemorySegment segment = arena.allocate(bytes);
        byte[] raw = new byte[bytes];
        in.get(raw);
        MemorySegment.copy(raw, 0, segment, ValueLayout.JAVA_BYTE, 0, bytes);
        return segment;
    }
}
