package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.ExpertBuffers;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.Rope;
import moe4j.kernels.StagingArea;
import moe4j.kernels.StepRecorder;
import moe4j.kernels.Weight;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.quant.ActivationRounding;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * Every CUDA operation on fresh random data, against the CPU backend where both compute in float32
 * (dequantization bit for bit, normalization, RoPE, attention, routing) and against a double-precision
 * product of the decoded weights for the matrix and expert products, with the activations rounded as the
 * kernels round them (the Q8_K matrix-vector kernels as the CPU backend does; the others keep float32).
 * Bounds are relative errors of the whole result. Outputs are poisoned with NaN first, so an element a kernel
 * forgets to write fails.
 */
@Tag(GpuTests.TAG)
class CudaBackendTest {

    private static CudaBackend gpu;
    private static CpuBackend cpu;
    private final Random random = new Random();

    @BeforeAll
    static void open() {
        if (CudaDevices.unavailableReason().isEmpty()) {
            gpu = CudaBackend.open(0);
            cpu = new CpuBackend(2);
        }
    }

    @BeforeEach
    void requireGpu() {
        GpuTests.assumeCuda();
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
        if (cpu != null) {
            cpu.close();
        }
    }

    // ------------------------------------------------------------ helpers

    private float[] randomFloats(int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) random.nextGaussian() * scale;
        }
        return v;
    }

    /** A tensor of {@code type} with random content: quantized noise where the format can, random blocks otherwise. */
    private GgufTensor randomTensor(String name, GgmlType type, long... dims) {
        long[] shape = {1, 1, 1, 1};
        System.arraycopy(dims, 0, shape, 0, dims.length);
        long elements = shape[0] * shape[1] * shape[2];
        MemorySegment data = Arena.ofAuto().allocate(type.bytesFor(elements), 64);
        QuantFormat f = QuantFormats.of(type);
        if (f.canQuantize()) {
            f.quantize(randomFloats((int) elements, (float) (1 / Math.sqrt(shape[0]))), 0, (int) elements, data, 0);
        } else {
            f.randomBlocks(random, data, 0, elements / type.blockSize());
        }
        return new GgufTensor(name, type, shape, dims.length, Path.of("test.gguf"), 0, data);
    }

    private static GgufTensor f32Tensor(String name, float[] values, long... dims) {
        long[] shape = {1, 1, 1, 1};
        System.arraycopy(dims, 0, shape, 0, dims.length);
        MemorySegment data = Arena.ofAuto().allocate(4L * values.length, 64);
        QuantFormats.of(GgmlType.F32).quantize(values, 0, values.length, data, 0);
        return new GgufTensor(name, GgmlType.F32, shape, dims.length, Path.of("test.gguf"), 0, data);
    }

    private static Activations fill(Backend b, float[] values, int rows, int width) {
        Activations a = b.allocate(rows, width);
        for (int r = 0; r < rows; r++) {
            b.write(values, r * width, a, r);
        }
        return a;
    }

    private static float[] rows(Backend b, Activations a, int n) {
        float[] out = new float[n * a.width()];
        for (int r = 0; r < n; r++) {
            b.read(a, r, out, r * a.width());
        }
        return out;
    }

    /** A GPU buffer whose first {@code n} rows hold NaN, so that unwritten outputs show. */
    private static Activations poisoned(int rows, int width) {
        float[] nan = new float[rows * width];
        Arrays.fill(nan, Float.NaN);
        return fill(gpu, nan, rows, width);
    }

    /** ||actual - expected|| / ||expected||, and no NaN where the reference has none. */
    private static void assertClose(float[] expected, float[] actual, double bound, String what) {
        assertEquals(expected.length, actual.length, what + ": length");
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < expected.length; i++) {
            assertTrue(Float.isFinite(actual[i]) || !Float.isFinite(expected[i]),
                    what + ": element " + i + " is " + actual[i] + ", expected " + expected[i]);
            double d = (double) actual[i] - expected[i];
            diff += d * d;
            norm += (double) expected[i] * expected[i];
        }
        double rel = Math.sqrt(diff / Math.max(norm, 1e-30));
        assertTrue(rel <= bound, what + ": relative error " + rel + " > " + bound);
    }

    static Stream<GgmlType> formats() {
        return Kernels.FORMATS.stream();
    }

    // ------------------------------------------------------------ weights

    @ParameterizedTest
    @MethodSource("formats")
    void embeddingDecodesEveryFormatBitForBitLikeTheCpu(GgmlType type) {
        int len = 512;
        int vocab = 37;
        GgufTensor t = randomTensor("emb", type, len, vocab);
        int[] tokens = {0, 36, 5, 5, 17, 1};
        int n = tokens.length;
        Activations g = poisoned(n, len);
        gpu.embed(gpu.bind(t), tokens, 0, n, g);
        Activations c = cpu.allocate(n, len);
        cpu.embed(cpu.bind(t), tokens, 0, n, c);
        float[] expected = rows(cpu, c, n);
        float[] actual = rows(gpu, g, n);
        for (int i = 0; i < expected.length; i++) {
            assertEquals(Float.floatToIntBits(expected[i]), Float.floatToIntBits(actual[i]),
                    type + " value " + i + ": expected " + expected[i] + ", got " + actual[i]);
        }
    }

    static Stream<Arguments> matmulCases() {
        return Kernels.FORMATS.stream().flatMap(t -> Stream.of(1, 3, 9, 70).map(n -> Arguments.of(t, n)));
    }

    @ParameterizedTest(name = "{0} x {1} tokens")
    @MethodSource("matmulCases")
    void matmulMatchesADoublePrecisionProduct(GgmlType type, int n) {
        // 768 values: three 256-value blocks, so the Q8_K kernels' lanes do not divide a row evenly;
        // 203 rows: neither a multiple of the matrix-vector nor of the tiled kernel's rows (the matrix-vector
        // kernels at any batch); 1100 rows: the tiled kernel's for more than 4 tokens
        assertMatmulMatches(type, n, 768, 203);
        assertMatmulMatches(type, n, 768, CudaBackend.MATVEC_MAX_ROWS_ANY_BATCH + 76);
    }

    static Stream<Arguments> tallMatrixCases() {
        return Kernels.Q8K_FORMATS.stream().flatMap(t -> Stream.of(1, 4).map(n -> Arguments.of(t, n)));
    }

    /** Enough rows that each block of the grid-stride Q8_K kernels takes several. */
    @ParameterizedTest(name = "{0} x {1} tokens")
    @MethodSource("tallMatrixCases")
    void tallMatricesLoopOverTheirRowsInEveryBlock(GgmlType type, int n) {
        int rows = CudaBackend.MV_ROWS_PER_BLOCK * gpu.device().multiprocessors()
                * CudaBackend.MVQ_BLOCKS_PER_MULTIPROCESSOR / n * 3 + 5;
        assertMatmulMatches(type, n, 256, rows);
    }

    private void assertMatmulMatches(GgmlType type, int n, int len, int rows) {
        GgufTensor t = randomTensor("w", type, len, rows);
        float[] w = decoded(t);
        float[] x = randomFloats(n * len, 1f);
        Activations g = poisoned(n, rows);
        gpu.matmul(gpu.bind(t), fill(gpu, x, n, len), g, n);
        float[] rounded = roundedAsTheKernelsDo(type, x, len);
        float[] expected = new float[n * rows];
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int j = 0; j < len; j++) {
                    sum += (double) w[r * len + j] * rounded[i * len + j];
                }
                expected[i * rows + r] = (float) sum;
            }
        }
        assertClose(expected, rows(gpu, g, n), 1e-5, type + " x " + n);
    }

    /**
     * The activations as the kernels see them: rounded to Q8_K as the CPU rounds them where the format has the
     * Q8_K matrix-vector kernels (batched products round them alike), unchanged otherwise.
     */
    private static float[] roundedAsTheKernelsDo(GgmlType type, float[] x, int width) {
        if (!Kernels.Q8K_FORMATS.contains(type)) {
            return x;
        }
        assertEquals(0, width % 256, "rows of whole Q8_K blocks");
        float[] r = new float[x.length];
        ActivationRounding.Q8_K.round(x, 0, r, 0, x.length);
        return r;
    }

    /** Rows of 4608 values: the lanes of the Q8_K kernels load a second round of units. */
    @ParameterizedTest(name = "{0} x {1} tokens")
    @MethodSource("tallMatrixCases")
    void longRowsMatchADoublePrecisionProduct(GgmlType type, int n) {
        assertMatmulMatches(type, n, 4608, 37);
    }

    @ParameterizedTest
    @MethodSource("tallMatrixCases")
    void aNaNActivationMakesItsTokensProductsNaN(GgmlType type, int n) {
        int len = 512;
        int rows = 37;
        GgufTensor t = randomTensor("w", type, len, rows);
        float[] x = randomFloats(n * len, 1f);
        x[(n - 1) * len + 300] = Float.NaN;
        Activations g = poisoned(n, rows);
        gpu.matmul(gpu.bind(t), fill(gpu, x, n, len), g, n);
        float[] out = rows(gpu, g, n);
        for (int r = 0; r < rows; r++) {
            assertTrue(Float.isNaN(out[(n - 1) * rows + r]),
                    "row " + r + " of the token with a NaN: " + out[(n - 1) * rows + r]);
            if (n > 1) {
                assertTrue(Float.isFinite(out[r]), "row " + r + " of a token without NaN: " + out[r]);
            }
        }
    }

    /** The values a tensor holds, as the CPU's reference dequantization decodes them. */
    private static float[] decoded(GgufTensor t) {
        float[] out = new float[(int) t.elementCount()];
        QuantFormats.of(t.type()).dequantize(t.data(), 0, out, 0, out.length);
        return out;
    }

    @Test
    void matmulRejectsMismatchedShapesAndForeignBuffers() {
        Weight w = gpu.bind(randomTensor("w", GgmlType.Q8_0, 64, 8));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.matmul(w, gpu.allocate(1, 32), gpu.allocate(1, 8), 1));
        assertTrue(e.getMessage().contains("input of w"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> gpu.matmul(w, cpu.allocate(1, 64), gpu.allocate(1, 8), 1));
        assertTrue(e.getMessage().contains("does not belong to the CUDA backend"), e.getMessage());
    }

    // ------------------------------------------------------------ element-wise

    @ParameterizedTest
    @ValueSource(ints = {1, 5})
    void rmsNormOverRowsAndOverHeadsMatchesTheCpu(int n) {
        int width = 384;
        for (int group : new int[] {width, 64}) {
            GgufTensor gain = f32Tensor("gain", randomFloats(group, 1f), group);
            float[] x = randomFloats(n * width, 3f);
            Activations g = poisoned(n, width);
            gpu.rmsNorm(fill(gpu, x, n, width), gpu.bind(gain), 1e-6f, g, n);
            Activations c = cpu.allocate(n, width);
            cpu.rmsNorm(fill(cpu, x, n, width), cpu.bind(gain), 1e-6f, c, n);
            assertClose(rows(cpu, c, n), rows(gpu, g, n), 1e-6, "groups of " + group);
            // in place, as the graph applies it to the query and key heads
            Activations inPlace = fill(gpu, x, n, width);
            gpu.rmsNorm(inPlace, gpu.bind(gain), 1e-6f, inPlace, n);
            assertClose(rows(cpu, c, n), rows(gpu, inPlace, n), 1e-6, "in place, groups of " + group);
        }
    }

    static Stream<Rope> ropes() {
        return Stream.of(Rope.plain(64, Rope.Style.NEOX, 1e6f), Rope.plain(128, Rope.Style.NEOX, 10000f),
                Rope.plain(32, Rope.Style.NORMAL, 10000f),
                new Rope(64, Rope.Style.NEOX, 1e6f, 0.25f, 1f, 1f, 32f, 1f, 4096));
    }

    @ParameterizedTest
    @MethodSource("ropes")
    void ropeMatchesTheCpu(Rope rope) {
        int heads = 3;
        int headDim = rope.dims();
        int n = 4;
        for (int startPos : new int[] {0, 1000}) {
            float[] x = randomFloats(n * heads * headDim, 1f);
            Activations g = fill(gpu, x, n, heads * headDim);
            gpu.rope(g, heads, rope, startPos, n);
            Activations c = fill(cpu, x, n, heads * headDim);
            cpu.rope(c, heads, rope, startPos, n);
            assertClose(rows(cpu, c, n), rows(gpu, g, n), 1e-6, rope + " at " + startPos);
        }
    }

    @Test
    void addAndSiluMulMatchTheCpu() {
        int n = 3;
        int width = 102; // not a multiple of 4: rows are padded on the GPU
        float[] a = randomFloats(n * width, 4f);
        float[] b = randomFloats(n * width, 4f);
        Activations ga = fill(gpu, a, n, width);
        Activations ca = fill(cpu, a, n, width);
        gpu.add(ga, fill(gpu, b, n, width), n);
        cpu.add(ca, fill(cpu, b, n, width), n);
        assertClose(rows(cpu, ca, n), rows(gpu, ga, n), 0, "add");
        gpu.siluMul(ga, fill(gpu, b, n, width), n);
        cpu.siluMul(ca, fill(cpu, b, n, width), n);
        assertClose(rows(cpu, ca, n), rows(gpu, ga, n), 1e-6, "siluMul");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3})
    void fusedAddNormAndNormRopeGiveExactlyTheSeparateResults(int n) {
        int width = 2048;
        float[] a = randomFloats(n * width, 2f);
        float[] b = randomFloats(n * width, 2f);
        Weight gain = gpu.bind(f32Tensor("gain", randomFloats(width, 1f), width));
        Activations separate = fill(gpu, a, n, width);
        Activations separateOut = poisoned(n, width);
        gpu.add(separate, fill(gpu, b, n, width), n);
        gpu.rmsNorm(separate, gain, 1e-6f, separateOut, n);
        Activations fused = fill(gpu, a, n, width);
        Activations fusedOut = poisoned(n, width);
        gpu.addRmsNorm(fused, fill(gpu, b, n, width), gain, 1e-6f, fusedOut, n);
        assertClose(rows(gpu, separate, n), rows(gpu, fused, n), 0, "sum");
        assertClose(rows(gpu, separateOut, n), rows(gpu, fusedOut, n), 0, "norm of the sum");

        for (Rope rope : ropes().toList()) {
            int heads = 3;
            int headDim = 128;
            float[] x = randomFloats(n * heads * headDim, 3f);
            Weight headGain = gpu.bind(f32Tensor("head gain", randomFloats(headDim, 1f), headDim));
            Activations s = fill(gpu, x, n, heads * headDim);
            gpu.rmsNorm(s, headGain, 1e-6f, s, n);
            gpu.rope(s, heads, rope, 77, n);
            Activations f = fill(gpu, x, n, heads * headDim);
            gpu.rmsNormRope(f, headGain, 1e-6f, heads, rope, 77, n);
            assertClose(rows(gpu, s, n), rows(gpu, f, n), 0, "norm and " + rope);
        }
    }

    static Stream<Arguments> normRopeStoreCases() {
        return Stream.of(KvCacheType.F16, KvCacheType.F32)
                .flatMap(type -> ropes().flatMap(rope -> Stream.of(1, 3).map(n -> Arguments.of(type, rope, n))));
    }

    /** The fused attention inputs (norm + RoPE of queries and keys, keys and values into the cache) change nothing. */
    @ParameterizedTest(name = "{0}, {1}, {2} rows")
    @MethodSource("normRopeStoreCases")
    void fusedNormRopeAndKvStoreGiveExactlyTheSeparateResults(KvCacheType type, Rope rope, int n) {
        AttentionShape shape = new AttentionShape(8, 2, 128, (float) (1 / Math.sqrt(128)));
        int startPos = 5;
        float[] earlierK = randomFloats(startPos * shape.kvDim(), 1f);
        float[] earlierV = randomFloats(startPos * shape.kvDim(), 1f);
        float[] q = randomFloats(n * shape.qDim(), 2f);
        float[] k = randomFloats(n * shape.kvDim(), 2f);
        float[] v = randomFloats(n * shape.kvDim(), 1f);
        Weight qGain = gpu.bind(f32Tensor("q gain", randomFloats(shape.headDim(), 1f), shape.headDim()));
        Weight kGain = gpu.bind(f32Tensor("k gain", randomFloats(shape.headDim(), 1f), shape.headDim()));
        try (KvCache separate = gpu.allocateKvCache(2, 16, shape.kvHeads(), shape.headDim(), type);
             KvCache fused = gpu.allocateKvCache(2, 16, shape.kvHeads(), shape.headDim(), type)) {
            for (KvCache c : List.of(separate, fused)) {
                gpu.storeKv(c, 1, fill(gpu, earlierK, startPos, shape.kvDim()),
                        fill(gpu, earlierV, startPos, shape.kvDim()), 0, startPos);
            }
            Activations qs = fill(gpu, q, n, shape.qDim());
            Activations ks = fill(gpu, k, n, shape.kvDim());
            gpu.rmsNormRope(qs, qGain, 1e-6f, shape.heads(), rope, startPos, n);
            gpu.rmsNormRope(ks, kGain, 1e-6f, shape.kvHeads(), rope, startPos, n);
            gpu.storeKv(separate, 1, ks, fill(gpu, v, n, shape.kvDim()), startPos, n);
            Activations qf = fill(gpu, q, n, shape.qDim());
            Activations kf = fill(gpu, k, n, shape.kvDim());
            gpu.normRopeStoreKv(qf, qGain, kf, kGain, fill(gpu, v, n, shape.kvDim()), 1e-6f, shape.heads(),
                    shape.kvHeads(), rope, fused, 1, startPos, n);
            assertClose(rows(gpu, qs, n), rows(gpu, qf, n), 0, "queries");
            assertClose(rows(gpu, ks, n), rows(gpu, kf, n), 0, "keys");
            Activations outS = poisoned(n, shape.qDim());
            Activations outF = poisoned(n, shape.qDim());
            gpu.attention(qs, separate, 1, shape, startPos, n, outS);
            gpu.attention(qs, fused, 1, shape, startPos, n, outF);
            assertClose(rows(gpu, outS, n), rows(gpu, outF, n), 0, "attention over the stored keys and values");
        }
    }

    @Test
    void copyRowsCopiesWholeRows() {
        int width = 7;
        float[] a = randomFloats(5 * width, 1f);
        Activations src = fill(gpu, a, 5, width);
        Activations dst = poisoned(4, width);
        gpu.copyRows(src, 2, dst, 1, 3);
        float[] got = rows(gpu, dst, 4);
        assertArrayEquals(Arrays.copyOfRange(a, 2 * width, 5 * width), Arrays.copyOfRange(got, width, 4 * width), 0f);
        assertTrue(Float.isNaN(got[0]), "row 0 untouched");
    }

    /** Several rows to and from the host at once: rows without padding (12 values) in one transfer, with (7) not. */
    @ParameterizedTest
    @ValueSource(ints = {12, 7})
    void rowsCrossToAndFromTheHostWhole(int width) {
        float[] a = randomFloats(6 * width, 1f);
        Activations dst = poisoned(8, width);
        gpu.writeRows(a, width, dst, 2, 5);  // rows 1..5 of a into rows 2..6
        float[] one = new float[8 * width];
        for (int r = 0; r < 8; r++) {
            gpu.read(dst, r, one, r * width);
        }
        assertArrayEquals(Arrays.copyOfRange(a, width, 6 * width), Arrays.copyOfRange(one, 2 * width, 7 * width), 0f);
        assertTrue(Float.isNaN(one[width]) && Float.isNaN(one[7 * width]), "rows 1 and 7 untouched");
        float[] many = new float[1 + 5 * width];
        gpu.readRows(dst, 2, 5, many, 1);
        assertArrayEquals(Arrays.copyOfRange(one, 2 * width, 7 * width), Arrays.copyOfRange(many, 1, 1 + 5 * width),
                0f);
        assertThrows(IndexOutOfBoundsException.class, () -> gpu.readRows(dst, 4, 5, many, 0));
    }

    // ------------------------------------------------------------ recorded decode steps

    /** One decode step of a tiny attention layer: every operation that takes a token or a position. */
    private record TinyStep(Weight table, Weight gain, Weight wq, Weight wk, Weight wv, Weight wo, Rope rope,
                            AttentionShape shape) {

        void run(int[] tokens, int pos, KvCache cache, Activations x, Activations q, Activations k, Activations v,
                 Activations heads, Activations out) {
            gpu.embed(table, tokens, pos, 1, x);
            gpu.rmsNorm(x, gain, 1e-6f, x, 1);
            gpu.matmul(wq, x, q, 1);
            gpu.matmul(wk, x, k, 1);
            gpu.matmul(wv, x, v, 1);
            gpu.rope(q, shape.heads(), rope, pos, 1);
            gpu.rope(k, shape.kvHeads(), rope, pos, 1);
            gpu.storeKv(cache, 1, k, v, pos, 1);
            gpu.attention(q, cache, 1, shape, pos, 1, heads);
            gpu.matmul(wo, heads, x, 1);
            gpu.copyRows(x, 0, out, 1, 1);
        }
    }

    /** The output of each step, run directly ({@code recorder} null) or through {@code recorder}. */
    private static float[][] decode(TinyStep t, int[] tokens, StepRecorder recorder) {
        int embd = t.table().rowLength();
        AttentionShape s = t.shape();
        float[][] result = new float[tokens.length][];
        try (KvCache cache = gpu.allocateKvCache(2, tokens.length, s.kvHeads(), s.headDim(), KvCacheType.F16);
             Activations x = gpu.allocate(1, embd); Activations q = gpu.allocate(1, s.qDim());
             Activations k = gpu.allocate(1, s.kvDim()); Activations v = gpu.allocate(1, s.kvDim());
             Activations heads = gpu.allocate(1, s.qDim()); Activations out = gpu.allocate(2, embd)) {
            for (int p = 0; p < tokens.length; p++) {
                int pos = p;
                Runnable step = () -> t.run(tokens, pos, cache, x, q, k, v, heads, out);
                if (recorder == null) {
                    step.run();
                } else {
                    recorder.run("tiny", tokens[pos], pos, step);
                }
                result[p] = Arrays.copyOfRange(rows(gpu, out, 2), embd, 2 * embd);
            }
        }
        return result;
    }

    private TinyStep tinyStep(int vocab, int embd) {
        AttentionShape s = new AttentionShape(4, 2, 16, 0.25f);
        return new TinyStep(gpu.bind(randomTensor("table", GgmlType.Q8_0, embd, vocab)),
                gpu.bind(f32Tensor("gain", randomFloats(embd, 1f), embd)),
                gpu.bind(randomTensor("wq", GgmlType.Q8_0, embd, s.qDim())),
                gpu.bind(randomTensor("wk", GgmlType.Q8_0, embd, s.kvDim())),
                gpu.bind(randomTensor("wv", GgmlType.Q8_0, embd, s.kvDim())),
                gpu.bind(randomTensor("wo", GgmlType.Q8_0, s.qDim(), embd)),
                Rope.plain(16, Rope.Style.NEOX, 10000f), s);
    }

    @Test
    void aRecordedDecodeStepReplaysExactlyLikeDirectCalls() {
        TinyStep t = tinyStep(40, 64);
        int[] tokens = random.ints(7, 0, 40).toArray();
        float[][] direct = decode(t, tokens, null);
        try (StepRecorder recorder = gpu.stepRecorder()) {
            float[][] replayed = decode(t, tokens, recorder);
            CudaStepGraph g = (CudaStepGraph) recorder;
            assertEquals(CudaBackend.graphsEnabled(), g.recorded(),
                    "recorded as a CUDA graph (disabled because: " + g.disabledReason() + ")");
            for (int p = 0; p < tokens.length; p++) {
                assertClose(direct[p], replayed[p], 0, "step " + p);
            }
        }
    }

    @Test
    void kernelsOverlapOnHopperUnlessTurnedOff() {
        TinyStep t = tinyStep(40, 64);
        decode(t, random.ints(3, 0, 40).toArray(), null);
        boolean expected = gpu.device().major() >= 9 && !"false".equalsIgnoreCase(System.getProperty("moe4j.cuda.pdl"));
        assertEquals(expected, gpu.kernelLaunches().startsWith("overlapped"), gpu.kernelLaunches());
    }

    @Test
    void aRecordedStepChecksTokenAndPositionOnReplayAndRefusesHostTransfers() {
        TinyStep t = tinyStep(40, 64);
        AttentionShape s = t.shape();
        int[] tokens = {3, 39, 40};
        try (StepRecorder recorder = gpu.stepRecorder();
             KvCache cache = gpu.allocateKvCache(2, 2, s.kvHeads(), s.headDim(), KvCacheType.F32);
             Activations x = gpu.allocate(1, 64); Activations q = gpu.allocate(1, s.qDim());
             Activations k = gpu.allocate(1, s.kvDim()); Activations v = gpu.allocate(1, s.kvDim());
             Activations heads = gpu.allocate(1, s.qDim()); Activations out = gpu.allocate(2, 64)) {
            recorder.run("tiny", tokens[0], 0, () -> t.run(tokens, 0, cache, x, q, k, v, heads, out));
            recorder.run("tiny", tokens[1], 1, () -> t.run(tokens, 1, cache, x, q, k, v, heads, out));
            float[] last = rows(gpu, out, 2);
            for (int i = 64; i < 128; i++) {
                assertTrue(Float.isFinite(last[i]), "step output " + i);
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> recorder.run("tiny", tokens[1], 2, () -> t.run(tokens, 2, cache, x, q, k, v, heads, out)));
            assertTrue(e.getMessage().contains("outside the KV cache"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class,
                    () -> recorder.run("tiny", tokens[2], 1, () -> t.run(tokens, 2, cache, x, q, k, v, heads, out)));
            assertTrue(e.getMessage().contains("outside the vocabulary"), e.getMessage());
        }
        try (StepRecorder recorder = gpu.stepRecorder(); Activations a = gpu.allocate(1, 4)) {
            float[] host = new float[4];
            if (CudaBackend.graphsEnabled()) {
                IllegalStateException e = assertThrows(IllegalStateException.class,
                        () -> recorder.run("read", 0, 0, () -> gpu.read(a, 0, host, 0)));
                assertTrue(e.getMessage().contains("recorded decode step"), e.getMessage());
            }
            gpu.write(new float[] {1, 2, 3, 4}, 0, a, 0);
            gpu.read(a, 0, host, 0);
            assertArrayEquals(new float[] {1, 2, 3, 4}, host, 0f, "the backend works after a refused step");
        }
    }

    // ------------------------------------------------------------ attention

    static Stream<Arguments> attentionCases() {
        return Stream.of(KvCacheType.F16, KvCacheType.F32).flatMap(type -> Stream.of(
                Arguments.of(type, 64, 0, 1), Arguments.of(type, 64, 37, 1), Arguments.of(type, 128, 0, 20),
                Arguments.of(type, 128, 5, 9), Arguments.of(type, 128, 300, 1), Arguments.of(type, 128, 200, 4),
                Arguments.of(type, 64, 100, 7), Arguments.of(type, 96, 45, 2)));
    }

    @ParameterizedTest(name = "{0} cache, head {1}, from {2}, {3} tokens")
    @MethodSource("attentionCases")
    void attentionMatchesTheCpu(KvCacheType type, int headDim, int startPos, int n) {
        AttentionShape s = new AttentionShape(8, 2, headDim, (float) (1 / Math.sqrt(headDim)));
        int total = startPos + n;
        float[] q = randomFloats(total * s.qDim(), 1f);
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        float[] expected = runAttention(cpu, type, s, q, k, v, startPos, n, total);
        float[] actual = runAttention(gpu, type, s, q, k, v, startPos, n, total);
        assertClose(expected, actual, 1e-5, type + " attention");
    }

    static Stream<Arguments> tiledAttentionCases() {
        // whole tiles of 16 rows and a partial last one; from position 0 and after earlier positions (tiles of 32
        // positions cut inside a row's range); the two KV cache types
        return Stream.of(KvCacheType.F16, KvCacheType.F32).flatMap(type -> Stream.of(
                Arguments.of(type, 0, 16), Arguments.of(type, 0, 70), Arguments.of(type, 45, 33),
                Arguments.of(type, 300, 17)));
    }

    @ParameterizedTest(name = "{0} cache, from {1}, {2} tokens")
    @MethodSource("tiledAttentionCases")
    void tiledPromptAttentionMatchesTheCpu(KvCacheType type, int startPos, int n) {
        AttentionShape s = new AttentionShape(8, 2, 128, (float) (1 / Math.sqrt(128)));
        int total = startPos + n;
        float[] q = randomFloats(total * s.qDim(), 1f);
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        float[] expected = runAttention(cpu, type, s, q, k, v, startPos, n, total);
        float[] actual = withTiledAttention(true, () -> runAttention(gpu, type, s, q, k, v, startPos, n, total));
        assertClose(expected, actual, 1e-5, type + " attention");
    }

    /** {@code run} with the GPU's tiled prompt attention on or off, then as it was. */
    private static float[] withTiledAttention(boolean tiled, java.util.function.Supplier<float[]> run) {
        boolean before = gpu.tiledAttention();
        gpu.useTiledAttention(tiled);
        try {
            return run.get();
        } finally {
            gpu.useTiledAttention(before);
        }
    }

    /** A NaN value at position 10 of a prompt reaches rows 10 on, never the rows before it (with either kernel). */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void aNaNValueReachesOnlyTheRowsThatSeeIt(boolean tiled) {
        AttentionShape s = new AttentionShape(8, 2, 128, (float) (1 / Math.sqrt(128)));
        int n = 16;
        float[] q = randomFloats(n * s.qDim(), 1f);
        float[] k = randomFloats(n * s.kvDim(), 1f);
        float[] v = randomFloats(n * s.kvDim(), 1f);
        v[10 * s.kvDim() + 3] = Float.NaN;
        float[] expected = runAttention(cpu, KvCacheType.F32, s, q, k, v, 0, n, n);
        float[] actual = withTiledAttention(tiled, () -> runAttention(gpu, KvCacheType.F32, s, q, k, v, 0, n, n));
        int seen = 10 * s.qDim();
        assertClose(Arrays.copyOf(expected, seen), Arrays.copyOf(actual, seen), 1e-5, "rows before the NaN");
        assertTrue(Float.isNaN(actual[10 * s.qDim() + 3]), "row 10 sees the NaN value");
    }

    /** Stores keys/values of positions 0..total-1 (the first startPos as an earlier step), then attends the last n. */
    private static float[] runAttention(Backend b, KvCacheType type, AttentionShape s, float[] q, float[] k, float[] v,
                                        int startPos, int n, int total) {
        try (KvCache cache = b.allocateKvCache(2, total + 3, s.kvHeads(), s.headDim(), type)) {
            if (startPos > 0) {
                b.storeKv(cache, 1, fill(b, Arrays.copyOf(k, startPos * s.kvDim()), startPos, s.kvDim()),
                        fill(b, Arrays.copyOf(v, startPos * s.kvDim()), startPos, s.kvDim()), 0, startPos);
            }
            b.storeKv(cache, 1, fill(b, Arrays.copyOfRange(k, startPos * s.kvDim(), total * s.kvDim()), n, s.kvDim()),
                    fill(b, Arrays.copyOfRange(v, startPos * s.kvDim(), total * s.kvDim()), n, s.kvDim()), startPos, n);
            float[] nan = new float[n * s.qDim()];
            Arrays.fill(nan, Float.NaN);
            Activations out = fill(b, nan, n, s.qDim());
            b.attention(fill(b, Arrays.copyOfRange(q, startPos * s.qDim(), total * s.qDim()), n, s.qDim()), cache, 1, s,
                    startPos, n, out);
            return rows(b, out, n);
        }
    }

    @Test
    void kvCacheTypesTheGpuDoesNotStoreAreRejectedClearly() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.allocateKvCache(1, 8, 1, 64, KvCacheType.Q8_0));
        assertTrue(e.getMessage().contains("f16 or f32"), e.getMessage());
    }

    // ------------------------------------------------------------ mixture of experts

    @ParameterizedTest
    @ValueSource(ints = {1, 3})
    void routingMatchesTheCpu(int n) {
        int experts = 24;
        int k = 4;
        float[] logits = randomFloats(n * experts, 2f);
        logits[3] = logits[7]; // a tie: the lower index comes first
        ExpertRouting gr = gpu.allocateRouting(experts, k, n);
        gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, gr);
        int[] ids = new int[n * k];
        float[] weights = new float[n * k];
        gpu.readRouting(gr, n, ids, weights);
        ExpertRouting cr = cpu.allocateRouting(experts, k, n);
        cpu.routeSoftmaxTopK(fill(cpu, logits, n, experts), n, cr);
        assertArrayEquals(Arrays.copyOf(cr.expert(), n * k), ids, "chosen experts");
        assertClose(Arrays.copyOf(cr.weight(), n * k), weights, 1e-6, "expert weights");
        gr.close();
    }

    /**
     * route_f32 (router product and top-k in one launch) against matmul then routeSoftmaxTopK on the GPU, with 4 warps a
     * block and with 1 (-Dmoe4j.cuda.routeWarps).
     */
    @ParameterizedTest(name = "{0} tokens, {1} warps a block")
    @CsvSource({"1, 4", "3, 4", "70, 4", "1, 1", "3, 1", "70, 1"})
    void fusedRoutingGivesExactlyTheSeparateResults(int n, int warps) {
        int before = gpu.routeWarps();
        gpu.useRouteWarps(warps);
        try {
            assertFusedRoutingGivesTheSeparateResults(n);
        } finally {
            gpu.useRouteWarps(before);
        }
    }

    private void assertFusedRoutingGivesTheSeparateResults(int n) {
        int experts = 128;
        int k = 8;
        int embd = 512;
        GgufTensor router = f32Tensor("router", randomFloats(embd * experts, 0.05f), embd, experts);
        Weight w = gpu.bind(router);
        Activations x = fill(gpu, randomFloats(n * embd, 1f), n, embd);
        ExpertRouting separate = gpu.allocateRouting(experts, k, n);
        Activations separateLogits = poisoned(n, experts);
        gpu.matmul(w, x, separateLogits, n);
        gpu.routeSoftmaxTopK(separateLogits, n, separate);
        ExpertRouting fused = gpu.allocateRouting(experts, k, n);
        for (int run = 0; run < 3; run++) {  // the per-token counters must be back at zero after each launch
            Activations fusedLogits = poisoned(n, experts);
            gpu.route(w, x, fusedLogits, n, fused);
            assertClose(rows(gpu, separateLogits, n), rows(gpu, fusedLogits, n), 0, "router logits, run " + run);
            int[] ids = new int[n * k];
            int[] fusedIds = new int[n * k];
            float[] weights = new float[n * k];
            float[] fusedWeights = new float[n * k];
            gpu.readRouting(separate, n, ids, weights);
            gpu.readRouting(fused, n, fusedIds, fusedWeights);
            assertArrayEquals(ids, fusedIds, "chosen experts, run " + run);
            assertArrayEquals(weights, fusedWeights, "expert weights, run " + run);
        }
        separate.close();
        fused.close();
    }

    /**
     * The kernels asking L2 for what they read first before they wait (-Dmoe4j.cuda.prefetch) give the same results:
     * a norm of a row, the residual add and norm (rounded for up to 4 tokens, plain for 5), the fused routing (a warp a
     * block for up to 4 tokens, four for 5), the query heads' norm and RoPE, the attention inputs' norms stored into
     * the cache, and attention over it (one token: the cache's rows are prefetched; more: not).
     */
    @ParameterizedTest(name = "{0} tokens")
    @ValueSource(ints = {1, 3, 5})
    void prefetchingChangesNoResult(int n) {
        int experts = 128;
        int k = 8;
        int embd = 512;
        AttentionShape shape = new AttentionShape(8, 2, 128, (float) (1 / Math.sqrt(128)));
        int startPos = 5;
        GgufTensor router = f32Tensor("router", randomFloats(embd * experts, 0.05f), embd, experts);
        GgufTensor gain = f32Tensor("gain", randomFloats(embd, 1f), embd);
        GgufTensor headGain = f32Tensor("head gain", randomFloats(shape.headDim(), 1f), shape.headDim());
        float[] start = randomFloats(n * embd, 1f);
        float[] addend = randomFloats(n * embd, 1f);
        float[] earlierK = randomFloats(startPos * shape.kvDim(), 1f);
        float[] earlierV = randomFloats(startPos * shape.kvDim(), 1f);
        float[] q = randomFloats(n * shape.qDim(), 2f);
        float[] kv = randomFloats(n * shape.kvDim(), 2f);
        boolean before = gpu.prefetch();
        float[][][] results = new float[2][][];
        int[][] chosen = new int[2][n * k];
        try {
            for (int mode = 0; mode < 2; mode++) {
                gpu.usePrefetch(mode == 1);
                Weight w = gpu.bind(router);
                Weight g = gpu.bind(gain);
                Weight hg = gpu.bind(headGain);
                try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
                     KvCache cache = gpu.allocateKvCache(2, 16, shape.kvHeads(), shape.headDim(), KvCacheType.F16);
                     Activations acc = fill(gpu, start, n, embd);
                     Activations x = fill(gpu, addend, n, embd);
                     Activations normed = poisoned(n, embd);
                     Activations plain = poisoned(n, embd);
                     Activations logits = poisoned(n, experts);
                     Activations qs = fill(gpu, q, n, shape.qDim());
                     Activations ks = fill(gpu, kv, n, shape.kvDim());
                     Activations attended = poisoned(n, shape.qDim())) {
                    gpu.rmsNorm(x, g, 1e-6f, plain, n);
                    gpu.addRmsNorm(acc, x, g, 1e-6f, normed, n);
                    gpu.route(w, normed, logits, n, routing);
                    float[] weights = new float[n * k];
                    gpu.readRouting(routing, n, chosen[mode], weights);
                    gpu.storeKv(cache, 1, fill(gpu, earlierK, startPos, shape.kvDim()),
                            fill(gpu, earlierV, startPos, shape.kvDim()), 0, startPos);
                    Rope rope = ropes().findFirst().orElseThrow();
                    Activations roped = fill(gpu, q, n, shape.qDim());
                    gpu.rmsNormRope(roped, hg, 1e-6f, shape.heads(), rope, startPos, n);
                    gpu.normRopeStoreKv(qs, hg, ks, hg, fill(gpu, kv, n, shape.kvDim()), 1e-6f, shape.heads(),
                            shape.kvHeads(), rope, cache, 1, startPos, n);
                    gpu.attention(qs, cache, 1, shape, startPos, n, attended);
                    results[mode] = new float[][] {rows(gpu, plain, n), rows(gpu, acc, n), rows(gpu, normed, n),
                            rows(gpu, logits, n), weights, rows(gpu, roped, n), rows(gpu, qs, n), rows(gpu, ks, n),
                            rows(gpu, attended, n)};
                    roped.close();
                }
            }
        } finally {
            gpu.usePrefetch(before);
        }
        String[] what = {"norm", "residual", "added and normed", "router logits", "expert weights", "queries roped",
                "queries stored", "keys", "attention"};
        for (int i = 0; i < what.length; i++) {
            for (float v : results[0][i]) {
                assertTrue(Float.isFinite(v), what[i] + ": every value written");
            }
            assertArrayEquals(results[0][i], results[1][i], 0f, what[i] + ", prefetched against not");
        }
        assertArrayEquals(chosen[0], chosen[1], "chosen experts, prefetched against not");
    }

    static Stream<Arguments> matmul3Cases() {
        // the shapes of a layer's q, k and v, 1 and 4 tokens: all three of one format (one launch), the last of another
        // (two); 9 tokens and Q8_0 (no Q8_K kernels) take one product after the other
        return Stream.of(1, 4, 9).flatMap(n -> Stream.of(
                Arguments.of(n, GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q4_K),
                Arguments.of(n, GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K),
                Arguments.of(n, GgmlType.Q3_K, GgmlType.Q3_K, GgmlType.Q5_K),
                Arguments.of(n, GgmlType.Q8_0, GgmlType.Q8_0, GgmlType.Q8_0)));
    }

    @ParameterizedTest(name = "{0} tokens, {1}/{2}/{3}")
    @MethodSource("matmul3Cases")
    void threeProductsOfOneInputGiveExactlyTheSeparateResults(int n, GgmlType qType, GgmlType kType,
                                                              GgmlType vType) {
        int embd = 768;
        int[] rows = {1024, 128, 131};
        GgmlType[] types = {qType, kType, vType};
        Weight[] w = new Weight[3];
        Activations[] separate = new Activations[3];
        Activations[] fused = new Activations[3];
        for (int i = 0; i < 3; i++) {
            w[i] = gpu.bind(randomTensor("w" + i, types[i], embd, rows[i]));
            separate[i] = poisoned(n, rows[i]);
            fused[i] = poisoned(n, rows[i]);
        }
        Activations x = fill(gpu, randomFloats(n * embd, 1f), n, embd);
        for (int i = 0; i < 3; i++) {
            gpu.matmul(w[i], x, separate[i], n);
        }
        gpu.matmul3(w[0], fused[0], w[1], fused[1], w[2], fused[2], x, n);
        for (int i = 0; i < 3; i++) {
            assertClose(rows(gpu, separate[i], n), rows(gpu, fused[i], n), 0, "product " + i);
        }
    }

    /**
     * Rounding the normed rows once in add_rms_norm (-Dmoe4j.cuda.roundOnce) gives the products that read them next
     * exactly the results of rounding them in each product's blocks: q, k, v (two formats: one fused launch and one
     * alone), the router and the experts after a second norm, and a product after a host write into the normed
     * buffer, which must read the new values, not the rounded old ones. Rows of 512 (the norm's values in registers),
     * 4352 and 8448 (a loop over the row).
     */
    @ParameterizedTest(name = "{0} tokens, rows of {1}")
    @CsvSource({"1, 512", "4, 512", "1, 4352", "4, 8448"})
    void roundingOnceInTheNormGivesTheProductsExactlyTheirResults(int n, int embd) {
        int experts = 8;
        int k = 2;
        int ffn = 256;
        Weight gain = gpu.bind(f32Tensor("gain", randomFloats(embd, 1f), embd));
        Weight q = gpu.bind(randomTensor("q", GgmlType.Q4_K, embd, 1024));
        Weight kw = gpu.bind(randomTensor("k", GgmlType.Q4_K, embd, 128));
        Weight v = gpu.bind(randomTensor("v", GgmlType.Q6_K, embd, 128));
        Weight router = gpu.bind(f32Tensor("router", randomFloats(embd * experts, 0.05f), embd, experts));
        Weight gate = gpu.bind(randomTensor("gate", GgmlType.Q4_K, embd, ffn, experts));
        Weight up = gpu.bind(randomTensor("up", GgmlType.Q4_K, embd, ffn, experts));
        Weight down = gpu.bind(randomTensor("down", GgmlType.Q6_K, ffn, embd, experts));
        float[] residual = randomFloats(n * embd, 1f);
        float[] addend = randomFloats(n * embd, 1f);
        float[] written = randomFloats(embd, 1f);
        // off, on
        float[][][] results = new float[2][][];
        long[] roundedLaunches = new long[2];
        boolean roundOnce = gpu.roundOnce();
        boolean combineRoundsOnce = gpu.combineRoundsOnce();
        for (int mode = 0; mode < 2; mode++) {
            gpu.useRoundOnce(mode > 0);
            gpu.useCombineRoundsOnce(false);  // the down projection rounds in its blocks: three reads of rounded rows
            long before = gpu.roundedLaunches();
            try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
                 ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn);
                 Activations acc = fill(gpu, residual, n, embd);
                 Activations x = fill(gpu, addend, n, embd);
                 Activations normed = gpu.allocate(n, embd)) {
                Activations qo = poisoned(n, 1024);
                Activations ko = poisoned(n, 128);
                Activations vo = poisoned(n, 128);
                Activations logits = poisoned(n, experts);
                Activations out = poisoned(n, embd);
                Activations after = poisoned(n, 1024);
                gpu.addRmsNorm(acc, x, gain, 1e-6f, normed, n);
                gpu.matmul3(q, qo, kw, ko, v, vo, normed, n);
                gpu.addRmsNorm(acc, x, gain, 1e-6f, normed, n);
                gpu.route(router, normed, logits, n, routing);
                gpu.experts(gate, up, down, normed, routing, buffers, out, n);
                gpu.addRmsNorm(acc, x, gain, 1e-6f, normed, n);
                gpu.write(written, 0, normed, 0);
                gpu.matmul(q, normed, after, n);
                roundedLaunches[mode] = gpu.roundedLaunches() - before;
                results[mode] = new float[][] {rows(gpu, qo, n), rows(gpu, ko, n), rows(gpu, vo, n),
                        rows(gpu, logits, n), rows(gpu, out, n), rows(gpu, after, n)};
            } finally {
                gpu.useRoundOnce(roundOnce);
                gpu.useCombineRoundsOnce(combineRoundsOnce);
            }
        }
        // q+k in one launch, v alone, the experts' gate and up: three reads of rounded rows; none after the host write
        assertEquals(0, roundedLaunches[0], "launches that read rounded rows with rounding once off");
        assertEquals(3, roundedLaunches[1], "launches that read rounded rows with rounding once on");
        String[] what = {"queries", "keys", "values", "router logits", "experts", "product after a host write"};
        for (int i = 0; i < what.length; i++) {
            assertClose(results[0][i], results[1][i], 0, what[i]);
        }
    }

    /**
     * One-token attention rounding its output once (-Dmoe4j.cuda.attentionRounds) gives the output projection right
     * after it exactly the results of that product rounding the output in its own blocks, and leaves the attention
     * output as it was: heads of 128 in pairs, 1 and 3 tokens from position 37, both cache types; three queries in turn
     * through the same buffers, as layers and steps reuse them, so that a group counter left non-zero shows.
     */
    @ParameterizedTest(name = "{0} cache, {1} tokens")
    @CsvSource({"F16, 1", "F32, 3"})
    void roundingTheAttentionOutputOnceGivesTheOutputProductExactlyItsResults(KvCacheType type, int n) {
        AttentionShape s = new AttentionShape(8, 2, 128, (float) (1 / Math.sqrt(128)));
        int startPos = 37;
        int total = startPos + n;
        int runs = 3;
        float[][] q = new float[runs][];
        for (int i = 0; i < runs; i++) {
            q[i] = randomFloats(n * s.qDim(), 1f);
        }
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        Weight wo = gpu.bind(randomTensor("wo", GgmlType.Q4_K, s.qDim(), 512));
        boolean attentionRounds = gpu.attentionRounds();
        boolean roundOnce = gpu.roundOnce();
        float[][][] attention = new float[2][runs][];
        float[][][] projected = new float[2][runs][];
        long[] roundedLaunches = new long[2];
        try {
            for (int mode = 0; mode < 2; mode++) {
                gpu.useRoundOnce(true);
                gpu.useAttentionRounds(mode == 1);
                try (KvCache cache = gpu.allocateKvCache(2, total + 3, s.kvHeads(), s.headDim(), type);
                     Activations query = gpu.allocate(n, s.qDim());
                     Activations out = gpu.allocate(n, s.qDim());
                     Activations y = poisoned(n, 512)) {
                    gpu.storeKv(cache, 1, fill(gpu, k, total, s.kvDim()), fill(gpu, v, total, s.kvDim()), 0, total);
                    long before = gpu.roundedLaunches();
                    for (int run = 0; run < runs; run++) {
                        for (int t = 0; t < n; t++) {
                            gpu.write(q[run], t * s.qDim(), query, t);
                        }
                        gpu.attention(query, cache, 1, s, startPos, n, out);
                        gpu.matmul(wo, out, y, n);
                        attention[mode][run] = rows(gpu, out, n);
                        projected[mode][run] = rows(gpu, y, n);
                    }
                    roundedLaunches[mode] = gpu.roundedLaunches() - before;
                }
            }
        } finally {
            gpu.useAttentionRounds(attentionRounds);
            gpu.useRoundOnce(roundOnce);
        }
        assertEquals(0, roundedLaunches[0], "products that read rounded rows, the attention not rounding");
        assertEquals(runs, roundedLaunches[1], "products that read rounded rows, the attention rounding");
        for (int run = 0; run < runs; run++) {
            assertClose(attention[0][run], attention[1][run], 0, "attention output, run " + run);
            assertClose(projected[0][run], projected[1][run], 0, "output projection, run " + run);
        }
    }

    /**
     * The experts' down projection and combine reading the SwiGLU rows rounded once by round_rows
     * (-Dmoe4j.cuda.combineRoundsOnce) gives exactly the results of rounding them in every block: the same integers,
     * the same sums in the same order.
     */
    @ParameterizedTest(name = "{0} tokens, {1} experts each, gate {2}, down {3}, {4} -> {5}")
    @CsvSource({"1, 4, Q4_K, Q6_K, 256, 768", "3, 4, Q4_K, Q3_K, 256, 768", "1, 4, Q4_K, Q4_K, 2304, 1280",
            "3, 4, Q4_K, Q5_K, 4096, 1536", "4, 8, Q5_K, Q6_K, 256, 768"})
    void everyFormOfTheDownProjectionGivesExactlyTheSameResults(int n, int k, GgmlType gateType, GgmlType downType,
                                                                 int embd, int ffn) {
        // gate Q5_K and up Q4_K: the separate gate and up products and silu_mul; 4 x 8: every rounded row there is
        int experts = 8;
        Weight gate = gpu.bind(randomTensor("gate", gateType, embd, ffn, experts));
        Weight up = gpu.bind(randomTensor("up", GgmlType.Q4_K, embd, ffn, experts));
        Weight down = gpu.bind(randomTensor("down", downType, ffn, embd, experts));
        float[] x = randomFloats(n * embd, 1f);
        float[] logits = randomFloats(n * experts, 2f);
        boolean roundsOnce = gpu.combineRoundsOnce();
        boolean roundOnce = gpu.roundOnce();
        float[][] results = new float[2][];
        long[] roundedLaunches = new long[2];
        try {
            gpu.useRoundOnce(true);  // the buffers below get room for rounded rows
            try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
                 ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn);
                 Activations in = fill(gpu, x, n, embd)) {
                gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, routing);
                for (int mode = 0; mode < 2; mode++) {
                    gpu.useCombineRoundsOnce(mode == 1);
                    try (Activations out = poisoned(n, embd)) {  // every row must be written again
                        long before = gpu.roundedLaunches();
                        gpu.experts(gate, up, down, in, routing, buffers, out, n);
                        roundedLaunches[mode] = gpu.roundedLaunches() - before;
                        results[mode] = rows(gpu, out, n);
                    }
                }
            }
        } finally {
            gpu.useCombineRoundsOnce(roundsOnce);
            gpu.useRoundOnce(roundOnce);
        }
        assertClose(results[0], results[1], 0, "experts, rounded once against rounded in every block");
        // the gate and up products read x as it is (no norm rounded it), so only the rounded down projection counts
        assertArrayEquals(new long[] {0, 1}, roundedLaunches, "launches that read rounded rows");
    }

    /**
     * The experts' gate and up kernel of one-token steps compiled for 8 blocks a multiprocessor
     * (-Dmoe4j.cuda.pairOccupancy=8) gives exactly the results of the one compiled for 4: the same code, other
     * registers. Reading rows a norm rounded, as in a decode step; rows of 4096 (two rounds of units a lane).
     */
    @ParameterizedTest(name = "{0} tokens, gate and up {1}")
    @CsvSource({"1, Q3_K", "3, Q4_K", "1, Q6_K", "4, Q5_K"})
    void theGateAndUpKernelForEightBlocksGivesExactlyTheResultsOfTheOneForFour(int n, GgmlType type) {
        int embd = 4096;
        int ffn = 512;
        int experts = 8;
        int k = 4;
        Weight gain = gpu.bind(f32Tensor("gain", randomFloats(embd, 1f), embd));
        Weight gate = gpu.bind(randomTensor("gate", type, embd, ffn, experts));
        Weight up = gpu.bind(randomTensor("up", type, embd, ffn, experts));
        Weight down = gpu.bind(randomTensor("down", GgmlType.Q4_K, ffn, embd, experts));
        float[] residual = randomFloats(n * embd, 1f);
        float[] addend = randomFloats(n * embd, 1f);
        float[] logits = randomFloats(n * experts, 2f);
        int blocks = gpu.pairOccupancy();
        boolean roundOnce = gpu.roundOnce();
        float[][] results = new float[2][];
        long[] roundedLaunches = new long[2];
        try {
            gpu.useRoundOnce(true);
            for (int mode = 0; mode < 2; mode++) {
                gpu.usePairOccupancy(mode == 0 ? 4 : 8);
                try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
                     ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn);
                     Activations acc = fill(gpu, residual, n, embd);
                     Activations x = fill(gpu, addend, n, embd);
                     Activations normed = gpu.allocate(n, embd);
                     Activations out = poisoned(n, embd)) {
                    gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, routing);
                    gpu.addRmsNorm(acc, x, gain, 1e-6f, normed, n);
                    long before = gpu.roundedLaunches();
                    gpu.experts(gate, up, down, normed, routing, buffers, out, n);
                    roundedLaunches[mode] = gpu.roundedLaunches() - before;
                    results[mode] = rows(gpu, out, n);
                }
            }
        } finally {
            gpu.usePairOccupancy(blocks);
            gpu.useRoundOnce(roundOnce);
        }
        // gate and up read the norm's rounded rows, the down projection the SwiGLU rows rounded once
        assertArrayEquals(new long[] {2, 2}, roundedLaunches, "launches that read rounded rows");
        assertClose(results[0], results[1], 0, "experts, gate and up for 8 blocks against 4");
    }

    static Stream<Arguments> expertCases() {
        // 1 and 3 tokens: per-assignment kernels; 40 tokens: grouped by expert on the device. 256/768 values:
        // rows within one pass of the Q8_K kernels' lanes; 2304/1280: gate/up and down rows long enough that
        // their lanes load a second round of units (the decode shapes of large models)
        Stream<Arguments> shortRows = Stream.of(1, 3, 40).flatMap(n -> Stream.of(
                Arguments.of(n, GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K, 256, 768),
                Arguments.of(n, GgmlType.Q5_K, GgmlType.Q5_K, GgmlType.Q3_K, 256, 768),
                Arguments.of(n, GgmlType.Q8_0, GgmlType.Q5_K, GgmlType.Q4_0, 256, 768)));
        Stream<Arguments> longRows = Stream.of(1, 3).map(n ->
                Arguments.of(n, GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K, 2304, 1280));
        return Stream.concat(shortRows, longRows);
    }

    @ParameterizedTest(name = "{0} tokens, {1}/{2}/{3}, {4} -> {5}")
    @MethodSource("expertCases")
    void expertsMatchADoublePrecisionComputationOfTheDeviceRouting(int n, GgmlType gateType, GgmlType upType,
                                                                    GgmlType downType, int embd, int ffn) {
        int experts = 8;
        int k = 4;
        GgufTensor gate = randomTensor("gate", gateType, embd, ffn, experts);
        GgufTensor up = randomTensor("up", upType, embd, ffn, experts);
        GgufTensor down = randomTensor("down", downType, ffn, embd, experts);
        float[] x = randomFloats(n * embd, 1f);
        float[] logits = randomFloats(n * experts, 2f);
        float[] actual;
        int[] ids = new int[n * k];
        float[] weights = new float[n * k];
        // one (token, expert) pair after the other, the SwiGLU outputs z stay in the gate buffer, in pair order
        boolean direct = n * k <= CudaBackend.DIRECT_EXPERT_ASSIGNMENTS;
        float[] gpuZ = null;
        try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
             ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn)) {
            gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, routing);
            gpu.readRouting(routing, n, ids, weights);
            Activations out = poisoned(n, embd);
            gpu.experts(gpu.bind(gate), gpu.bind(up), gpu.bind(down), fill(gpu, x, n, embd), routing, buffers, out, n);
            actual = rows(gpu, out, n);
            if (direct) {
                gpuZ = rows(gpu, buffers.gate(), n * k);
            }
        }
        float[] gw = decoded(gate);
        float[] uw = decoded(up);
        float[] dw = decoded(down);
        // The kernels round x (when gate and up share a format) and z to Q8_K where the formats have such kernels
        // (the CPU's rounding). Where the GPU's own z is at hand (one pair after the other), the down projection
        // is checked on it, rounded as the kernel rounds it, and z itself against the reference; otherwise the
        // reference's z, from double precision, can land on the other side of a rounding step than the GPU's
        // float32 z, which moves the result by up to ~1e-3 (a whole step of one 8-bit value): hence the looser
        // bound in that case.
        boolean roundsX = gateType == upType;
        boolean roundsZ = Kernels.Q8K_FORMATS.contains(downType);
        float[] xr = roundsX ? roundedAsTheKernelsDo(gateType, x, embd) : x;
        float[] expected = new float[n * embd];
        float[] expectedZ = new float[n * k * ffn];
        for (int t = 0; t < n; t++) {
            double[] sum = new double[embd];
            for (int s = 0; s < k; s++) {
                int a = t * k + s;
                int e = ids[a];
                float[] zf = new float[ffn];
                for (int r = 0; r < ffn; r++) {
                    double gs = 0;
                    double us = 0;
                    for (int j = 0; j < embd; j++) {
                        gs += (double) gw[(e * ffn + r) * embd + j] * xr[t * embd + j];
                        us += (double) uw[(e * ffn + r) * embd + j] * xr[t * embd + j];
                    }
                    zf[r] = (float) (gs / (1 + Math.exp(-gs)) * us);
                }
                System.arraycopy(zf, 0, expectedZ, a * ffn, ffn);
                float[] z = direct ? Arrays.copyOfRange(gpuZ, a * ffn, (a + 1) * ffn) : zf;
                if (roundsZ) {
                    z = roundedAsTheKernelsDo(downType, z, ffn);
                }
                for (int r = 0; r < embd; r++) {
                    double d = 0;
                    for (int j = 0; j < ffn; j++) {
                        d += (double) dw[(e * embd + r) * ffn + j] * z[j];
                    }
                    sum[r] += d * weights[a];
                }
            }
            for (int r = 0; r < embd; r++) {
                expected[t * embd + r] = (float) sum[r];
            }
        }
        if (direct) {
            assertClose(expectedZ, gpuZ, 1e-5, n + " tokens, SwiGLU outputs");
        }
        assertClose(expected, actual, !direct && roundsZ ? 1e-3 : 1e-5, n + " tokens");
    }

    @Test
    void routingFromAnotherBackendIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> gpu.routeSoftmaxTopK(gpu.allocate(1, 4), 1, new ExpertRouting(4, 2, 1)));
        assertTrue(e.getMessage().contains("allocateRouting"), e.getMessage());
    }

    // ------------------------------------------------------------ staged weights

    /** A staged weight computes as a bound one; staging another tensor into the range replaces it. */
    @Test
    void stagedWeightsComputeAsBoundOnesAndAreReplacedByTheNextStaging() {
        int len = 512;
        int rows = 300;
        GgufTensor a = randomTensor("a", GgmlType.Q4_K, len, rows);
        GgufTensor b = randomTensor("b", GgmlType.Q6_K, len, rows);
        GgufTensor gain = f32Tensor("gain", randomFloats(len, 1f), len);
        float[] x = randomFloats(3 * len, 1f);
        Activations in = fill(gpu, x, 3, len);
        assertTrue(gpu.stagedBytes(b) > gpu.stagedBytes(a), "Q6_K takes more room than Q4_K");
        try (StagingArea area = gpu.allocateStaging(gpu.stagedBytes(b) + gpu.stagedBytes(gain))) {
            for (GgufTensor t : List.of(a, b)) {
                gpu.beginStaging(area);
                Weight staged = gpu.stage(t, area, 0);
                Weight stagedGain = gpu.stage(gain, area, gpu.stagedBytes(t));
                Activations fromStaged = poisoned(3, rows);
                gpu.matmul(staged, in, fromStaged, 3);
                Activations fromBound = poisoned(3, rows);
                gpu.matmul(gpu.bind(t), in, fromBound, 3);
                assertArrayEquals(rows(gpu, fromBound, 3), rows(gpu, fromStaged, 3), 0f, t.name() + " staged");
                Activations normed = poisoned(3, len);
                gpu.rmsNorm(in, stagedGain, 1e-6f, normed, 3);
                Activations expected = poisoned(3, len);
                gpu.rmsNorm(in, gpu.bind(gain), 1e-6f, expected, 3);
                assertArrayEquals(rows(gpu, expected, 3), rows(gpu, normed, 3), 0f, "staged gains after " + t.name());
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> gpu.stage(b, area, gpu.stagedBytes(gain) + 256));
            assertTrue(e.getMessage().contains("does not fit the staging area"), e.getMessage());
        }
    }

    /**
     * Two areas taken in turn, each staging enqueued right behind products that read the other area's weights (the
     * copy overlaps them): every product still sees the weights it was enqueued with. Staging into an area not
     * begun since another was is refused.
     */
    @Test
    void twoAreasInTurnKeepEachProductsWeights() {
        int len = 2048;
        int rows = 4096;
        int n = 64;
        List<GgufTensor> tensors = List.of(randomTensor("w0", GgmlType.Q4_K, len, rows),
                randomTensor("w1", GgmlType.Q4_K, len, rows), randomTensor("w2", GgmlType.Q4_K, len, rows),
                randomTensor("w3", GgmlType.Q4_K, len, rows));
        Activations in = fill(gpu, randomFloats(n * len, 1f), n, len);
        long bytes = gpu.stagedBytes(tensors.get(0));
        try (StagingArea first = gpu.allocateStaging(bytes); StagingArea second = gpu.allocateStaging(bytes)) {
            List<Activations> outs = new ArrayList<>();
            for (int i = 0; i < tensors.size(); i++) {
                StagingArea area = i % 2 == 0 ? first : second;
                gpu.beginStaging(area);
                Activations out = poisoned(n, rows);
                gpu.matmul(gpu.stage(tensors.get(i), area, 0), in, out, n);
                outs.add(out);
            }
            for (int i = 0; i < tensors.size(); i++) {
                Activations expected = poisoned(n, rows);
                gpu.matmul(gpu.bind(tensors.get(i)), in, expected, n);
                assertArrayEquals(rows(gpu, expected, n), rows(gpu, outs.get(i), n), 0f, "product " + i);
            }
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> gpu.stage(tensors.get(0), first, 0));
            assertTrue(e.getMessage().contains("not begun"), e.getMessage());
        }
    }

    /** Expert stacks staged into one area run a large batch's experts as bound ones do, bit for bit. */
    @Test
    void stagedExpertStacksComputeAsBoundOnes() {
        int embd = 256;
        int ffn = 768;
        int experts = 8;
        int k = 4;
        int n = 40;   // grouped by expert on the device
        List<GgufTensor> stacks = List.of(randomTensor("gate", GgmlType.Q4_K, embd, ffn, experts),
                randomTensor("up", GgmlType.Q4_K, embd, ffn, experts), randomTensor("down", GgmlType.Q6_K, ffn, embd,
                        experts));
        float[] x = randomFloats(n * embd, 1f);
        float[] logits = randomFloats(n * experts, 2f);
        long bytes = stacks.stream().mapToLong(gpu::stagedBytes).sum();
        try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
             ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn);
             StagingArea area = gpu.allocateStaging(bytes)) {
            gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, routing);
            Weight[] staged = new Weight[3];
            long offset = 0;
            gpu.beginStaging(area);
            for (int i = 0; i < 3; i++) {
                staged[i] = gpu.stage(stacks.get(i), area, offset);
                offset += gpu.stagedBytes(stacks.get(i));
            }
            Activations in = fill(gpu, x, n, embd);
            Activations fromStaged = poisoned(n, embd);
            gpu.experts(staged[0], staged[1], staged[2], in, routing, buffers, fromStaged, n);
            Activations fromBound = poisoned(n, embd);
            gpu.experts(gpu.bind(stacks.get(0)), gpu.bind(stacks.get(1)), gpu.bind(stacks.get(2)), in, routing,
                    buffers, fromBound, n);
            assertArrayEquals(rows(gpu, fromBound, n), rows(gpu, fromStaged, n), 0f, "experts of staged stacks");
        }
    }

    /**
     * Matrices kept in blocks padded to 16-byte alignment (Q3_K 110 -> 112 bytes, -Dmoe4j.cuda.padQ3k; Q6_K 210 -> 224,
     * -Dmoe4j.cuda.padQ6k) give exactly the results of the file's layout through every kernel that reads the type: the
     * embedding rows, one to three matrices of one input (the rounded rows of a norm, and rows rounded in the products'
     * blocks), the experts (gate and up, down and combine; grouped by expert and on the tensor cores for 40 tokens),
     * and experts staged into an area.
     */
    @ParameterizedTest(name = "{0}, {1} tokens")
    @CsvSource({"Q3_K, 1", "Q3_K, 3", "Q3_K, 40", "Q6_K, 1", "Q6_K, 3", "Q6_K, 40"})
    void paddedBlocksGiveExactlyTheResultsOfTheFileLayout(GgmlType type, int n) {
        int embd = 512;
        int qRows = 1280;  // above MATVEC_MAX_ROWS_ANY_BATCH: the tensor cores for 40 tokens
        int ffn = 768;
        int experts = 8;
        int k = 2;
        int vocab = 37;
        GgufTensor emb = randomTensor("emb", type, embd, vocab);
        GgufTensor gain = f32Tensor("gain", randomFloats(embd, 1f), embd);
        GgufTensor wq = randomTensor("wq", type, embd, qRows);
        GgufTensor wk = randomTensor("wk", type, embd, 128);
        GgufTensor wv = randomTensor("wv", type, embd, 128);
        GgufTensor wo = randomTensor("wo", type, qRows, embd);
        List<GgufTensor> stacks = List.of(randomTensor("gate", type, embd, ffn, experts),
                randomTensor("up", type, embd, ffn, experts),
                randomTensor("down", type, ffn, embd, experts));
        int[] tokens = new int[n];
        for (int t = 0; t < n; t++) {
            tokens[t] = random.nextInt(vocab);
        }
        float[] addend = randomFloats(n * embd, 1f);
        float[] logits = randomFloats(n * experts, 2f);
        String[] what = {"embedding", "residual", "normed", "queries", "keys", "values", "output projection",
                "experts", "staged experts"};
        float[][][] results = new float[2][][];
        long[] staged = new long[2];
        boolean padded = gpu.pads(type);
        try {
            for (int mode = 0; mode < 2; mode++) {
                gpu.usePadding(type, mode == 1);
                Weight q = gpu.bind(wq);
                assertEquals(mode == 1, ((CudaWeight) q).padded(), type + " bound with padding " + (mode == 1));
                Weight[] bound = {gpu.bind(stacks.get(0)), gpu.bind(stacks.get(1)), gpu.bind(stacks.get(2))};
                staged[mode] = stacks.stream().mapToLong(gpu::stagedBytes).sum();
                try (ExpertRouting routing = gpu.allocateRouting(experts, k, n);
                     ExpertBuffers buffers = ExpertBuffers.allocate(gpu, n, k, embd, ffn);
                     StagingArea area = gpu.allocateStaging(staged[mode]);
                     Activations acc = poisoned(n, embd);
                     Activations x = fill(gpu, addend, n, embd);
                     Activations normed = gpu.allocate(n, embd);
                     Activations queries = poisoned(n, qRows);
                     Activations keys = poisoned(n, 128);
                     Activations values = poisoned(n, 128);
                     Activations projected = poisoned(n, embd);
                     Activations moe = poisoned(n, embd);
                     Activations moeStaged = poisoned(n, embd)) {
                    gpu.routeSoftmaxTopK(fill(gpu, logits, n, experts), n, routing);
                    gpu.embed(gpu.bind(emb), tokens, 0, n, acc);
                    float[] embedded = rows(gpu, acc, n);
                    Weight g = gpu.bind(gain);
                    gpu.addRmsNorm(acc, x, g, 1e-6f, normed, n);
                    gpu.matmul3(q, queries, gpu.bind(wk), keys, gpu.bind(wv), values, normed, n);
                    gpu.matmul(gpu.bind(wo), queries, projected, n);
                    gpu.addRmsNorm(acc, projected, g, 1e-6f, normed, n);
                    gpu.experts(bound[0], bound[1], bound[2], normed, routing, buffers, moe, n);
                    gpu.beginStaging(area);
                    Weight[] inArea = new Weight[3];
                    long offset = 0;
                    for (int i = 0; i < 3; i++) {
                        inArea[i] = gpu.stage(stacks.get(i), area, offset);
                        offset += gpu.stagedBytes(stacks.get(i));
                    }
                    gpu.experts(inArea[0], inArea[1], inArea[2], normed, routing, buffers, moeStaged, n);
                    results[mode] = new float[][] {embedded, rows(gpu, acc, n), rows(gpu, normed, n),
                            rows(gpu, queries, n), rows(gpu, keys, n), rows(gpu, values, n), rows(gpu, projected, n),
                            rows(gpu, moe, n), rows(gpu, moeStaged, n)};
                }
            }
        } finally {
            gpu.usePadding(type, padded);
        }
        long paddedBytes = stacks.stream()
                .mapToLong(t -> t.rowCount() * CudaBackend.paddedRowBytes(type, t.rowBytes())).sum();
        assertEquals(paddedBytes, staged[1], 256 * 3, "staged bytes of padded stacks");
        assertTrue(staged[1] > staged[0], "padding makes the stacks larger: " + staged[0] + " -> " + staged[1]);
        for (int i = 0; i < what.length; i++) {
            assertArrayEquals(results[0][i], results[1][i], 0f, what[i] + ", padded against the file's layout");
        }
        assertArrayEquals(results[0][7], results[0][8], 0f, "staged experts against bound ones");
    }

    // ------------------------------------------------------------ memory

    @Test
    void runningOutOfDeviceMemoryIsAClearError() {
        CudaOutOfMemoryException e = assertThrows(CudaOutOfMemoryException.class,
                () -> gpu.allocate(1 << 20, 1 << 19)); // 2 TiB
        assertTrue(e.getMessage().contains("out of memory") && e.getMessage().contains("in use by moe4j"),
                e.getMessage());
        e = assertThrows(CudaOutOfMemoryException.class, () -> gpu.requireFree(1L << 42, "the weights of x.gguf"));
        assertTrue(e.getMessage().startsWith("the weights of x.gguf need"), e.getMessage());
        // the backend still works afterwards
        Activations a = fill(gpu, new float[] {1, 2, 3}, 1, 3);
        assertArrayEquals(new float[] {1, 2, 3}, rows(gpu, a, 1), 0f);
    }

    @Test
    void closingBuffersReturnsTheirMemory() {
        long before = usedActivations();
        Activations a = gpu.allocate(1000, 1000);
        assertEquals(before + 4_000_000L, usedActivations());
        a.close();
        a.close();
        assertEquals(before, usedActivations());
    }

    private static long usedActivations() {
        return gpu.bytesUsed(DeviceMemory.Use.ACTIVATIONS);
    }

    @ParameterizedTest
    @EnumSource(value = KvCacheType.class, names = {"F16", "F32"})
    void kvCacheSizeIsAccounted(KvCacheType type) {
        try (KvCache c = gpu.allocateKvCache(3, 100, 2, 128, type)) {
            assertEquals(3L * 2 * 100 * 256 * (type == KvCacheType.F16 ? 2 : 4), c.byteSize());
        }
    }
}
