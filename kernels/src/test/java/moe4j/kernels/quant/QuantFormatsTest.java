package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;

class QuantFormatsTest {

    /**
     * The build runs these tests twice, the second time with the JVM held to 256-bit vectors and
     * {@code moe4j.test.vectorBits=256}: that run must take the 256-bit paths (the repacked types' kernels in halves, the
     * generic kernels for the rest), or it tests nothing new.
     */
    @Test
    void aJvmHeldToNarrowerVectorsTakesTheGenericKernels() {
        int expected = Integer.getInteger("moe4j.test.vectorBits", QuantFormats.vectorBits());
        assertEquals(expected, QuantFormats.vectorBits());
        assertEquals(QuantFormats.vectorBits() == 512, QuantFormats.fusedKernels());
    }

    static final Set<GgmlType> EXPECTED = EnumSet.of(GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0,
            GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K,
            GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS);

    static Set<GgmlType> supportedTypes() { return QuantFormats.supported(); }

    static List<GgmlType> unsupportedTypes() {
        return EnumSet.complementOf(EnumSet.copyOf(EXPECTED)).stream().toList();
    }

    @Test
    void theTypesWithRowKernelsOf256BitVectorsAreNamedInWords() {
        assertEquals("F32, Q4_0, Q8_0, IQ4_XS and BF16", QuantFormats.rowKernelTypesOf256BitVectors());
    }

    @Test
    void theTypesWhosePromptsTakeTheFloatTilesAreThoseNotRepackedHere() {
        // with 256-bit vectors the K-quants, Q4_0, Q8_0 and IQ4_XS are repacked and take tiles of their own, with 512-bit
        // ones Q4_K, Q5_K, Q6_K
        String expected = Simd.HALVES ? "F16 and BF16"
                : Simd.FUSED ? "F16, Q4_0, Q8_0, Q2_K, Q3_K, IQ4_XS and BF16" : "";
        assertEquals(expected, QuantFormats.promptTileTypes());
    }

    @Test
    void supportsExactlyTheTypesQwen3FilesUse() {
        assertEquals(EXPECTED, QuantFormats.supported());
        assertThrows(UnsupportedOperationException.class, () -> QuantFormats.supported().add(GgmlType.IQ2_XXS));
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void formatDescribesItsOwnType(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        assertSame(type, format.type());
        assertTrue(QuantFormats.isSupported(type));
        assertEquals(type.blockSize(), format.blockSize());
        assertEquals(type.blockBytes(), format.blockBytes());
        assertEquals(type.name(), format.getClass().getSimpleName(), "one class per type, named after it");
    }

    @ParameterizedTest
    @MethodSource("unsupportedTypes")
    void unsupportedTypesThrowAClearError(GgmlType type) {
        assertFalse(QuantFormats.isSupported(type));
        UnsupportedTensorTypeException e = assertThrows(UnsupportedTensorTypeException.class, () -> QuantFormats.of(type));
        assertSame(type, e.type());
        assertTrue(e.getMessage().startsWith("tensor type " + type.ggmlName() + " (id " + type.id()
                + ") is not supported yet (supported: f32, f16, q4_0,"), e.getMessage());
        assertTrue(e.getMessage().contains("iq4_xs"), e.getMessage());
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_1", "Q5_0", "Q5_1", "Q2_K", "IQ4_NL", "IQ4_XS"})
    void quantizingToADecodeOnlyTypeNamesTheType(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        assertFalse(format.canQuantize());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(type.blockBytes());
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> format.quantize(new float[type.blockSize()], 0, type.blockSize(), dst, 0));
            assertTrue(e.getMessage().contains(type.ggmlName()), e.getMessage());
        }
    }

