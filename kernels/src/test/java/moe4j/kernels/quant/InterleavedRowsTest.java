package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import moe4j.gguf.GgmlType;

/**
 * Q4_K, Q5_K and Q6_K rows repacked in groups of 16 ({@link Q4_KInterleaved}, {@link Q5_KInterleaved},
 * {@link Q6_KInterleaved}), and Q2_K's, Q3_K's, Q4_0's, Q8_0's and IQ4_XS's ({@link Q2_KInterleaved},
 * {@link Q3_KInterleaved}, {@link Q4_0Interleaved}, {@link Q8_0Interleaved}, {@link IQ4_XSInterleaved}; 256-bit vectors
 * only): one token and a batch, in 512-bit vectors (where the machine has them) and in 256-bit halves (on every
 * machine for the types repacked with 512-bit vectors too; Q2_K to IQ4_XS where the vectors are 256 bits, which the
 * build's second test run forces), give, bit for bit, what a plain scalar loop gives with the same integer sums and the same float
 * multiply-adds per block, and what the batch path gives on the rows as the file holds them ({@link PairTile}); and the
 * repacked rows decode to the same weights.
 */
class InterleavedRowsTest {

    private static int blockBytes(GgmlType type) {
        return switch (type) {
            case Q2_K -> 84;
            case Q3_K -> 110;
            case Q4_K -> 144;
            case Q5_K -> 176;
            case Q6_K -> 210;
            case Q4_0 -> 18;
            case Q8_0 -> 34;
            case IQ4_XS -> 136;
            default -> throw new IllegalArgumentException(type.toString());
        };
    }

    /** Bytes of a row of {@code width} values of {@code type} as the file holds it. */
    private static long rowBytes(GgmlType type, int width) {
        return type == GgmlType.Q4_0 || type == GgmlType.Q8_0 ? width / 32 * (long) blockBytes(type)
                : (long) width / 256 * blockBytes(type);
    }

    /** Group-block offsets: where sub-block {@code j}'s nibble vectors start, and its fifth bits (Q5_K). */
    private static long subBlock(GgmlType type, int j) {
        return type == GgmlType.Q4_K ? Q4_KInterleaved.QUANTS + 256L * j
                : Q5_KInterleaved.QUANTS + (long) Q5_KInterleaved.SUB_BLOCK_BYTES * j;
    }

