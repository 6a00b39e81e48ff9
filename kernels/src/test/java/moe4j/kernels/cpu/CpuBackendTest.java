package moe4j.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.ExpertBuffers;
import moe4j.kernels.ExpertRouting;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.Rope;
import moe4j.kernels.Weight;
import moe4j.kernels.quant.ActivationRounding;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

class CpuBackendTest {

    private final Random random = new Random(42);
    private final CpuBackend cpu = new CpuBackend(3);

    @AfterEach
    void close() {
        cpu.close();
    }

    // ------------------------------------------------------------ helpers

    private float[] randomFloats(int n, float scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) random.nextGaussian() * scale;
        }
        return v;
    }

    /** A tensor of {@code type} holding {@code values} (quantized where needed), in ggml dimension order. */
    static GgufTensor tensor(String name, GgmlType type, float[] values, long... dims) {
        long[] shape = {1, 1, 1, 1};
        System.arraycopy(dims, 0, shape, 0, dims.length);
        MemorySegment data = Arena.ofAuto().allocate(type.bytesFor(values.length), 64);
        if (type == GgmlType.F32) {
            MemorySegment.copy(values, 0, data, ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0,
                    values.length);
        } else {
            QuantFormats.of(type).quantize(values, 0, values.length, data, 0);
        }
        return new GgufTensor(name, type, shape, dims.length, Path.of("test.gguf"), 0, data);
    }

    /** The values a tensor really holds after quantization. */
    static float[] decoded(GgufTensor t) {
        float[] out = new float[(int) t.elementCount()];
        QuantFormat f = QuantFormats.of(t.type());
        f.dequantize(t.data(), 0, out, 0, out.length);
        return out;
    }

    private Activations fill(CpuBackend b, float[] values, int rows, int width) {
        Activations a = b.allocate(rows, width);
        for (int r = 0; r < rows; r++) {
            b.write(values, r * width, a, r);
        }
        return a;
    }

    private static float[] rows(CpuBackend b, Activations a, int n) {
        float[] out = new float[n * a.width()];
        for (int r = 0; r < n; r++) {
            b.read(a, r, out, r * a.width());
        }
        return out;
    }

    private static void assertClose(double expected, float actual, double relTol, String what) {
        assertTrue(Math.abs(expected - actual) <= relTol * (1 + Math.abs(expected)),
                what + ": expected " + expected + ", got " + actual);
    }

    // ------------------------------------------------------------ matmul

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K", "Q3_K"})
    void matmulMatchesADoublePrecisionProductWithActivationsRoundedAsLlamaCppRoundsThem(GgmlType type) {
        int len = 256;
        int rows = 37; // not a multiple of the tile size
        int n = 5;
        GgufTensor t = tensor("w", type, randomFloats(len * rows, 0.5f), len, rows);
        float[] w = decoded(t);
        float[] x = randomFloats(n * len, 1f);
        Activations out = cpu.allocate(n, rows);
        cpu.matmul(cpu.bind(t), fill(cpu, x, n, len), out, n);
        float[] y = rows(cpu, out, n);
        float[] rounded = new float[x.length];
        ActivationRounding.forWeights(type).round(x, 0, rounded, 0, x.length);
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < rows; r++) {
                double ref = 0;
                for (int j = 0; j < len; j++) {
                    ref += (double) w[r * len + j] * rounded[i * len + j];
                }
                assertClose(ref, y[i * rows + r], 1e-5, type + " row " + r + " token " + i);
            }
        }
    }

    @Test
    void batchedMatmulEqualsOneTokenAtATimeBitForBit() {
        assertBatchEqualsOneTokenAtATime(GgmlType.Q8_0, 96, 50, 7);
    }

    /**
     * Q4_K matrices are repacked in groups of 16 rows when bound (Q5_K's below too); their one-token kernel then computes what the batch
     * tiles compute, so a token decoded alone gets the bits it gets in a prompt (three groups: a unit of 32 rows and a
     * last one of 16).
     */
    @Test
    void repackedQ4KBatchesEqualOneTokenAtATimeBitForBit() {
        assertBatchEqualsOneTokenAtATime(GgmlType.Q4_K, 512, 48, 8);
    }

    /** The same for Q5_K, repacked as Q4_K with its fifth bits. */
    @Test
    void repackedQ5KBatchesEqualOneTokenAtATimeBitForBit() {
        assertBatchEqualsOneTokenAtATime(GgmlType.Q5_K, 512, 48, 8);
    }

    /** The same for Q6_K, and for Q3_K (repacked with 256-bit vectors only), whose batches share one tile. */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q3_K", "Q6_K"})
    void repackedQ6KAndQ3KBatchesEqualOneTokenAtATimeBitForBit(GgmlType type) {
        // not repacked, Q3_K's row kernel sums in another order than its tiles
        assumeTrue(InterleavedRows.fitsShape(type, 48, 512), type + " is not repacked with this machine's vectors");
        assertBatchEqualsOneTokenAtATime(type, 512, 48, 7);
    }

    /**
     * What a repacking backend holds for a matrix: its repacked copy where this machine repacks the type (Q2_K and Q3_K
     * with 256-bit vectors only), else the file's bytes.
     */
    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})
    void heldBytesAreTheRepackedCopyExactlyWhereTheTypeIsRepacked(GgmlType type) {
        long[] dims = {2048, 768, 128};
        long fileBytes = type.bytesFor(2048) * 768 * 128;
        long expected = InterleavedRows.fitsShape(type, 768, 2048)
                ? InterleavedRows.bytes(type, 768, 2048) * 128 : fileBytes;
        assertEquals(expected, CpuBackend.heldBytes(type, dims, fileBytes));
        boolean only256 = type == GgmlType.Q2_K || type == GgmlType.Q3_K;
        assertEquals(!only256 || QuantFormats.vectorBits() == 256,
                InterleavedRows.fitsShape(type, 768, 2048), type + " repacked with " + QuantFormats.vectorBits() + "-bit vectors");
    }

    private void assertBatchEqualsOneTokenAtATime(GgmlType type, int len, int rows, int n) {
        Weight w = cpu.bind(tensor("w", type, randomFloats(len * rows, 1f), len, rows));
        float[] x = randomFloats(n * len, 1f);
        Activations batchOut = cpu.allocate(n, rows);
        cpu.matmul(w, fill(cpu, x, n, len), batchOut, n);
        float[] batched = rows(cpu, batchOut, n);
        for (int i = 0; i < n; i++) {
            Activations one = cpu.allocate(1, rows);
            cpu.matmul(w, fill(cpu, Arrays.copyOfRange(x, i * len, (i + 1) * len), 1, len), one, 1);
            assertArrayEquals(Arrays.copyOfRange(batched, i * rows, (i + 1) * rows), rows(cpu, one, 1), 0f,
                    type + " token " + i);
        }
    }

    @Test
    void rowsCrossToAndFromTheHostWhole() {
        int width = 9;
        float[] a = randomFloats(6 * width, 1f);
        Activations dst = cpu.allocate(8, width);
        cpu.writeRows(a, width, dst, 2, 5);
        float[] back = new float[1 + 5 * width];
        cpu.readRows(dst, 2, 5, back, 1);
        assertArrayEquals(Arrays.copyOfRange(a, width, 6 * width), Arrays.copyOfRange(back, 1, back.length), 0f);
        float[] row1 = new float[width];
        cpu.read(dst, 1, row1, 0);
        assertArrayEquals(new float[width], row1, 0f, "row 1 untouched");
        assertThrows(IndexOutOfBoundsException.class, () -> cpu.readRows(dst, 4, 5, back, 0));
    }

    @Test
    void matmulRejectsMismatchedShapes() {
        Weight w = cpu.bind(tensor("blk.0.attn_q.weight", GgmlType.F32, randomFloats(32 * 8, 1f), 32, 8));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> cpu.matmul(w, cpu.allocate(2, 16), cpu.allocate(2, 8), 2));
        assertTrue(e.getMessage().contains("blk.0.attn_q.weight"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> cpu.matmul(w, cpu.allocate(2, 32), cpu.allocate(2, 8), 3));
    }

    // ------------------------------------------------------------ element-wise

    @Test
    void rmsNormOverRowsAndOverHeads() {
        int width = 64;
        int n = 3;
        float[] x = randomFloats(n * width, 2f);
        float eps = 1e-6f;
        for (int group : new int[] {64, 16}) {
            float[] gain = randomFloats(group, 1f);
            Weight g = cpu.bind(tensor("norm", GgmlType.F32, gain, group));
            Activations in = fill(cpu, x, n, width);
            Activations out = cpu.allocate(n, width);
            cpu.rmsNorm(in, g, eps, out, n);
            float[] y = rows(cpu, out, n);
            for (int off = 0; off < n * width; off += group) {
                double ss = 0;
                for (int j = 0; j < group; j++) {
                    ss += (double) x[off + j] * x[off + j];
                }
                double s = 1 / Math.sqrt(ss / group + eps);
                for (int j = 0; j < group; j++) {
                    assertClose(x[off + j] * s * gain[j], y[off + j], 1e-5, "group " + group + " at " + (off + j));
                }
            }
        }
    }

    @Test
    void siluMulAndAdd() {
        int n = 2;
        int width = 20;
        float[] g = randomFloats(n * width, 3f);
        float[] u = randomFloats(n * width, 1f);
        Activations ga = fill(cpu, g, n, width);
        Activations ua = fill(cpu, u, n, width);
        cpu.siluMul(ga, ua, n);
        float[] y = rows(cpu, ga, n);
        for (int i = 0; i < y.length; i++) {
            assertClose(g[i] / (1 + Math.exp(-g[i])) * u[i], y[i], 1e-6, "silu*up " + i);
        }
        cpu.add(ga, ua, n);
        float[] z = rows(cpu, ga, n);
        for (int i = 0; i < z.length; i++) {
            assertEquals(y[i] + u[i], z[i], 0f);
        }
    }

    @Test
    void embedDecodesRowsAndRejectsUnknownTokens() {
        int embd = 32;
        GgufTensor t = tensor("token_embd.weight", GgmlType.Q8_0, randomFloats(embd * 10, 1f), embd, 10);
        float[] table = decoded(t);
        Weight w = cpu.bind(t);
        Activations out = cpu.allocate(3, embd);
        cpu.embed(w, new int[] {0, 9, 4, 2}, 1, 3, out);
        float[] y = rows(cpu, out, 3);
        assertArrayEquals(Arrays.copyOfRange(table, 9 * embd, 10 * embd), Arrays.copyOfRange(y, 0, embd));
        assertArrayEquals(Arrays.copyOfRange(table, 2 * embd, 3 * embd), Arrays.copyOfRange(y, 2 * embd, 3 * embd));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> cpu.embed(w, new int[] {3, 10}, 0, 2, out));
        assertTrue(e.getMessage().contains("token id 10"), e.getMessage());
    }

    @Test
    void ropeAtPositionZeroIsTheIdentityAndRotatesNeoxPairs() {
        int heads = 2;
        int hd = 8;
        float[] x = randomFloats(2 * heads * hd, 1f);
        Activations a = fill(cpu, x, 2, heads * hd);
        Rope rope = Rope.plain(hd, Rope.Style.NEOX, 10000f);
        cpu.rope(a, heads, rope, 0, 2);
        float[] y = rows(cpu, a, 2);
        assertArrayEquals(Arrays.copyOfRange(x, 0, heads * hd), Arrays.copyOfRange(y, 0, heads * hd), 0f);
        // row 1 is at position 1: pair j = (j, j + 4) rotated by 10000^(-2j/8)
        for (int h = 0; h < heads; h++) {
            for (int j = 0; j < hd / 2; j++) {
                double theta = Math.pow(10000, -2.0 * j / hd);
                int i0 = heads * hd + h * hd + j;
                int i1 = i0 + hd / 2;
                assertClose(x[i0] * Math.cos(theta) - x[i1] * Math.sin(theta), y[i0], 1e-5, "x0 pair " + j);
                assertClose(x[i0] * Math.sin(theta) + x[i1] * Math.cos(theta), y[i1], 1e-5, "x1 pair " + j);
            }
        }
    }

    // ------------------------------------------------------------ attention

    /** Causal GQA attention in double over f32 keys and values. */
    private static double[] naiveAttention(float[] q, float[] k, float[] v, AttentionShape s, int t, int pos) {
        int hd = s.headDim();
        double[] out = new double[s.qDim()];
        for (int h = 0; h < s.heads(); h++) {
            int kvh = h / (s.heads() / s.kvHeads());
            double[] sc = new double[pos + 1];
            double max = Double.NEGATIVE_INFINITY;
            for (int p = 0; p <= pos; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++) {
                    d += (double) q[t * s.qDim() + h * hd + i] * k[p * s.kvDim() + kvh * hd + i];
                }
                sc[p] = d * s.scale();
                max = Math.max(max, sc[p]);
            }
            double sum = 0;
            for (int p = 0; p <= pos; p++) {
                sc[p] = Math.exp(sc[p] - max);
                sum += sc[p];
            }
            for (int p = 0; p <= pos; p++) {
                for (int i = 0; i < hd; i++) {
                    out[h * hd + i] += sc[p] / sum * v[p * s.kvDim() + kvh * hd + i];
                }
            }
        }
        return out;
    }

    private float[] runAttention(CpuBackend b, KvCacheType type, AttentionShape s, float[] q, float[] k, float[] v,
                                 int first, int total) {
        try (KvCache cache = b.allocateKvCache(2, 16, s.kvHeads(), s.headDim(), type)) {
            float[] out = new float[total * s.qDim()];
            // two steps: positions [0, first) then [first, total), the second attending to the first
            int[][] steps = {{0, first}, {first, total}};
            for (int[] st : steps) {
                int n = st[1] - st[0];
                Activations qa = fill(b, Arrays.copyOfRange(q, st[0] * s.qDim(), st[1] * s.qDim()), n, s.qDim());
                Activations ka = fill(b, Arrays.copyOfRange(k, st[0] * s.kvDim(), st[1] * s.kvDim()), n, s.kvDim());
                Activations va = fill(b, Arrays.copyOfRange(v, st[0] * s.kvDim(), st[1] * s.kvDim()), n, s.kvDim());
                Activations o = b.allocate(n, s.qDim());
                b.storeKv(cache, 1, ka, va, st[0], n);
                b.attention(qa, cache, 1, s, st[0], n, o);
                System.arraycopy(rows(b, o, n), 0, out, st[0] * s.qDim(), n * s.qDim());
            }
            return out;
        }
    }

    @Test
    void attentionMatchesNaiveCausalGroupedQueryAttention() {
        AttentionShape s = new AttentionShape(4, 2, 32, (float) (1 / Math.sqrt(32)));
        int total = 6;
        float[] q = randomFloats(total * s.qDim(), 1f);
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        float[] out = runAttention(cpu, KvCacheType.F32, s, q, k, v, 4, total);
        for (int t = 0; t < total; t++) {
            double[] ref = naiveAttention(q, k, v, s, t, t);
            for (int i = 0; i < s.qDim(); i++) {
                assertClose(ref[i], out[t * s.qDim() + i], 1e-5, "token " + t + " value " + i);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = KvCacheType.class, names = {"F16", "Q8_0"})
    void compactCachesStayCloseToF32(KvCacheType type) {
        AttentionShape s = new AttentionShape(4, 1, 64, 0.125f);
        int total = 5;
        float[] q = randomFloats(total * s.qDim(), 1f);
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        float[] exact = runAttention(cpu, KvCacheType.F32, s, q, k, v, 2, total);
        float[] compact = runAttention(cpu, type, s, q, k, v, 2, total);
        double tol = type == KvCacheType.F16 ? 2e-3 : 3e-2;
        for (int i = 0; i < exact.length; i++) {
            assertClose(exact[i], compact[i], tol, type + " value " + i);
        }
    }

    @Test
    void attentionRejectsPositionsOutsideTheCache() {
        AttentionShape s = new AttentionShape(2, 1, 32, 0.1f);
        try (KvCache cache = cpu.allocateKvCache(1, 4, s.kvHeads(), s.headDim(), KvCacheType.F16)) {
            Activations k = cpu.allocate(2, s.kvDim());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.storeKv(cache, 0, k, k, 3, 2));
            assertTrue(e.getMessage().contains("outside the KV cache of 4"), e.getMessage());
        }
    }

    @Test
    void kvCacheShapesThatAttentionCannotUseAreRefusedWithTheReason() {
        IllegalArgumentException q8 = assertThrows(IllegalArgumentException.class,
                () -> cpu.allocateKvCache(1, 4, 2, 48, KvCacheType.Q8_0));
        assertEquals("a q8_0 KV cache needs a head size that is a multiple of 32, got 48", q8.getMessage());
        // the same 128 values per position, split into other heads than the attention's
        AttentionShape s = new AttentionShape(4, 2, 64, 0.1f);
        try (KvCache cache = cpu.allocateKvCache(1, 4, 4, 32, KvCacheType.F16)) {
            Activations q = cpu.allocate(1, s.qDim());
            Activations o = cpu.allocate(1, s.qDim());
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.attention(q, cache, 0, s, 0, 1, o));
            assertEquals("KV cache holds 4 heads of 32 values, attention expects 2 of 64", e.getMessage());
        }
    }

    // ------------------------------------------------------------ mixture of experts

    @Test
    void routingPicksTheMostProbableExpertsAndRenormalizes() {
        float[] logits = {0.1f, 2.0f, -1f, 1.5f, 2.0f, 0.3f};
        Activations l = fill(cpu, logits, 1, 6);
        ExpertRouting r = new ExpertRouting(6, 3, 1);
        cpu.routeSoftmaxTopK(l, 1, r);
        assertArrayEquals(new int[] {1, 4, 3}, Arrays.copyOf(r.expert(), 3), "descending, ties by lower index");
        double e1 = Math.exp(2.0);
        double e3 = Math.exp(1.5);
        double sum = 2 * e1 + e3;
        assertClose(e1 / sum, r.weight()[0], 1e-6, "weight of expert 1");
        assertClose(e1 / sum, r.weight()[1], 1e-6, "weight of expert 4");
        assertClose(e3 / sum, r.weight()[2], 1e-6, "weight of expert 3");
    }

    @Test
    void routingClampsATinyWeightSum() {
        int experts = 40_000; // uniform: each probability 2.5e-5, below the 2^-14 clamp
        Activations l = cpu.allocate(1, experts);
        ExpertRouting r = new ExpertRouting(experts, 1, 1);
        cpu.routeSoftmaxTopK(l, 1, r);
        assertEquals(0, r.expert()[0]);
        assertClose((1.0 / experts) / 6.103515625e-5, r.weight()[0], 1e-4, "clamped weight");
    }

    @Test
    void expertsMatchANaivePerTokenComputation() {
        int[][] choice = {{2, 0}, {2, 3}, {0, 2}, {3, 2}, {2, 0}}; // expert 1 unused, expert 2 used by every token
        expertsMatchANaiveComputation(GgmlType.F32, GgmlType.F32, GgmlType.Q8_0, 32, 64, choice);
    }

    /** Decoding: one token, whose chosen experts share one prepared input row; gate and up round it differently. */
    @Test
    void oneTokenExpertsWithKQuantsMatchANaiveComputation() {
        expertsMatchANaiveComputation(GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_K, 512, 256, new int[][] {{3, 1}});
        expertsMatchANaiveComputation(GgmlType.Q3_K, GgmlType.Q5_K, GgmlType.Q3_K, 256, 512, new int[][] {{0, 2}});
    }

    private void expertsMatchANaiveComputation(GgmlType gateType, GgmlType upType, GgmlType downType, int embd, int ffn,
            int[][] choice) {
        int experts = 4;
        int k = 2;
        int n = choice.length;
        GgufTensor gate = tensor("gate", gateType, randomFloats(embd * ffn * experts, 0.3f), embd, ffn, experts);
        GgufTensor up = tensor("up", upType, randomFloats(embd * ffn * experts, 0.3f), embd, ffn, experts);
        GgufTensor down = tensor("down", downType, randomFloats(ffn * embd * experts, 0.3f), ffn, embd, experts);
        float[] gw = decoded(gate);
        float[] uw = decoded(up);
        float[] dw = decoded(down);
        float[] x = randomFloats(n * embd, 1f);
        // each product's input is rounded as llama.cpp rounds it for that product's weights
        float[] xg = new float[x.length];
        float[] xu = new float[x.length];
        ActivationRounding.forWeights(gateType).round(x, 0, xg, 0, x.length);
        ActivationRounding.forWeights(upType).round(x, 0, xu, 0, x.length);
        ExpertRouting routing = new ExpertRouting(experts, k, n);
        for (int t = 0; t < n; t++) {
            for (int s = 0; s < k; s++) {
                routing.expert()[t * k + s] = choice[t][s];
                routing.weight()[t * k + s] = s == 0 ? 0.7f : 0.3f;
            }
        }
        Activations out = cpu.allocate(n, embd);
        cpu.experts(cpu.bind(gate), cpu.bind(up), cpu.bind(down), fill(cpu, x, n, embd), routing,
                ExpertBuffers.allocate(cpu, n, k, embd, ffn), out, n);
        float[] y = rows(cpu, out, n);
        for (int t = 0; t < n; t++) {
            double[] ref = new double[embd];
            double[] magnitude = new double[embd];
            for (int s = 0; s < k; s++) {
                int e = choice[t][s];
                double[] z = new double[ffn];
                for (int r = 0; r < ffn; r++) {
                    double g = 0;
                    double u = 0;
                    for (int j = 0; j < embd; j++) {
                        g += (double) gw[(e * ffn + r) * embd + j] * xg[t * embd + j];
                        u += (double) uw[(e * ffn + r) * embd + j] * xu[t * embd + j];
                    }
                    z[r] = g / (1 + Math.exp(-g)) * u;
                }
                float[] zr = new float[ffn];
                for (int j = 0; j < ffn; j++) {
                    zr[j] = (float) z[j];
                }
                ActivationRounding.forWeights(downType).round(zr, 0, zr, 0, ffn);
                for (int r = 0; r < embd; r++) {
                    double d = 0;
                    double m = 0;
                    for (int j = 0; j < ffn; j++) {
                        d += dw[(e * embd + r) * ffn + j] * zr[j];
                        m += Math.abs(dw[(e * embd + r) * ffn + j] * zr[j]);
                    }
                    ref[r] += d * routing.weight()[t * k + s];
                    magnitude[r] += m * routing.weight()[t * k + s];
                }
            }
            for (int r = 0; r < embd; r++) {
                // float32 sums, and the down input rounded from float32 gate and up values (a last-bit difference can
                // move a value to the next 8-bit step): bounded by the products' magnitude
                assertTrue(Math.abs(ref[r] - y[t * embd + r]) <= 1e-3 * (1 + Math.abs(ref[r])) + 1e-2 * magnitude[r] / ffn,
                        gateType + "/" + upType + "/" + downType + " token " + t + " output " + r + ": expected "
                                + ref[r] + ", got " + y[t * embd + r]);
            }
        }
    }

    // ------------------------------------------------------------ determinism

    @Test
    void resultsDoNotDependOnTheThreadCount() {
        AttentionShape s = new AttentionShape(4, 2, 32, 0.17f);
        int total = 7;
        float[] q = randomFloats(total * s.qDim(), 1f);
        float[] k = randomFloats(total * s.kvDim(), 1f);
        float[] v = randomFloats(total * s.kvDim(), 1f);
        GgufTensor w = tensor("w", GgmlType.Q8_0, randomFloats(96 * 61, 1f), 96, 61);
        float[] x = randomFloats(total * 96, 1f);
        float[][] results = new float[2][];
        float[][] attn = new float[2][];
        int i = 0;
        for (int threads : new int[] {1, 4}) {
            try (CpuBackend b = new CpuBackend(threads)) {
                Activations out = b.allocate(total, 61);
                b.matmul(b.bind(w), fill(b, x, total, 96), out, total);
                results[i] = rows(b, out, total);
                attn[i] = runAttention(b, KvCacheType.F16, s, q, k, v, 3, total);
            }
            i++;
        }
        assertArrayEquals(results[0], results[1], 0f, "matmul, 1 vs 4 threads");
        assertArrayEquals(attn[0], attn[1], 0f, "attention, 1 vs 4 threads");
    }
}