    @Test
    void partialBlocksAndOutOfRangeArgumentsAreRejected() {
        QuantFormat q4k = QuantFormats.of(GgmlType.Q4_K);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment twoBlocks = arena.allocate(2 * 144);
            float[] out = new float[512];
            IllegalArgumentException partial = assertThrows(IllegalArgumentException.class,
                    () -> q4k.dequantize(twoBlocks, 0, out, 0, 100));
            assertTrue(partial.getMessage().contains("q4_K"), partial.getMessage());
            IndexOutOfBoundsException tooFewBytes = assertThrows(IndexOutOfBoundsException.class,
                    () -> q4k.dequantize(twoBlocks, 1, out, 0, 512));
            assertTrue(tooFewBytes.getMessage().contains("288 bytes"), tooFewBytes.getMessage());
            assertThrows(IndexOutOfBoundsException.class, () -> q4k.dequantize(twoBlocks, 0, out, 1, 512));
            assertThrows(IndexOutOfBoundsException.class, () -> q4k.quantize(new float[512], 0, 512, twoBlocks, 144));
            assertThrows(IllegalArgumentException.class,
                    () -> q4k.randomBlocks(new SplittableRandom(1), twoBlocks, 0, -1));
        }
    }

    @Test
    void dequantizeRowReadsTheRequestedRow() {
        try (Arena arena = Arena.ofConfined()) {
            QuantFormat q8 = QuantFormats.of(GgmlType.Q8_0);
            int rowLength = 64;
            int rows = 3;
            MemorySegment data = arena.allocate(rows * GgmlType.Q8_0.bytesFor(rowLength));
            q8.randomBlocks(new SplittableRandom(1), data, 0, (long) rows * rowLength / 32);
            GgufTensor tensor = tensor("blk.0.attn_q.weight", GgmlType.Q8_0, rowLength, rows, data);

            float[] all = new float[rows * rowLength];
            q8.dequantize(data, 0, all, 0, all.length);
            float[] row = new float[rowLength + 5];
            QuantFormats.dequantizeRow(tensor, 2, row);
            for (int i = 0; i < rowLength; i++) {
                assertEquals(Float.floatToRawIntBits(all[2 * rowLength + i]), Float.floatToRawIntBits(row[i]));
            }
        }
    }

    @Test
    void dequantizeRowErrorsNameTheTensor() {
        try (Arena arena = Arena.ofConfined()) {
            GgufTensor q8 = tensor("blk.1.ffn_up.weight", GgmlType.Q8_0, 64, 2, arena.allocate(2 * 68));
            IndexOutOfBoundsException noRow = assertThrows(IndexOutOfBoundsException.class,
                    () -> QuantFormats.dequantizeRow(q8, 2, new float[64]));
            assertTrue(noRow.getMessage().contains("blk.1.ffn_up.weight") && noRow.getMessage().contains("2 rows"),
                    noRow.getMessage());
            assertThrows(IndexOutOfBoundsException.class, () -> QuantFormats.dequantizeRow(q8, -1, new float[64]));
            IllegalArgumentException shortDst = assertThrows(IllegalArgumentException.class,
                    () -> QuantFormats.dequantizeRow(q8, 0, new float[63]));
            assertTrue(shortDst.getMessage().contains("blk.1.ffn_up.weight"), shortDst.getMessage());

            GgufTensor iq2 = tensor("blk.0.ffn_down_exps.weight", GgmlType.IQ2_XXS, 256, 1, arena.allocate(66));
            UnsupportedTensorTypeException unsupported = assertThrows(UnsupportedTensorTypeException.class,
                    () -> QuantFormats.dequantizeRow(iq2, 0, new float[256]));
            assertTrue(unsupported.getMessage().startsWith("tensor blk.0.ffn_down_exps.weight: tensor type iq2_xxs (id 16)"),
                    unsupported.getMessage());
            assertSame(GgmlType.IQ2_XXS, unsupported.type());
        }
    }

    private static GgufTensor tensor(String name, GgmlType type, long rowLength, long rows, MemorySegment data) {
        return new GgufTensor(name, type, new long[] {rowLength, rows, 1, 1}, 2, Path.of("synthetic.gguf"), 0, data);
    }
}