    @BeforeEach
    void needsTheRepackedKernels() {
        assumeTrue(InterleavedRows.available(), "the interleaved kernels need 512- or 256-bit vectors; this JVM's are "
                + Simd.F.vectorBitSize() + " bits");
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
    void oneTokenAndBatchesEqualAScalarLoopAndTheFileLayoutsBatchPathBitForBit(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        int bytes = blockBytes(type);
        SplittableRandom rnd = new SplittableRandom(7);
        int rows = 48; // three groups: a batch call's two-group tiles end with a group of zeros
        // tiles of six tokens multiplied three at a time, a last one or two in a two-token step: 9 = 6 + 3, 7 = 6 + 1 (a
        // two-token step with its token repeated), 5 = 3 + 2, 2
        for (int tokens : new int[] {9, 7, 5, 2}) {
            // 4608: past the 2048 values of a batch's chunk (Q4_KInterleaved#tokensHalves), and not a multiple of it
            for (int width : new int[] {256, 768, 2048, 4608}) {
                try (Arena arena = Arena.ofConfined()) {
                    long rowBytes = (long) width / 256 * bytes;
                    MemorySegment data = arena.allocate(rows * rowBytes);
                    format.randomBlocks(rnd, data, 0, rows * (rowBytes / bytes));
                    PreparedActivations x = PreparedDotTest.gaussianRows(format, rnd, tokens + 1, width);
                    checkAgainstReferences(type, data, rowBytes, rows, width, x, 1, tokens, arena);
                }
            }
        }
    }

    /** The largest quants, scales, minimums and codes: the 16-bit lane sums at their bound, the block sums past 2^24. */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q5_K"})
    void theLargestQuantsScalesAndCodesStayExact(GgmlType type) {
        int rows = 32;
        int width = 512;
        int bytes = blockBytes(type);
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = 2L * bytes;
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (long b = 0; b < rows * 2; b++) {
                long block = b * bytes;
                for (int i = 4; i < bytes; i++) {
                    data.set(Layouts.BYTE, block + i, (byte) 0xFF); // scales and minimums 63, quants 15 (Q5_K: 31)
                }
                data.set(Layouts.SHORT_LE, block, Float.floatToFloat16(b % 2 == 0 ? 1.5f : -0.25f));
                data.set(Layouts.SHORT_LE, block + 2, Float.floatToFloat16(0.75f));
            }
            PreparedActivations x = extremeCodes(type, width);
            checkAgainstReferences(type, data, rowBytes, rows, width, x, 0, 5, arena);
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q5_K"})
    void repackedRowsHoldTheSameScalesMinimumsAndQuants(GgmlType type) {
        checkScalesMinimumsAndQuants(type, false);
    }

    /**
     * {@link Q5_KInterleaved256}'s layout as its documentation states it: pair {@code u}'s quant at bits
     * {@code 5(u % 3)} of vector {@code u / 3}, pair 15's from bit 15 of the five vectors.
     */
    @Test
    void q5_KRowsFor256BitVectorsHoldTheSameScalesMinimumsAndQuants() {
        checkScalesMinimumsAndQuants(GgmlType.Q5_K, true);
    }

    /** Q4_K's or Q5_K's repacked rows read as their layout states; {@code q5For256} for Q5_K's of 256-bit vectors. */
    private static void checkScalesMinimumsAndQuants(GgmlType type, boolean q5For256) {
        SplittableRandom rnd = new SplittableRandom(3);
        int rows = 16;
        int width = 512;
        QuantFormat format = QuantFormats.of(type);
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = 2L * blockBytes(type);
            MemorySegment data = arena.allocate(rows * rowBytes);
            format.randomBlocks(rnd, data, 0, rows * 2);
            MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, rows, width));
            // the layout of 512-bit vectors, on every machine (256-bit ones bind Q5_K's own), or that one
            if (q5For256) {
                Q5_KInterleaved256.repack(data, 0, rowBytes, width, 0, 1, packed, 0);
            } else if (type == GgmlType.Q5_K) {
                Q5_KInterleaved.repack(data, 0, rowBytes, width, 0, 1, packed, 0);
            } else {
                Q4_KInterleaved.repack(data, 0, rowBytes, width, 0, 1, packed, 0);
            }
            long groupBlock = InterleavedRows.bytes(type, 16, 256);
            float[] expected = new float[width];
            for (int r = 0; r < rows; r++) {
                format.dequantize(data, r * rowBytes, expected, 0, width);
                for (int b = 0; b < 2; b++) {
                    long at = b * groupBlock;
                    float d = packed.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at + 4L * r);
                    float dmin = packed.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at + Q4_KInterleaved.DMIN + 4L * r);
                    for (int e = 0; e < 256; e++) {
                        int j = e / 32;
                        int m = e % 32;
                        int h = m / 16;
                        int p = m % 16;
                        long sub = at + subBlock(type, j);
                        short lane = packed.get(Layouts.SHORT_LE, sub + 64L * (p / 4) + 2L * (2 * r + h));
                        int q = (lane >>> (4 * (p % 4))) & 0xF;
                        if (q5For256) {
                            q = 0;
                            for (int v = 0; v < 5; v++) {
                                int joined = packed.get(Layouts.SHORT_LE, sub + 64L * v + 2L * (2 * r + h)) & 0xFFFF;
                                q |= p == 15 ? (joined >>> 15) << v : p / 3 == v ? joined >>> (5 * (p % 3)) & 0x1F : 0;
                            }
                        } else if (type == GgmlType.Q5_K) {
                            short fifth = packed.get(Layouts.SHORT_LE, sub + Q5_KInterleaved.FIFTH_BITS + 2L * (2 * r + h));
                            q |= ((fifth >>> p) & 1) << 4;
                        }
                        int scale = packed.get(Layouts.BYTE, at + Q4_KInterleaved.SCALES + 16L * j + r);
                        int min = packed.get(Layouts.BYTE, at + Q4_KInterleaved.MINS + 16L * j + r);
                        float value = d * scale * q - dmin * min;
                        assertEquals(expected[256 * b + e], value, 0f, "row " + r + " element " + (256 * b + e));
                    }
                }
            }
        }
    }

    /**
     * Q6_K at its bounds: quants 0 and 63 ({@code q - 32} = -32 and 31), scales -128 and 127, codes all -127, all 127 or
     * alternating: a window's 16-bit sums reach {@code 8 * 32 * 127} in magnitude, the block sums past 2^24.
     */
    /**
     * Products of repacked rows against the format's own dequantizer (not the kernels' arithmetic written again): each
     * (row, token) within float rounding of the double dot product of the decoded weights with the rounded activations,
     * for groups from the second on, into an output with an offset and a stride wider than the rows (the gaps
     * untouched), an odd number of tokens, and one token at a time the same bits as the batch.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q8_0", "IQ4_XS"})
    void productsAgreeWithTheFormatsOwnDequantization(GgmlType type) {
        assumeTrue(InterleavedRows.fitsShape(type, 32, 512), type + " is not repacked with this machine's vectors");
        QuantFormat format = QuantFormats.of(type);
        int rows = 48;
        int width = 512;
        int tokens = 5;
        int stride = rows + 3;
        SplittableRandom rnd = new SplittableRandom(11);
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = rowBytes(type, width);
            MemorySegment data = arena.allocate(rows * rowBytes);
            format.randomBlocks(rnd, data, 0, rows * (rowBytes / blockBytes(type)));
            MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, rows, width));
            InterleavedRows.repack(type, data, 0, rowBytes, width, 0, rows / 16, packed, 0);
            PreparedActivations x = PreparedDotTest.gaussianRows(format, rnd, tokens, width);
            float[] out = new float[5 + tokens * stride];
            Arrays.fill(out, Float.NaN);
            InterleavedRows.dot(type, packed, 0, 1, rows / 16, x, 0, tokens, out, 5, stride);
            float[] alone = new float[rows * tokens];
            for (int t = 0; t < tokens; t++) {
                for (int g = 1; g < rows / 16; g++) {
                    InterleavedRows.dot(type, packed, 0, g, g + 1, x, t, 1, alone, 16 * g + t * rows, rows);
                }
            }
            float[] weights = new float[width];
            for (int r = 0; r < rows; r++) {
                format.dequantize(data, r * rowBytes, weights, 0, width);
                for (int t = 0; t < tokens; t++) {
                    int at = 5 + (r - 16) + t * stride;
                    if (r < 16) {
                        continue;
                    }
                    double dot = 0;
                    double magnitude = 0;
                    for (int i = 0; i < width; i++) {
                        double p = (double) weights[i] * x.values()[t * width + i];
                        dot += p;
                        magnitude += Math.abs(p);
                    }
                    assertEquals(dot, out[at], 1e-5 * magnitude + 1e-30, type + " row " + r + " token " + t);
                    assertEquals(out[at], alone[r + t * rows], 0f, type + " row " + r + " token " + t + ": alone vs batch");
                }
            }
            for (int t = 0; t < tokens; t++) {
                for (int gap = 5 + (rows - 16) + t * stride; gap < 5 + (t + 1) * stride && gap < out.length; gap++) {
                    assertTrue(Float.isNaN(out[gap]), type + ": output " + gap + " between tokens was written");
                }
            }
        }
    }

    /** The repacked types in words name exactly those {@code fitsShape} takes. */
    @Test
    void typesInWordsAreTheRepackedTypes() {
        for (GgmlType t : GgmlType.values()) {
            assertEquals(InterleavedRows.fitsShape(t, InterleavedRows.ROWS, 256),
                    Arrays.asList(InterleavedRows.types().split(", | and ")).contains(t.name()), t.name());
        }
        assertTrue(InterleavedRows.types().endsWith(InterleavedRows.TYPES));
    }

    /**
     * Q3_K at its bounds: quants 0 and 7 ({@code q - 4} = -4 and 3), scales -32 and 31, codes all -127, all 127 or
     * alternating.
     */
    @Test
    void theLargestQ3_KQuantsScalesAndCodesStayExact() {
        int rows = 32;
        int width = 512;
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = 2L * 110;
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (long b = 0; b < rows * 2; b++) {
                long block = b * 110;
                byte quants = (byte) (b % 3 == 0 ? 0xFF : 0);
                for (int i = 0; i < 96; i++) {
                    data.set(Layouts.BYTE, block + i, quants);
                }
                for (int i = 96; i < 108; i++) {
                    data.set(Layouts.BYTE, block + i, (byte) (b % 2 == 0 ? 0 : 0xFF));
                }
                data.set(Layouts.SHORT_LE, block + 108, Float.floatToFloat16(b % 4 < 2 ? 1.5f : -0.25f));
            }
            PreparedActivations x = extremeCodes(GgmlType.Q3_K, width);
            checkAgainstReferences(GgmlType.Q3_K, data, rowBytes, rows, width, x, 0, 5, arena);
        }
    }

    /**
     * Q2_K at its bounds: quants 0 and 3, scales and minimums 0 and 15, codes all -127, all 127 or alternating, and a
     * block whose every code is -128 (the group code sums at their most negative).
     */
    @Test
    void theLargestQ2_KQuantsScalesAndCodesStayExact() {
        int rows = 32;
        int width = 512;
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = 2L * 84;
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (long b = 0; b < rows * 2; b++) {
                long block = b * 84;
                for (int g = 0; g < 16; g++) {
                    data.set(Layouts.BYTE, block + g, (byte) ((b + g) % 3 == 0 ? 0xFF : (b + g) % 3 == 1 ? 0x0F : 0xF0));
                }
                byte quants = (byte) (b % 3 == 0 ? 0xFF : b % 3 == 1 ? 0 : 0xE4);
                for (int i = 16; i < 80; i++) {
                    data.set(Layouts.BYTE, block + i, quants);
                }
                data.set(Layouts.SHORT_LE, block + 80, Float.floatToFloat16(b % 4 < 2 ? 1.5f : -0.25f));
                data.set(Layouts.SHORT_LE, block + 82, Float.floatToFloat16(b % 2 == 0 ? 0.75f : -2f));
            }
            PreparedActivations x = extremeCodes(GgmlType.Q2_K, width);
            checkAgainstReferences(GgmlType.Q2_K, data, rowBytes, rows, width, x, 0, 5, arena);
            // codes of -128: Q8_K's rounding gives them to no block of floats, so they are set as prepared codes
            int[] codes = x.codes();
            Arrays.fill(codes, 0, width, -128);
            PairTile.packCodes(x.laneOrder(), codes, 0, x.tilePairs(), x.tileSums(), x.groupSums(), width);
            checkAgainstReferences(GgmlType.Q2_K, data, rowBytes, rows, width, x, 0, 1, arena);
        }
    }

    @Test
    void theLargestQ6_KQuantsScalesAndCodesStayExact() {
        int rows = 32;
        int width = 512;
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = 2L * 210;
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (long b = 0; b < rows * 2; b++) {
                long block = b * 210;
                byte quants = (byte) (b % 3 == 0 ? 0xFF : 0);
                for (int i = 0; i < 192; i++) {
                    data.set(Layouts.BYTE, block + i, quants);
                }
                for (int g = 0; g < 16; g++) {
                    data.set(Layouts.BYTE, block + 192 + g, (byte) ((b + g) % 2 == 0 ? -128 : 127));
                }
                data.set(Layouts.SHORT_LE, block + 208, Float.floatToFloat16(b % 2 == 0 ? 1.5f : -0.25f));
            }
            PreparedActivations x = extremeCodes(GgmlType.Q6_K, width);
            checkAgainstReferences(GgmlType.Q6_K, data, rowBytes, rows, width, x, 0, 5, arena);
        }
    }

    /** {@code blocks} random blocks of {@code format}, from a generator seeded with {@code seed}. */
    private static MemorySegment randomBlocks(QuantFormat format, Arena arena, long seed, int blocks) {
        MemorySegment data = arena.allocate((long) blocks * format.blockBytes());
        format.randomBlocks(new SplittableRandom(seed), data, 0, blocks);
        return data;
    }

    @Test
    void repackedQ6_KRowsHoldTheSameScalesAndQuants() {
        int rows = 16;
        int width = 512;
        long rowBytes = 2L * 210;
        QuantFormat format = QuantFormats.of(GgmlType.Q6_K);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = randomBlocks(format, arena, 5, rows * 2);
            MemorySegment packed = arena.allocate(Q6_KInterleaved.bytes(rows, width));
            Q6_KInterleaved.repack(data, 0, rowBytes, width, 0, 1, packed, 0);
            float[] expected = new float[width];
            for (int r = 0; r < rows; r++) {
                format.dequantize(data, r * rowBytes, expected, 0, width);
                for (int b = 0; b < 2; b++) {
                    long at = (long) b * Q6_KInterleaved.GROUP_BLOCK_BYTES;
                    float d = packed.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at + 4L * r);
                    for (int j = 0; j < 8; j++) {
                        long sub = at + Q6_KInterleaved.QUANTS + (long) Q6_KInterleaved.SUB_BLOCK_BYTES * j;
                        for (int p = 0; p < 16; p++) {
                            for (int h = 0; h < 2; h++) {
                                int v = p / 4;
                                int k = p % 4;
                                int lane = 2 * r + h;
                                short low = packed.get(Layouts.SHORT_LE, sub + 64L * v + 2L * lane);
                                short high = packed.get(Layouts.SHORT_LE, sub + Q6_KInterleaved.HIGH_BITS + 64L * (v / 2) + 2L * lane);
                                int q = ((low & 0xFFFF) >>> (4 * k)) & 0xF
                                        | (((high & 0xFFFF) >>> Q6_KInterleaved.highBitsAt(v % 2, k)) & 3) << 4;
                                int e = Q6_KInterleaved.element(j, p, h);
                                int scale = packed.get(Layouts.BYTE, at + Q6_KInterleaved.SCALES + 16L * (e / 16) + r);
                                float value = d * scale * (q - 32);
                                assertEquals(expected[256 * b + e], value, 0f, "row " + r + " element " + (256 * b + e));
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * {@link Q6_KInterleaved256}'s layout as its documentation states it, against the format's own dequantization: a
     * group's pairs 0-5 two a vector at bits 0-5 and 6-11, pairs 6 and 7 from the low nibbles at bits 12-15 of the
     * first two vectors and the top bit pairs at bits 12-15 of the third; and the batch decoder's values, which are
     * the same quants.
     */
    @Test
    void q6_KRowsFor256BitVectorsHoldTheSameScalesAndQuants() {
        int rows = 16;
        int width = 512;
        long rowBytes = 2L * 210;
        QuantFormat format = QuantFormats.of(GgmlType.Q6_K);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = randomBlocks(format, arena, 6, rows * 2);
            MemorySegment packed = arena.allocate(Q6_KInterleaved256.bytes(rows, width));
            Q6_KInterleaved256.repack(data, 0, rowBytes, width, 0, 1, packed, 0);
            float[] expected = new float[width];
            short[] values = new short[16 * 2 * 8 * 16];
            for (int b = 0; b < 2; b++) {
                long at = (long) b * Q6_KInterleaved256.GROUP_BLOCK_BYTES;
                Q6_KInterleaved256.decodeHalves(packed, at, values, 0);
                for (int r = 0; r < rows; r++) {
                    format.dequantize(data, r * rowBytes, expected, 0, width);
                    float d = packed.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, at + 4L * r);
                    for (int k = 0; k < 16; k++) {
                        long group = at + Q6_KInterleaved256.QUANTS + (long) Q6_KInterleaved256.GROUP_BYTES * k;
                        for (int h = 0; h < 2; h++) {
                            int[] lane = new int[3];
                            for (int m = 0; m < 3; m++) {
                                lane[m] = packed.get(Layouts.SHORT_LE, group + 64L * m + 2L * (2 * r + h)) & 0xFFFF;
                            }
                            int[] q = {lane[0] & 0x3F, lane[0] >>> 6 & 0x3F, lane[1] & 0x3F, lane[1] >>> 6 & 0x3F,
                                    lane[2] & 0x3F, lane[2] >>> 6 & 0x3F, lane[0] >>> 12 | (lane[2] >>> 12 & 3) << 4,
                                    lane[1] >>> 12 | (lane[2] >>> 14) << 4};
                            for (int u = 0; u < 8; u++) {
                                int e = 16 * k + 8 * h + u;
                                int scale = packed.get(Layouts.BYTE, at + Q6_KInterleaved256.SCALES + 16L * k + r);
                                String where = "row " + r + " element " + (256 * b + e);
                                assertEquals(expected[256 * b + e], d * scale * (q[u] - 32), 0f, where);
                                // decodeHalves: group k, rows 8(r/8).., lane 2(r%8) + h
                                int decoded = values[Q6_KInterleaved256.valuesAt(k, r / 8, u) + 2 * (r % 8) + h];
                                assertEquals(q[u], decoded, "decoded, " + where);
                            }
                        }
                    }
                }
            }
        }
    }

    @Test
    void fitsOnlyWholeGroupsOfWholeSuperBlocksOfTheRepackedTypes() {
        for (GgmlType type : new GgmlType[] {GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K}) {
            assertTrue(InterleavedRows.fits(type, 32, 2048));
            assertFalse(InterleavedRows.fits(type, 24, 2048));
            assertFalse(InterleavedRows.fits(type, 32, 2048 + 32));
        }
        assertEquals(Simd.HALVES, InterleavedRows.fitsShape(GgmlType.Q3_K, 32, 2048), "Q3_K only with 256-bit vectors");
        assertEquals(Simd.HALVES, InterleavedRows.fitsShape(GgmlType.Q2_K, 32, 2048), "Q2_K only with 256-bit vectors");
        assertFalse(InterleavedRows.fitsShape(GgmlType.Q2_K, 24, 2048));
        assertEquals(Simd.HALVES, InterleavedRows.fitsShape(GgmlType.Q8_0, 32, 2048), "Q8_0 only with 256-bit vectors");
        assertEquals(Simd.HALVES, InterleavedRows.fitsShape(GgmlType.IQ4_XS, 32, 2048), "IQ4_XS only with 256-bit vectors");
        assertFalse(InterleavedRows.fitsShape(GgmlType.F16, 32, 2048));
        assertEquals(2 * 8 * Q4_KInterleaved.GROUP_BLOCK_BYTES, InterleavedRows.bytes(GgmlType.Q4_K, 32, 2048));
        assertEquals(2 * 8 * Q5_KInterleaved.GROUP_BLOCK_BYTES, InterleavedRows.bytes(GgmlType.Q5_K, 32, 2048));
        assertEquals(16 * 144 * 2432 / 2304, Q4_KInterleaved.GROUP_BLOCK_BYTES);
        assertEquals(2944, Q5_KInterleaved.GROUP_BLOCK_BYTES);
        assertEquals(2 * 8 * Q6_KInterleaved.GROUP_BLOCK_BYTES, InterleavedRows.bytes(GgmlType.Q6_K, 32, 2048));
        assertEquals(3392, Q6_KInterleaved.GROUP_BLOCK_BYTES);
        assertEquals(Q6_KInterleaved.GROUP_BLOCK_BYTES, Q6_KInterleaved256.GROUP_BLOCK_BYTES);
        assertEquals(2 * 8 * 1856, InterleavedRows.bytes(GgmlType.Q3_K, 32, 2048));
        assertEquals(2 * 8 * 1408, InterleavedRows.bytes(GgmlType.Q2_K, 32, 2048));
        assertEquals(16 * 84 + 64, Q2_KInterleaved.GROUP_BLOCK_BYTES, "d and dmin as floats: 64 bytes more than 16 blocks");
        assertEquals(2 * 64 * (16 * 34 + 32), InterleavedRows.bytes(GgmlType.Q8_0, 32, 2048), "d as floats: 32 bytes more");
        assertEquals(2 * 8 * (16 * 136 + 64), InterleavedRows.bytes(GgmlType.IQ4_XS, 32, 2048), "d and scales: 64 bytes more");
        assertThrows(IllegalArgumentException.class, () -> InterleavedRows.bytes(GgmlType.F16, 32, 2048));
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q8_0", "IQ4_XS"})
    void rejectsActivationsPreparedForAnotherTypeAndGroupsPastTheEnd(GgmlType type) {
        // Q8_0's and IQ4_XS's activations are in the order their repacked kernels read only where the vectors are 256 bits
        assumeTrue(type != GgmlType.Q8_0 && type != GgmlType.IQ4_XS || Simd.HALVES,
                type + " is repacked only where the vectors are 256 bits");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, 16, 256));
            PreparedActivations other = new PreparedActivations();
            other.reserve(QuantFormats.of(type == GgmlType.Q8_0 ? GgmlType.Q4_0 : GgmlType.Q8_0), 1, 256);
            other.prepareRow(new float[256], 0, 0);
            float[] out = new float[32];
            assertThrows(IllegalArgumentException.class,
                    () -> InterleavedRows.dot(type, packed, 0, 0, 1, other, 0, 1, out, 0, 16));
            PreparedActivations x = PreparedDotTest.gaussianRows(QuantFormats.of(type), new SplittableRandom(1), 1, 256);
            assertThrows(IndexOutOfBoundsException.class,
                    () -> InterleavedRows.dot(type, packed, 0, 0, 2, x, 0, 1, out, 0, 16));
            assertThrows(IndexOutOfBoundsException.class,
                    () -> InterleavedRows.dot(type, packed, 0, 0, 1, x, 0, 2, out, 0, 16));
        }
    }

    /**
     * Rows prepared for Q8_0 or IQ4_XS rows left in the file's layout carry no copy of their codes as floats (which only
     * batches of repacked rows read), and a batch of repacked rows refuses them rather than read a stale or empty copy.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q8_0", "IQ4_XS"})
    void onlyRowsPreparedForRepackedRowsCarryFloatCodes(GgmlType type) {
        assumeTrue(InterleavedRows.fitsShape(type, 16, 256), type + " is repacked only where the vectors are 256 bits");
        QuantFormat format = QuantFormats.of(type);
        PreparedActivations forRepacked = new PreparedActivations();
        PreparedActivations forFileLayout = new PreparedActivations();
        forRepacked.reserve(format, 4, 256, true);
        forFileLayout.reserve(format, 4, 256, false);
        SplittableRandom rnd = new SplittableRandom(3);
        float[] row = new float[256];
        for (int t = 0; t < 4; t++) {
            for (int i = 0; i < row.length; i++) {
                row[i] = (float) rnd.nextGaussian();
            }
            forRepacked.prepareRow(row, 0, t);
            forFileLayout.prepareRow(row, 0, t);
        }
        float[] codes = forRepacked.floatCodes();
        for (int i = 0; i < 4 * 256; i++) {
            assertEquals(forRepacked.codes()[i], codes[i], "code " + i);
        }
        assertThrows(IllegalStateException.class, forFileLayout::floatCodes);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, 16, 256));
            float[] out = new float[16 * 4];
            assertThrows(IllegalStateException.class,
                    () -> InterleavedRows.dot(type, packed, 0, 0, 1, forFileLayout, 0, 4, out, 0, 16));
            InterleavedRows.dot(type, packed, 0, 0, 1, forRepacked, 0, 4, out, 0, 16);
        }
    }

    /**
     * The one-token and batch products of the types repacked only for 256-bit vectors whose kernels sum as llama.cpp
     * does (Q4_0, Q8_0, IQ4_XS) against a plain loop of the same integer sums and float steps ({@link #scalarBlockSums}), bit
     * for bit: random blocks, then the extremes (every quant at its least or greatest, against codes of 127, -127 or
     * alternating: the 16-bit sums at their bound).
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_0", "Q8_0", "IQ4_XS"})
    void productsEqualTheirScalarSumsBitForBit(GgmlType type) {
        assumeTrue(InterleavedRows.fitsShape(type, 16, 256), type + " is repacked only where the vectors are 256 bits");
        QuantFormat format = QuantFormats.of(type);
        int blockValues = type == GgmlType.IQ4_XS ? 256 : 32;
        SplittableRandom rnd = new SplittableRandom(13);
        int rows = 48;
        // 4608: past the 2048 values of Q8_0's batch chunk (Q8_0Interleaved#tokensHalves), and not a multiple of it
        for (int width : new int[] {256, 768, 2048, 4608}) {
            for (boolean extreme : new boolean[] {false, true}) {
                try (Arena arena = Arena.ofConfined()) {
                    long rowBytes = rowBytes(type, width);
                    long blocks = rows * (long) width / blockValues;
                    MemorySegment data = arena.allocate(rows * rowBytes);
                    format.randomBlocks(rnd, data, 0, blocks);
                    if (extreme) {
                        for (long b = 0; b < blocks; b++) {
                            setToExtremes(type, data, blockBytes(type) * b, b);
                        }
                    }
                    // ten tokens: batches of two tiles and a tail, of two or three (no tile), from a later first token
                    PreparedActivations x = extreme ? extremeCodes(type, width)
                            : PreparedDotTest.gaussianRows(format, rnd, 10, width);
                    int tokens = x.rows();
                    MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, rows, width));
                    InterleavedRows.repack(type, data, 0, rowBytes, width, 0, rows / 16, packed, 0);
                    float[] expected = new float[rows * tokens];
                    float[] alone = new float[rows];
                    for (int t = 0; t < tokens; t++) {
                        InterleavedRows.dot(type, packed, 0, 0, rows / 16, x, t, 1, alone, 0, rows);
                        for (int r = 0; r < rows; r++) {
                            expected[r + t * rows] = scalarBlockSums(type, data, r * rowBytes, width, x, t);
                            assertEquals(Float.floatToRawIntBits(expected[r + t * rows]), Float.floatToRawIntBits(alone[r]),
                                    type + " width " + width + (extreme ? " extreme" : "") + " row " + r + " token " + t);
                        }
                    }
                    int[][] batches = {{0, tokens}, {1, tokens - 1}, {1, 2}, {tokens - 3, 3}};
                    for (int[] batch : batches) {
                        float[] out = new float[rows * batch[1]];
                        InterleavedRows.dot(type, packed, 0, 0, rows / 16, x, batch[0], batch[1], out, 0, rows);
                        for (int t = 0; t < batch[1]; t++) {
                            for (int r = 0; r < rows; r++) {
                                assertEquals(Float.floatToRawIntBits(expected[r + (batch[0] + t) * rows]),
                                        Float.floatToRawIntBits(out[r + t * rows]), type + " width " + width
                                        + (extreme ? " extreme" : "") + " batch of " + batch[1] + " from token "
                                        + batch[0] + ", row " + r + " token " + t);
                            }
                        }
                    }
                }
            }
        }
    }

    /**
     * Block {@code b} at {@code block} with every quant at its least (every third block) or greatest: Q4_0's 0 or 15,
     * Q8_0's -128 or 127, IQ4_XS's levels -127 or 113 (every other block) with scales -32 or 31 (every third).
     */
    private static void setToExtremes(GgmlType type, MemorySegment data, long block, long b) {
        boolean least = b % 3 == 0;
        switch (type) {
            case Q4_0 -> {
                for (int t = 2; t < 18; t++) {
                    data.set(Layouts.BYTE, block + t, (byte) (least ? 0 : 0xFF));
                }
            }
            case Q8_0 -> {
                for (int t = 2; t < 34; t++) {
                    data.set(Layouts.BYTE, block + t, (byte) (least ? 0x80 : 0x7F));
                }
            }
            case IQ4_XS -> {
                data.set(Layouts.SHORT_LE, block + 2, (short) (least ? 0 : 0xFFFF));
                data.set(Layouts.INT_LE, block + 4, least ? 0 : -1);
                for (int t = 8; t < 136; t++) {
                    data.set(Layouts.BYTE, block + t, (byte) (b % 2 == 0 ? 0 : 0xFF));
                }
            }
            default -> throw new IllegalArgumentException(type.toString());
        }
    }

    /**
     * {@code type}'s arithmetic in plain Java: per block {@code S = sum (q - 8) * code} (Q4_0), {@code sum q * code}
     * (Q8_0), or per 32-value sub-block {@code sum level * code} times {@code ls - 32}, summed over the super-block
     * (IQ4_XS); then {@code acc = fma(S, d*xd, acc)}.
     */
    private static float scalarBlockSums(GgmlType type, MemorySegment data, long row, int width, PreparedActivations x,
            int token) {
        int[] codes = x.codes();
        int blockBytes = blockBytes(type);
        int blockValues = type == GgmlType.IQ4_XS ? 256 : 32;
        float acc = 0;
        for (int b = 0; b < width / blockValues; b++) {
            long block = row + (long) blockBytes * b;
            int code = token * width + blockValues * b;
            long s = 0;
            if (type == GgmlType.IQ4_XS) {
                int scalesH = data.get(Layouts.SHORT_LE, block + 2) & 0xFFFF;
                for (int j = 0; j < 8; j++) {
                    int ls = ((data.get(Layouts.BYTE, block + 4 + j / 2) & 0xFF) >>> (4 * (j % 2)) & 0xF)
                            | ((scalesH >>> (2 * j)) & 3) << 4;
                    long sub = 0;
                    for (int t = 0; t < 16; t++) {
                        int q = data.get(Layouts.BYTE, block + 8 + 16 * j + t) & 0xFF;
                        sub += (long) IQ4_NL.LEVELS[q & 0xF] * codes[code + 32 * j + t]
                                + (long) IQ4_NL.LEVELS[q >>> 4] * codes[code + 32 * j + 16 + t];
                    }
                    s += sub * (ls - 32);
                }
            } else {
                for (int t = 0; t < 16; t++) {
                    if (type == GgmlType.Q4_0) {
                        int q = data.get(Layouts.BYTE, block + 2 + t) & 0xFF;
                        s += (long) ((q & 0xF) - 8) * codes[code + t] + (long) ((q >>> 4) - 8) * codes[code + 16 + t];
                    } else {
                        s += (long) data.get(Layouts.BYTE, block + 2 + t) * codes[code + t]
                                + (long) data.get(Layouts.BYTE, block + 18 + t) * codes[code + 16 + t];
                    }
                }
            }
            float xd = x.codeScales()[token * (width / blockValues) + b];
            acc = Math.fma((float) s, Halfs.readFp16(data, block) * xd, acc);
        }
        return acc;
    }

    @Test
    void q4_KOneTokenKernelOf256BitVectorsRejectsActivationsPreparedForQ5_K() {
        // Q5_K's rows are prepared in Q4_K's order and rounding, without the telescoped pairs Q4_K's kernel reads there
        assumeTrue(InterleavedRows.steps(GgmlType.Q4_K), "Q4_K's kernel reads telescoped pairs only with 256-bit vectors");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(InterleavedRows.bytes(GgmlType.Q4_K, 16, 256));
            PreparedActivations q5 = PreparedDotTest.gaussianRows(QuantFormats.of(GgmlType.Q5_K), new SplittableRandom(2),
                    1, 256);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> InterleavedRows.dot(GgmlType.Q4_K, packed, 0, 0, 1, q5, 0, 1, new float[16], 0, 16));
            assertTrue(e.getMessage().contains("prepared for Q4_K"), e.getMessage());
        }
    }

    /**
     * Three rows prepared for {@code type}: every code -127 (Q8_K scales a block by -127 / its largest value), every
     * code 127, and the two alternating.
     */
    private static PreparedActivations extremeCodes(GgmlType type, int width) {
        // five tokens: a 256-bit tile of four and one more alone
        float[] values = new float[5 * width];
        Arrays.fill(values, 0, width, 1f);
        Arrays.fill(values, width, 2 * width, -1f);
        for (int i = 2 * width; i < 3 * width; i++) {
            values[i] = i % 2 == 0 ? 3f : -3f;
        }
        for (int i = 3 * width; i < 4 * width; i++) {
            values[i] = i % 2 == 0 ? -3f : 3f;
        }
        Arrays.fill(values, 4 * width, 5 * width, 1f);
        PreparedActivations x = new PreparedActivations();
        x.reserve(QuantFormats.of(type), 5, width);
        for (int t = 0; t < 5; t++) {
            x.prepareRow(values, t * width, t);
        }
        return x;
    }

    /**
     * Rows {@code 0 .. rows-1} of {@code data} times prepared rows {@code first .. first+tokens-1}, repacked: one token
     * at a time and all at once, each (row, token) equal to {@link #scalar} and to the batch path on {@code data} (where
     * that batches: {@link BlockFormat#rowKernelBelow} tokens or more).
     */
    private static void checkAgainstReferences(GgmlType type, MemorySegment data, long rowBytes, int rows, int width,
            PreparedActivations x, int first, int tokens, Arena arena) {
        MemorySegment packed = arena.allocate(InterleavedRows.bytes(type, rows, width) + 64);
        long offset = 64; // a matrix of a stack starts past the one before
        InterleavedRows.repack(type, data, 0, rowBytes, width, 0, rows / 16, packed, offset);
        // Q6_K's 256-bit layout differs from its 512-bit one (of the same size)
        MemorySegment packedHalves = arena.allocate(InterleavedRows.bytes(type, rows, width) + 64);
        InterleavedRows.repackHalves(type, data, 0, rowBytes, width, 0, rows / 16, packedHalves, offset);
        float[] batch = new float[rows * tokens];
        InterleavedRows.dot(type, packed, offset, 0, rows / 16, x, first, tokens, batch, 0, rows);
        float[] halvesBatch = new float[rows * tokens];
        InterleavedRows.dotHalves(type, packedHalves, offset, 0, rows / 16, x, first, tokens, halvesBatch, 0, rows);
        float[] fileLayout = new float[rows * tokens];
        QuantFormats.of(type).dotPreparedRows(data, 0, rowBytes, rows, x, first, tokens, fileLayout, 0, rows);
        float[] one = new float[16];
        float[] oneInHalves = new float[16];
        // one token over all groups in one call, as decoding runs it: each group's accumulators start anew
        float[] allGroups = new float[rows];
        float[] allGroupsInHalves = new float[rows];
        for (int t = 0; t < tokens; t++) {
            InterleavedRows.dot(type, packed, offset, 0, rows / 16, x, first + t, 1, allGroups, 0, rows);
            InterleavedRows.dotHalves(type, packedHalves, offset, 0, rows / 16, x, first + t, 1, allGroupsInHalves, 0,
                    rows);
            for (int g = 0; g < rows / 16; g++) {
                InterleavedRows.dot(type, packed, offset, g, g + 1, x, first + t, 1, one, 0, 16);
                InterleavedRows.dotHalves(type, packedHalves, offset, g, g + 1, x, first + t, 1, oneInHalves, 0, 16);
                for (int i = 0; i < 16; i++) {
                    int r = 16 * g + i;
                    float expected = scalar(type, data, r * rowBytes, width, x, first + t);
                    String where = type + " width " + width + " row " + r + " token " + t;
                    assertEquals(expected, one[i], 0f, "one token, " + where);
                    assertEquals(expected, batch[r + t * rows], 0f, "batch, " + where);
                    assertEquals(expected, oneInHalves[i], 0f, "one token in 256-bit halves, " + where);
                    assertEquals(expected, halvesBatch[r + t * rows], 0f, "batch in 256-bit halves, " + where);
                    assertEquals(expected, allGroups[r], 0f, "one token over all groups, " + where);
                    assertEquals(expected, allGroupsInHalves[r], 0f, "one token over all groups in 256-bit halves, "
                            + where);
                    // the file layout's integer paths need 512-bit vectors (other widths decode to floats), and Q2_K's
                    // and Q3_K's are not repacked there
                    if (Simd.FUSED && type != GgmlType.Q3_K && type != GgmlType.Q2_K
                            && tokens >= ((BlockFormat) QuantFormats.of(type)).rowKernelBelow()) {
                        // fewer tokens take the file layout's row kernel, whose float sums run in another order
                        assertEquals(expected, fileLayout[r + t * rows], 0f, "batch path on the file's rows, " + where);
                    }
                }
            }
        }
    }

    /**
     * The kernel's arithmetic in plain Java: per super-block the integer sums {@code S = sum_j scale_j * (q . code)} and
     * {@code M = sum_j min_j * sum(codes)}, then {@code acc = fma(S, d*xd, acc)} and {@code acc = fma(M, dmin*-xd, acc)}.
     */
    private static float scalar(GgmlType type, MemorySegment data, long row, int width, PreparedActivations x, int token) {
        if (type == GgmlType.Q6_K) {
            return scalarQ6(data, row, width, x, token);
        }
        if (type == GgmlType.Q3_K) {
            return scalarQ3(data, row, width, x, token);
        }
        if (type == GgmlType.Q2_K) {
            return scalarQ2(data, row, width, x, token);
        }
        boolean q5 = type == GgmlType.Q5_K;
        int[] codes = x.codes();
        float acc = 0;
        for (int b = 0; b < width / 256; b++) {
            long block = row + (long) b * blockBytes(type);
            float d = Halfs.readFp16(data, block);
            float dmin = Halfs.readFp16(data, block + 2);
            long s = 0;
            long m = 0;
            for (int j = 0; j < 8; j++) {
                long dot = 0;
                long sum = 0;
                for (int l = 0; l < 32; l++) {
                    // Q5_K: the nibbles after 32 bytes of fifth bits, bit j of byte l for element 32j + l
                    int q = (data.get(Layouts.BYTE, block + (q5 ? 48 : 16) + 32L * (j / 2) + l) >> (4 * (j % 2))) & 0xF;
                    if (q5) {
                        q |= ((data.get(Layouts.BYTE, block + 16 + l) >> j) & 1) << 4;
                    }
                    int code = codes[token * width + 256 * b + 32 * j + l];
                    dot += (long) q * code;
                    sum += code;
                }
                s += KQuantScales.scale(data, block + 4, j) * dot;
                m += KQuantScales.min(data, block + 4, j) * sum;
            }
            float xd = x.codeScales()[token * (width / 256) + b];
            acc = Math.fma((float) s, d * xd, acc);
            acc = Math.fma((float) m, dmin * -xd, acc);
        }
        return acc;
    }

    /**
     * Q3_K's arithmetic in plain Java: per super-block {@code S = sum_g scale_g * ((q - 4) . code)} over the 16 groups
     * of 16, {@code q} an element's two low bits and its bit of the high mask, then {@code acc = fma(S, d*xd, acc)}.
     */
    private static float scalarQ3(MemorySegment data, long row, int width, PreparedActivations x, int token) {
        int[] codes = x.codes();
        float acc = 0;
        for (int b = 0; b < width / 256; b++) {
            long block = row + (long) b * 110;
            float d = Halfs.readFp16(data, block + 108);
            long s = 0;
            for (int g = 0; g < 16; g++) {
                long dot = 0;
                for (int i = 0; i < 16; i++) {
                    int e = 16 * g + i;
                    int half = e / 128;
                    int k = (e / 32) % 4;
                    int l = e % 32;
                    int low = (data.get(Layouts.BYTE, block + 32 + 32L * half + l) >> (2 * k)) & 3;
                    int high = (data.get(Layouts.BYTE, block + l) >> (4 * half + k)) & 1;
                    dot += (long) ((low | high << 2) - 4) * codes[token * width + 256 * b + e];
                }
                s += KQuantScales.q3Scale(data, block + 96, g) * dot;
            }
            float xd = x.codeScales()[token * (width / 256) + b];
            acc = Math.fma((float) s, d * xd, acc);
        }
        return acc;
    }

    /**
     * Q2_K's arithmetic in plain Java: per super-block {@code S = sum_g scale_g * (q . code)} and
     * {@code M = sum_g min_g * sum(codes)} over the 16 groups of 16, then {@code acc = fma(S, d*xd, acc)} and
     * {@code acc = fma(M, dmin*-xd, acc)}.
     */
    private static float scalarQ2(MemorySegment data, long row, int width, PreparedActivations x, int token) {
        int[] codes = x.codes();
        float acc = 0;
        for (int b = 0; b < width / 256; b++) {
            long block = row + (long) b * 84;
            float d = Halfs.readFp16(data, block + 80);
            float dmin = Halfs.readFp16(data, block + 82);
            long s = 0;
            long m = 0;
            for (int g = 0; g < 16; g++) {
                long dot = 0;
                long sum = 0;
                for (int i = 0; i < 16; i++) {
                    int e = 16 * g + i;
                    int q = (data.get(Layouts.BYTE, block + 16 + 32L * (e / 128) + e % 32) >> (2 * ((e / 32) % 4))) & 3;
                    int code = codes[token * width + 256 * b + e];
                    dot += (long) q * code;
                    sum += code;
                }
                int scale = data.get(Layouts.BYTE, block + g) & 0xFF;
                s += (scale & 0xF) * dot;
                m += (scale >> 4) * sum;
            }
            float xd = x.codeScales()[token * (width / 256) + b];
            acc = Math.fma((float) s, d * xd, acc);
            acc = Math.fma((float) m, dmin * -xd, acc);
        }
        return acc;
    }

    /**
     * Q6_K's arithmetic in plain Java: per super-block {@code S = sum_g scale_g * ((q - 32) . code)} over the 16 groups
     * of 16, then {@code acc = fma(S, d*xd, acc)}.
     */
    private static float scalarQ6(MemorySegment data, long row, int width, PreparedActivations x, int token) {
        int[] codes = x.codes();
        float acc = 0;
        for (int b = 0; b < width / 256; b++) {
            long block = row + (long) b * 210;
            float d = Halfs.readFp16(data, block + 208);
            long s = 0;
            for (int g = 0; g < 16; g++) {
                long dot = 0;
                for (int i = 0; i < 16; i++) {
                    int e = 16 * g + i;
                    int half = e / 128;
                    int k = (e / 32) % 4;
                    int l = e % 32;
                    int low = (data.get(Layouts.BYTE, block + 64L * half + 32L * (k % 2) + l) >> (4 * (k / 2))) & 0xF;
                    int high = (data.get(Layouts.BYTE, block + 128 + 32L * half + l) >> (2 * k)) & 3;
                    dot += (long) ((low | high << 4) - 32) * codes[token * width + 256 * b + e];
                }
                s += data.get(Layouts.BYTE, block + 192 + g) * dot;
            }
            float xd = x.codeScales()[token * (width / 256) + b];
            acc = Math.fma((float) s, d * xd, acc);
        }
        return acc;
    }
}
