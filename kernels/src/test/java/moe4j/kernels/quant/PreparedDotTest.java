package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Set;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.gguf.GgmlType;

/**
 * {@link QuantFormat#dotPrepared}: the dot of the dequantized row with the rounded activations, within
 * float32 rounding, for one token (the decoding kernels) and for batches; a batch's results independent of
 * the batch, bit for bit; and the activation rounding itself against the reference quantizers' definitions.
 */
class PreparedDotTest {

    static Set<GgmlType> supportedTypes() { return QuantFormats.supported(); }

    /**
     * A row that is not whole 256-element super-blocks (for 32-element types: the path without tiles; for the float
     * types 97 groups of 16: two whole loops of the row kernel, then one group, which leaves the accumulators rotated).
     */
    private static int offSuperBlock(GgmlType type) {
        return switch (type.blockSize()) {
            case 32 -> 96;
            case 1 -> 97 * 16;
            default -> 512;
        };
    }

    private static int width(GgmlType type) {
        // several chunks of ScaledDot for the super-block types, one partial
        return type.blockSize() == 1 ? 4096 : 30 * 256;
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void matchesTheDotOfTheDequantizedRowWithRoundedActivationsAndBatchesAgree(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(type.id() + 100);
        // ScaledDot's batches of four, four, two and one token, PairTile's tiles of six and five; from row 1 (ten tokens)
        // both still batch: Q6_K and Q3_K run batches of under seven tokens a token at a time (rowKernelBelow)
        int tokens = 11;
        try (Arena arena = Arena.ofConfined()) {
            // 4096: two whole loops of the row kernels that cut rows (Simd.ROW_SPAN), four of Q8_0's, five and a part of
            // F16's and BF16's (Simd.HALF_FLOAT_SPAN; 3 * 256 is one whole loop of theirs)
            for (int width : new int[] {256, 3 * 256, 4096, width(type), offSuperBlock(type)}) {
                int blocks = width / type.blockSize();
                MemorySegment data = arena.allocate((long) blocks * type.blockBytes() + 1);
                format.randomBlocks(rnd, data, 1, blocks);
                float[] w = new float[width];
                format.dequantize(data, 1, w, 0, width);
                float[] x = new float[tokens * width];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) rnd.nextGaussian();
                }
                // in the format's lane order (its one-token kernel) and in natural order (the general path)
                for (boolean lanes : new boolean[] {true, false}) {
                    PreparedActivations prepared = new PreparedActivations();
                    if (lanes) {
                        prepared.reserve(format, tokens, width);
                    } else {
                        prepared.reserve(format.activationRounding(), tokens, width);
                    }
                    for (int t = 0; t < tokens; t++) {
                        prepared.prepareRow(x, t * width, t);
                    }
                    float[] batch = new float[2 * tokens];
                    format.dotPrepared(data, 1, prepared, 0, tokens, batch, 1, 2);
                    float[] shifted = new float[tokens - 1];
                    format.dotPrepared(data, 1, prepared, 1, tokens - 1, shifted, 0, 1);
                    for (int t = 0; t < tokens; t++) {
                        double exact = 0;
                        double magnitude = 0;
                        for (int i = 0; i < width; i++) {
                            double p = (double) w[i] * prepared.values()[t * width + i];
                            exact += p;
                            magnitude += Math.abs(p);
                        }
                        float[] single = new float[1];
                        format.dotPrepared(data, 1, prepared, t, 1, single, 0, 1);
                        String what = type + " width " + width + " token " + t + (lanes ? "" : " (natural order)");
                        if (t > 0) {
                            assertEquals(batch[1 + 2 * t], shifted[t - 1], 0f, what + ": batch from row 1 vs batch from row 0");
                        }
                        if (type.blockSize() == 1 && !((BlockFormat) format).scaledRows(width)) {
                            // the float types' row kernel (one token, cut into loops) runs dotBlocks' operations in its
                            // order, which is what a batch runs per token where it does not decode for ScaledDot: the
                            // same bits
                            assertEquals(Float.floatToRawIntBits(batch[1 + 2 * t]), Float.floatToRawIntBits(single[0]),
                                    what + ": one token " + single[0] + " vs batch " + batch[1 + 2 * t]);
                        }
                        // minimum terms and scales are applied per block: a few more roundings than a plain dot
                        double bound = (width / 64.0 + 64) * 0x1p-24 * magnitude;
                        assertTrue(Math.abs(single[0] - exact) <= bound, what + ": one token " + single[0] + " exact " + exact
                                + " bound " + bound);
                        assertTrue(Math.abs(batch[1 + 2 * t] - exact) <= bound, what + ": batch " + batch[1 + 2 * t] + " exact "
                                + exact + " bound " + bound);
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void rowsEqualSingleRowsBitForBit(GgmlType type) {
        rowsEqualSingleRows(type, 7); // tiles of four tokens, the second ending at the last token
        rowsEqualSingleRows(type, 13); // a tile of six tokens, then two of four
        // the integer tiles (six tokens, multiplied three at a time): one three with a repeated token, and a tile whose
        // second three holds two tokens and a repeat
        rowsEqualSingleRows(type, 2);
        rowsEqualSingleRows(type, 5);
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void batchesBelowTheRowKernelsThresholdAreTokensOneAtATime(GgmlType type) {
        BlockFormat format = (BlockFormat) QuantFormats.of(type);
        int below = format.rowKernelBelow();
        Assumptions.assumeTrue(below > 2 && Simd.FUSED, type + " batches every count of tokens");
        SplittableRandom rnd = new SplittableRandom(type.id() + 300L);
        int width = 2048;
        int rows = 40;
        long rowBytes = type.bytesFor(width);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(rows * rowBytes);
            format.randomBlocks(rnd, data, 0, rows * rowBytes / type.blockBytes());
            PreparedActivations prepared = gaussianRows(format, rnd, below, width);
            for (int tokens = 2; tokens < below; tokens++) {
                float[] batch = new float[rows * tokens];
                format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 0, tokens, batch, 0, rows);
                for (int t = 0; t < tokens; t++) {
                    float[] alone = new float[rows];
                    format.dotPreparedRows(data, 0, rowBytes, rows, prepared, t, 1, alone, 0, rows);
                    for (int r = 0; r < rows; r++) {
                        assertEquals(Float.floatToRawIntBits(alone[r]), Float.floatToRawIntBits(batch[r + t * rows]),
                                type + " " + tokens + " tokens, token " + t + " row " + r);
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("supportedTypes")
    void oneTokenRowsEqualSingleRowsBitForBit(GgmlType type) {
        rowsEqualSingleRows(type, 1); // the matrix-vector kernels of decoding
    }

    /**
     * Q8_0's, Q4_0's and IQ4_XS's row kernels of decoding where the vectors are 256 bits (AVX2), against the plain dot
     * product on the activations' floats, bit for bit: there they stand in for the decode-then-dot path; Q8_0's and
     * IQ4_XS's, on rows of whole 256-value blocks, against their integer products on the activations' codes as
     * scalars. (With 512-bit vectors Q4_0's and IQ4_XS's row kernels multiply the activations' 8-bit codes instead.)
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q8_0", "Q4_0", "IQ4_XS"})
    void rowKernelsOf256BitVectorsEqualTheDotBitForBit(GgmlType type) {
        Assumptions.assumeTrue(!Simd.FUSED || type == GgmlType.Q8_0,
                type + "'s 512-bit row kernel rounds the activations");
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(808);
        int rows = 5;
        int block = type.blockSize();
        try (Arena arena = Arena.ofConfined()) {
            for (int width : new int[] {block, 256, 4096, 4096 + 3 * block}) {
                long rowBytes = type.bytesFor(width) + 2;
                MemorySegment data = arena.allocate(rows * rowBytes);
                for (int r = 0; r < rows; r++) {
                    format.randomBlocks(rnd, data, r * rowBytes, width / block);
                }
                PreparedActivations prepared = gaussianRows(format, rnd, 2, width);
                float[] out = new float[rows];
                format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 1, 1, out, 0, 1);
                boolean codes = prepared.laneOrder().readByHalves();
                assertEquals(Simd.HALVES && type != GgmlType.Q4_0 && width % LaneOrder.BLOCK == 0, codes,
                        type + " width " + width + ": codes where the rows are whole blocks of the order");
                for (int r = 0; r < rows; r++) {
                    float dot = !codes ? format.dot(data, r * rowBytes, prepared.values(), width, width)
                            : type == GgmlType.Q8_0 ? q8_0OnCodes(data, r * rowBytes, prepared, 1)
                            : iq4_xsOnCodes(data, r * rowBytes, prepared, 1);
                    assertEquals(dot, out[r], 0f, type + " width " + width + " row " + r);
                }
            }
        }
    }

    /**
     * F32's and BF16's row kernels, one token, against the plain dot product on the activations' floats, bit for bit:
     * rows of whole and partial passes of their loops (four groups a pass, spans of 768 values, a last group or three).
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"F32", "BF16"})
    void floatRowKernelsEqualTheDotBitForBit(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(809);
        int rows = 3;
        try (Arena arena = Arena.ofConfined()) {
            for (int width : new int[] {16, 48, 256, 768, 784, 2048 + 48, 4096}) {
                long rowBytes = type.bytesFor(width);
                MemorySegment data = arena.allocate(rows * rowBytes);
                format.randomBlocks(rnd, data, 0, rows * (long) width);
                PreparedActivations prepared = gaussianRows(format, rnd, 2, width);
                float[] out = new float[rows];
                format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 1, 1, out, 0, 1);
                for (int r = 0; r < rows; r++) {
                    float dot = format.dot(data, r * rowBytes, prepared.values(), width, width);
                    assertEquals(Float.floatToRawIntBits(dot), Float.floatToRawIntBits(out[r]),
                            type + " width " + width + " row " + r);
                }
            }
        }
    }

    /**
     * IQ4_XS rows prepared without codes (a rounding alone, natural order) take its 8-lane float kernel where the vectors
     * are 256 bits: the plain dot product on the activations' floats, bit for bit.
     */
    @Test
    void iq4_xsRowsWithoutCodesEqualTheDotBitForBit() {
        Assumptions.assumeTrue(Simd.HALVES, "the float kernel runs where the vectors are 256 bits");
        QuantFormat format = QuantFormats.of(GgmlType.IQ4_XS);
        SplittableRandom rnd = new SplittableRandom(809);
        int rows = 5;
        int width = 4096;
        long rowBytes = GgmlType.IQ4_XS.bytesFor(width) + 2;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (int r = 0; r < rows; r++) {
                format.randomBlocks(rnd, data, r * rowBytes, width / 256);
            }
            float[] x = new float[width];
            for (int i = 0; i < width; i++) {
                x[i] = (float) rnd.nextGaussian();
            }
            PreparedActivations prepared = new PreparedActivations();
            prepared.reserve(format.activationRounding(), 1, width);
            prepared.prepareRow(x, 0, 0);
            assertEquals(LaneOrder.NATURAL, prepared.laneOrder());
            float[] out = new float[rows];
            format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 0, 1, out, 0, 1);
            for (int r = 0; r < rows; r++) {
                assertEquals(format.dot(data, r * rowBytes, prepared.values(), 0, width), out[r], 0f, "row " + r);
            }
        }
    }

    /** The 16-bit lanes of Q8_0's integer kernel at their extremes: quants of -128 against codes of 127 and -127. */
    @Test
    void q8_0sIntegerRowKernelHoldsItsExtremes() {
        Assumptions.assumeTrue(Simd.HALVES, "Q8_0 multiplies codes where the vectors are 256 bits");
        QuantFormat format = QuantFormats.of(GgmlType.Q8_0);
        int width = 512;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(GgmlType.Q8_0.bytesFor(width));
            for (int b = 0; b < width / 32; b++) {
                data.set(Layouts.SHORT_LE, 34L * b, Float.floatToFloat16(b % 2 == 0 ? 1.0f : -0.5f));
                for (int i = 0; i < 32; i++) {
                    data.set(Layouts.BYTE, 34L * b + 2 + i, (byte) -128);
                }
            }
            float[] x = new float[2 * width];
            for (int i = 0; i < width; i++) {
                x[i] = 3.0f;
                x[width + i] = i % 32 < 16 ? 3.0f : -3.0f;
            }
            PreparedActivations prepared = twoRows(format, x);
            for (int token = 0; token < 2; token++) {
                float[] out = new float[1];
                format.dotPreparedRows(data, 0, GgmlType.Q8_0.bytesFor(width), 1, prepared, token, 1, out, 0, 1);
                assertEquals(q8_0OnCodes(data, 0, prepared, token), out[0], 0f, "token " + token);
            }
        }
    }

    /**
     * IQ4_XS's 16-bit lanes at their extremes: every level -127 (nibble 0) against codes of 127 and -127, with the
     * sub-blocks' scales at both ends (-32 and 31).
     */
    @Test
    void iq4_xsIntegerRowKernelHoldsItsExtremes() {
        Assumptions.assumeTrue(Simd.HALVES, "IQ4_XS multiplies codes in 16-bit lanes where the vectors are 256 bits");
        QuantFormat format = QuantFormats.of(GgmlType.IQ4_XS);
        int width = 512;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(GgmlType.IQ4_XS.bytesFor(width));
            for (int b = 0; b < width / 256; b++) {
                long block = 136L * b;
                data.set(Layouts.SHORT_LE, block, Float.floatToFloat16(b == 0 ? 1.0f : -0.5f));
                // sub-blocks 0, 2, 4, 6: scale 0 - 32; 1, 3, 5, 7: 63 - 32
                data.set(Layouts.SHORT_LE, block + 2, (short) 0xCCCC);
                data.set(Layouts.INT_LE, block + 4, 0xF0F0F0F0);
            }
            // every code 127 in magnitude, so that each 16-bit lane sums two products of 127 * 127, of either sign
            float[] x = new float[2 * width];
            for (int i = 0; i < width; i++) {
                x[i] = 3.0f;
                x[width + i] = -3.0f;
            }
            PreparedActivations prepared = twoRows(format, x);
            for (int token = 0; token < 2; token++) {
                float[] out = new float[1];
                format.dotPreparedRows(data, 0, GgmlType.IQ4_XS.bytesFor(width), 1, prepared, token, 1, out, 0, 1);
                assertEquals(iq4_xsOnCodes(data, 0, prepared, token), out[0], 0f, "token " + token);
                // levels of -127 times 3: each block 128 of them at scale -32 and 128 at 31, the blocks times 1.0 and -0.5
                assertEquals(token == 0 ? 24384f : -24384f, out[0], 0f, "token " + token);
            }
        }
    }

    /** {@code x}'s two halves prepared for {@code format} as rows 0 and 1. */
    private static PreparedActivations twoRows(QuantFormat format, float[] x) {
        int width = x.length / 2;
        PreparedActivations prepared = new PreparedActivations();
        prepared.reserve(format, 2, width);
        prepared.prepareRow(x, 0, 0);
        prepared.prepareRow(x, width, 1);
        return prepared;
    }

    /**
     * IQ4_XS's 256-bit row kernel on the activations' codes, as scalars: int lane {@code j} of sub-block {@code s} sums
     * the exact products of its elements {@code 2j, 2j+1, 2j+16, 2j+17}, times the sub-block's scale, over the block;
     * one accumulator takes {@code fma(sum, d * xd, acc)} block after block, and the lanes fold four, two and one apart.
     */
    private static float iq4_xsOnCodes(MemorySegment data, long offset, PreparedActivations x, int token) {
        int width = x.width();
        int[] codes = codes(x, token);
        float[] acc = new float[8];
        for (int b = 0; b < width / 256; b++) {
            long block = offset + 136L * b;
            float dx = Float.float16ToFloat(data.get(Layouts.SHORT_LE, block)) * x.codeScales()[token * width / 256 + b];
            int scalesH = data.get(Layouts.SHORT_LE, block + 2) & 0xFFFF;
            int scalesL = data.get(Layouts.INT_LE, block + 4);
            int[] sums = new int[8];
            for (int s = 0; s < 8; s++) {
                int scale = ((scalesL >>> (4 * s)) & 0xF | ((scalesH >>> (2 * s)) & 3) << 4) - 32;
                for (int j = 0; j < 8; j++) {
                    int sum = 0;
                    for (int e : new int[] {2 * j, 2 * j + 1, 2 * j + 16, 2 * j + 17}) {
                        int q = data.get(Layouts.BYTE, block + 8 + 16L * s + e % 16) & 0xFF;
                        int level = IQ4_NL.LEVELS[e < 16 ? q & 0xF : q >>> 4];
                        sum += level * codes[256 * b + 32 * s + e];
                    }
                    sums[j] += sum * scale;
                }
            }
            for (int j = 0; j < 8; j++) {
                acc[j] = Math.fma(sums[j], dx, acc[j]);
            }
        }
        return foldEight(acc);
    }

    /** Row {@code token}'s codes, from their 16-bit fields. */
    private static int[] codes(PreparedActivations x, int token) {
        int width = x.width();
        int[] codes = new int[width];
        for (int i = 0; i < width / 2; i++) {
            int pair = x.codePairs()[token * width / 2 + i];
            codes[2 * i] = (short) pair;
            codes[2 * i + 1] = pair >> 16;
        }
        return codes;
    }

    /** Eight lanes folded four, two and one apart, as {@link Simd#sum} folds them; lane 0. */
    private static float foldEight(float[] acc) {
        for (int h = 4; h >= 1; h /= 2) {
            float[] folded = new float[8];
            for (int j = 0; j < 8; j++) {
                folded[j] = acc[j] + acc[(j + h) % 8];
            }
            acc = folded;
        }
        return acc[0];
    }

    /**
     * Q8_0's 256-bit row kernel on the activations' codes, as scalars: int lane {@code j} of block {@code b} sums the
     * exact products of elements {@code 2j, 2j+1, 2j+16, 2j+17}, one accumulator takes {@code fma(sum, d * xd, acc)}
     * block after block, and the lanes fold four, two and one apart.
     */
    private static float q8_0OnCodes(MemorySegment data, long offset, PreparedActivations x, int token) {
        int width = x.width();
        int[] codes = codes(x, token);
        float[] acc = new float[8];
        for (int b = 0; b < width / 32; b++) {
            long block = offset + 34L * b;
            float dx = Float.float16ToFloat(data.get(Layouts.SHORT_LE, block)) * x.codeScales()[token * width / 32 + b];
            for (int j = 0; j < 8; j++) {
                int sum = 0;
                for (int e : new int[] {2 * j, 2 * j + 1, 2 * j + 16, 2 * j + 17}) {
                    sum += data.get(Layouts.BYTE, block + 2 + e) * codes[32 * b + e];
                }
                acc[j] = Math.fma(sum, dx, acc[j]);
            }
        }
        return foldEight(acc);
    }

    private static void rowsEqualSingleRows(GgmlType type, int tokens) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(type.id() + 200L * tokens);
        int rows = 9; // two tiles of four rows and one row alone
        try (Arena arena = Arena.ofConfined()) {
            for (int width : new int[] {256, 3 * 256, width(type), offSuperBlock(type)}) {
                long rowBytes = (long) width / type.blockSize() * type.blockBytes();
                MemorySegment data = arena.allocate(rows * rowBytes + 1);
                format.randomBlocks(rnd, data, 1, rows * (rowBytes / type.blockBytes()));
                float[] x = new float[(tokens + 1) * width];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) rnd.nextGaussian();
                }
                PreparedActivations prepared = new PreparedActivations();
                prepared.reserve(format, tokens + 1, width);
                for (int t = 0; t <= tokens; t++) {
                    prepared.prepareRow(x, t * width, t);
                }
                float[] all = new float[1 + tokens * rows];
                format.dotPreparedRows(data, 1, rowBytes, rows, prepared, 1, tokens, all, 1, rows);
                float[] single = new float[tokens];
                for (int r = 0; r < rows; r++) {
                    format.dotPrepared(data, 1 + r * rowBytes, prepared, 1, tokens, single, 0, 1);
                    for (int t = 0; t < tokens; t++) {
                        assertEquals(single[t], all[1 + r + t * rows], 0f, type + " width " + width + " row " + r
                                + " token " + t);
                    }
                }
            }
        }
    }

    /**
     * The integer tiles ({@link PairTile}) of Q4_K and of Q4_0 (whose blocks and scales differ) over several groups of
     * 16 rows and a batch that ends in a partial tile: each (row, token) the same bits as that row alone, and within
     * float32 rounding of the exact dot.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q4_0"})
    void pairTilesOverManyRowsAgreeWithSingleRowsAndTheExactDot(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(41);
        int width = 768;
        int rows = 37;
        int tokens = 13;
        long rowBytes = type.bytesFor(width) + 10; // rows not packed back to back
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(rows * rowBytes);
            for (int r = 0; r < rows; r++) {
                format.randomBlocks(rnd, data, r * rowBytes, width / type.blockSize());
            }
            PreparedActivations prepared = gaussianRows(format, rnd, tokens + 2, width);
            float[] all = new float[rows * tokens];
            format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 2, tokens, all, 0, rows);
            float[] w = new float[width];
            float[] single = new float[tokens];
            for (int r = 0; r < rows; r++) {
                format.dotPrepared(data, r * rowBytes, prepared, 2, tokens, single, 0, 1);
                format.dequantize(data, r * rowBytes, w, 0, width);
                for (int t = 0; t < tokens; t++) {
                    assertEquals(single[t], all[r + t * rows], 0f, type + " row " + r + " token " + t);
                    double exact = 0;
                    double magnitude = 0;
                    for (int i = 0; i < width; i++) {
                        double p = (double) w[i] * prepared.values()[(2 + t) * width + i];
                        exact += p;
                        magnitude += Math.abs(p);
                    }
                    assertTrue(Math.abs(all[r + t * rows] - exact) <= 1e-5 * magnitude, type + " row " + r + " token " + t + ": "
                            + all[r + t * rows] + " exact " + exact);
                }
            }
        }
    }

    /**
     * The float tiles ({@link ScaledDot}) over a batch longer than one of {@link BlockFormat#dotPreparedRows}'s token
     * chunks (rows of 4096: 64 tokens a chunk), the last chunk too short for a tile: each (row, token) the same bits as
     * that row alone over the whole batch.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"IQ4_XS", "Q8_0"})
    void floatTilesOverSeveralTokenChunksAgreeWithSingleRows(GgmlType type) {
        int width = 4096;
        int tokens = 66;
        assertTrue(tokens > BlockFormat.TOKEN_CHUNK_BYTES / (width * Float.BYTES), "more tokens than a chunk");
        int rows = 9; // two tiles of four rows and one row alone
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(43);
        try (Arena arena = Arena.ofConfined()) {
            long rowBytes = type.bytesFor(width);
            MemorySegment data = arena.allocate(rows * rowBytes);
            format.randomBlocks(rnd, data, 0, rows * width / type.blockSize());
            PreparedActivations prepared = gaussianRows(format, rnd, tokens, width);
            float[] all = new float[rows * tokens];
            format.dotPreparedRows(data, 0, rowBytes, rows, prepared, 0, tokens, all, 0, rows);
            float[] single = new float[tokens];
            for (int r = 0; r < rows; r++) {
                format.dotPrepared(data, r * rowBytes, prepared, 0, tokens, single, 0, 1);
                for (int t = 0; t < tokens; t++) {
                    assertEquals(single[t], all[r + t * rows], 0f, type + " row " + r + " token " + t);
                }
            }
        }
    }

    /** {@code rows} rows of {@code width} standard normal values, prepared for {@code format}. */
    static PreparedActivations gaussianRows(QuantFormat format, SplittableRandom rnd, int rows, int width) {
        float[] x = new float[rows * width];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        PreparedActivations prepared = new PreparedActivations();
        prepared.reserve(format, rows, width);
        for (int t = 0; t < rows; t++) {
            prepared.prepareRow(x, t * width, t);
        }
        return prepared;
    }

    /**
     * The integer kernels at the extremes their bounds allow: every quant at its largest value (all bits set) and every
     * activation at code +127 or -127, one sign per block (the largest sums of products), against the exact dot, for one
     * token and for a batch.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"})
    void integerKernelsAreExactAtTheLargestQuantsAndCodes(GgmlType type) {
        // all bits set: the largest quants and scales; for the types with signed quants all bits clear too, their
        // largest magnitudes (Q4_0: 0 - 8; IQ4_XS: level -127, scale 0 - 32; Q3_K: 0 - 4, scale 0 - 32; Q6_K: 0 - 32,
        // its int8 scales then set to 127, which all bits clear would leave at 0)
        boolean signed = type == GgmlType.Q4_0 || type == GgmlType.IQ4_XS || type == GgmlType.Q3_K
                || type == GgmlType.Q6_K;
        for (byte fill : signed ? new byte[] {(byte) 0xFF, 0} : new byte[] {(byte) 0xFF}) {
            // five super-blocks: kernels that take blocks in pairs run their odd last block too; rows of 8192: Q4_K's
            // activations a byte a value, whose upper bytes reach -128
            for (int width : new int[] {1280, 8192}) {
                integerKernelIsExactWithQuantBytes(type, fill, width);
            }
        }
    }

    private static void integerKernelIsExactWithQuantBytes(GgmlType type, byte fill, int width) {
        QuantFormat format = QuantFormats.of(type);
        int blocks = width / type.blockSize();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate((long) blocks * type.blockBytes());
            format.randomBlocks(new SplittableRandom(type.id()), data, 0, blocks);
            // keep the fp16 scales randomBlocks wrote (sane values), set every other byte
            MemorySegment sane = arena.allocate(data.byteSize());
            sane.copyFrom(data);
            data.fill(fill);
            for (int b = 0; b < blocks; b++) {
                for (int offset : fp16Offsets(type)) {
                    long at = (long) b * type.blockBytes() + offset;
                    MemorySegment.copy(sane, at, data, at, 2);
                }
                if (type == GgmlType.Q6_K && fill == 0) {
                    data.asSlice((long) b * type.blockBytes() + 192, 16).fill((byte) 127);
                }
            }
            float[] w = new float[width];
            format.dequantize(data, 0, w, 0, width);
            for (float sign : new float[] {1, -1}) {
                float[] x = new float[width];
                for (int i = 0; i < width; i++) {
                    x[i] = ((i / 256) % 2 == 0 ? sign : -sign) * (1 + (i % 7) * 1e-3f);
                }
                // one token (the decoding kernel) and a batch of three (the prompt path; for Q3_K to Q6_K and Q4_0 the
                // integer tiles)
                for (int tokens : new int[] {1, 3}) {
                    PreparedActivations prepared = new PreparedActivations();
                    prepared.reserve(format, tokens, width);
                    for (int t = 0; t < tokens; t++) {
                        prepared.prepareRow(x, 0, t);
                    }
                    double exact = 0;
                    double magnitude = 0;
                    for (int i = 0; i < width; i++) {
                        exact += (double) w[i] * prepared.values()[i];
                        magnitude += Math.abs((double) w[i] * prepared.values()[i]);
                    }
                    float[] out = new float[tokens];
                    format.dotPrepared(data, 0, prepared, 0, tokens, out, 0, 1);
                    for (int t = 0; t < tokens; t++) {
                        assertTrue(Math.abs(out[t] - exact) <= 1e-6 * magnitude, type + " width " + width + " bytes " + fill + " sign " + sign + ", " + tokens
                                + " token(s): " + out[t] + " exact " + exact + " magnitude " + magnitude);
                    }
                }
            }
        }
    }

    /** Where each block keeps its fp16 scales. */
    private static int[] fp16Offsets(GgmlType type) {
        return switch (type) {
            case Q4_0, IQ4_XS -> new int[] {0};
            case Q2_K -> new int[] {80, 82};
            case Q3_K -> new int[] {108};
            case Q4_K, Q5_K -> new int[] {0, 2};
            case Q6_K -> new int[] {208};
            default -> throw new IllegalArgumentException(type.toString());
        };
    }

    /**
     * Q4_0's one-token kernel widens the fp16 block scales in vectors: every kind of fp16 value (zero, subnormal, normal,
     * the largest, negative) gives the dot of the dequantized row within float32 rounding, and an infinite or NaN scale
     * a product that is not finite, as decoding the block gives.
     */
    @Test
    void q4_0ScalesOfEveryKindWidenAsFloat16ToFloatDoes() {
        QuantFormat format = QuantFormats.of(GgmlType.Q4_0);
        short[] finite = {0, (short) 0x8000, 0x0001, (short) 0x83FF, 0x0400, 0x3C00, (short) 0xB555, 0x7BFF, (short) 0xFBFF};
        short[] special = {0x7C00, (short) 0xFC00, 0x7E00, (short) 0xFFFF};
        int width = 512;
        int blocks = width / 32;
        SplittableRandom rnd = new SplittableRandom(17);
        float[] x = new float[width];
        for (int i = 0; i < width; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        PreparedActivations prepared = new PreparedActivations();
        prepared.reserve(format, 1, width);
        prepared.prepareRow(x, 0, 0);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate((long) blocks * 18);
            format.randomBlocks(rnd, data, 0, blocks);
            for (int b = 0; b < blocks; b++) {
                data.set(Layouts.SHORT_LE, b * 18L, finite[b % finite.length]);
            }
            float[] w = new float[width];
            format.dequantize(data, 0, w, 0, width);
            double exact = 0;
            double magnitude = 0;
            for (int i = 0; i < width; i++) {
                exact += (double) w[i] * prepared.values()[i];
                magnitude += Math.abs((double) w[i] * prepared.values()[i]);
            }
            float[] out = new float[1];
            format.dotPrepared(data, 0, prepared, 0, 1, out, 0, 1);
            assertTrue(Math.abs(out[0] - exact) <= 1e-6 * magnitude, out[0] + " exact " + exact);
            for (short scale : special) {
                data.set(Layouts.SHORT_LE, 5 * 18L, scale);
                format.dotPrepared(data, 0, prepared, 0, 1, out, 0, 1);
                assertTrue(!Float.isFinite(out[0]), "scale " + Integer.toHexString(scale & 0xFFFF) + ": " + out[0]);
            }
        }
    }

    /** A NaN in a token's activations must reach its products (the integer kernels keep codes, not values, for it). */
    @ParameterizedTest
    @MethodSource("supportedTypes")
    void aNaNActivationMakesOnlyItsTokensProductsNaN(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        SplittableRandom rnd = new SplittableRandom(type.id() + 300);
        int width = 512;
        int rows = 3;
        long rowBytes = (long) width / type.blockSize() * type.blockBytes();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(rows * rowBytes);
            format.randomBlocks(rnd, data, 0, rows * (rowBytes / type.blockBytes()));
            float[] x = new float[3 * width];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextGaussian();
            }
            x[width + 300] = Float.NaN;
            PreparedActivations prepared = new PreparedActivations();
            prepared.reserve(format, 3, width);
            for (int t = 0; t < 3; t++) {
                prepared.prepareRow(x, t * width, t);
            }
            for (int tokens : new int[] {1, 3}) {
                int first = tokens == 1 ? 1 : 0;
                float[] out = new float[rows * tokens];
                format.dotPreparedRows(data, 0, rowBytes, rows, prepared, first, tokens, out, 0, rows);
                for (int t = 0; t < tokens; t++) {
                    for (int r = 0; r < rows; r++) {
                        float v = out[r + t * rows];
                        String what = type + ", " + tokens + " token(s), token " + (first + t) + " row " + r + ": " + v;
                        assertEquals(first + t == 1, Float.isNaN(v), what);
                    }
                }
            }
        }
    }

    @Test
    void q8kRoundingFollowsTheReferenceQuantizer() {
        float[] x = new float[256];
        SplittableRandom rnd = new SplittableRandom(5);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        x[17] = 4.5f;
        x[200] = -4.5f; // same magnitude later: the first one sets the scale
        float[] r = new float[256];
        ActivationRounding.Q8_K.round(x, 0, r, 0, 256);
        float iscale = -127f / 4.5f;
        float d = 1 / iscale;
        assertEquals(d * -127, r[17], 0f, "the largest value maps to -127");
        for (int i = 0; i < 256; i++) {
            int q = Math.min(127, (int) Math.rint(iscale * x[i]));
            assertEquals(d * q, r[i], 0f, "element " + i);
        }
        float[] zeros = new float[256];
        java.util.Arrays.fill(r, 1f);
        ActivationRounding.Q8_K.round(zeros, 0, r, 0, 256);
        for (float v : r) {
            assertEquals(0f, v, 0f, "an all-zero block rounds to zeros");
        }
    }

    @Test
    void q80RoundingUsesAnFp16ScaleAndRoundsHalvesToEven() {
        float[] x = new float[32];
        x[0] = 127f;
        x[1] = 2.5f;
        x[2] = -3.5f;
        x[3] = 0.3f;
        float[] r = new float[32];
        ActivationRounding.Q8_0.round(x, 0, r, 0, 32);
        assertEquals(127f, r[0], 0f);
        assertEquals(2f, r[1], 0f);
        assertEquals(-4f, r[2], 0f);
        assertEquals(0f, r[3], 0f);
        assertEquals(0f, r[31], 0f);
    }

    @Test
    void halfPrecisionRoundings() {
        float[] x = {1.0009765625f + 0x1p-12f, 1.00390625f + 0x1p-9f};
        float[] r = new float[2];
        ActivationRounding.F16.round(x, 0, r, 0, 2);
        assertEquals(Float.float16ToFloat(Float.floatToFloat16(x[0])), r[0], 0f);
        ActivationRounding.BF16.round(x, 0, r, 0, 2);
        assertEquals(1.0f, r[0], 0f);
        assertEquals(1.0078125f, r[1], 0f, "nearest bfloat16");
    }

    @Test
    void rejectsActivationsPreparedForAnotherTypeAndRowsOutsideThePreparedOnes() {
        QuantFormat q4k = QuantFormats.of(GgmlType.Q4_K);
        PreparedActivations f16 = new PreparedActivations();
        f16.reserve(ActivationRounding.F16, 2, 256);
        MemorySegment data = MemorySegment.ofArray(new byte[GgmlType.Q4_K.blockBytes()]);
        float[] out = new float[2];
        assertThrows(IllegalArgumentException.class, () -> q4k.dotPrepared(data, 0, f16, 0, 1, out, 0, 1));
        PreparedActivations q8k = new PreparedActivations();
        q8k.reserve(ActivationRounding.Q8_K, 2, 256);
        assertThrows(IndexOutOfBoundsException.class, () -> q4k.dotPrepared(data, 0, q8k, 1, 2, out, 0, 1));
        assertThrows(IndexOutOfBoundsException.class, () -> q4k.dotPrepared(data, 0, q8k, 0, 2, out, 1, 1));
        assertThrows(IllegalArgumentException.class, () -> q8k.reserve(ActivationRounding.Q8_K, 1, 100));
        // an order pairs the codes of one rounding: another rounding in that order is refused with both named
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> q8k.reserve(ActivationRounding.Q8_0, Q4_K.PAIRS, 2, 256));
        assertTrue(e.getMessage().contains("Q8_0") && e.getMessage().contains("Q4_K pairs"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> q8k.reserve(ActivationRounding.Q8_K, Q4_0.PAIRS, 2, 256));
        assertTrue(e.getMessage().contains("Q8_K") && e.getMessage().contains("Q4_0 pairs"), e.getMessage());
        IllegalStateException codes = assertThrows(IllegalStateException.class, () -> ActivationRounding.F16
                .roundToCodes(new float[32], 0, new float[32], 0, 32, new int[32], 0, new float[1], 0));
        assertTrue(codes.getMessage().contains("only Q8_0 and Q8_K rounding have 8-bit codes"), codes.getMessage());
    }
}
