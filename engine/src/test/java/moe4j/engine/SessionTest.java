package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormats;

/** Session behaviour on random models (no llama.cpp reference needed). */
class SessionTest {

    @TempDir
    static Path dir;
    static Path moe;
    static Path dense;
    static int[] tokens;

    @BeforeAll
    static void models() {
        moe = TestModels.generate(dir, ModelShape.tiny(), TensorMix.Q8_0, 7);
        dense = TestModels.generate(dir, ModelShape.tinyDense(), TensorMix.F16, 7);
        Random r = new Random(3);
        tokens = new int[30];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = r.nextInt(ModelShape.tiny().vocab());
        }
    }

    private static float[][] allLogits(Path model, LoadOptions options, int[] toks) throws IOException {
        try (Model m = Model.load(model, options); Session s = m.newSession()) {
            return s.evaluateAll(toks);
        }
    }

    @Test
    void warmUpRunsStepsThenAPromptAndChangesNothingVisible() throws IOException {
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(2).withContextLength(32))) {
            float[] before;
            try (Session s = m.newSession()) {
                before = s.evaluate(Arrays.copyOf(tokens, 6));
            }
            assertEquals(11, m.warmUp(Duration.ZERO), "one step and a prompt batch of 10, even with no time left");
            assertEquals(32, m.warmUp(Duration.ofMinutes(10)), "steps up to the context it fits in");
            try (Session s = m.newSession()) {
                assertArrayEquals(before, s.evaluate(Arrays.copyOf(tokens, 6)), 0f);
            }
        }
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(1).withContextLength(1))) {
            assertEquals(1, m.warmUp(Duration.ZERO), "a context of one position: one step, no prompt");
        }
    }

    @Test
    void contextOverflowIsReportedBeforeAnyWork() throws IOException {
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(1).withContextLength(8));
             Session s = m.newSession()) {
            s.evaluate(Arrays.copyOf(tokens, 5));
            ContextOverflowException e = assertThrows(ContextOverflowException.class,
                    () -> s.evaluate(Arrays.copyOfRange(tokens, 5, 9)));
            assertEquals("prompt of 4 tokens + 5 cached exceeds the context of 8", e.getMessage());
            assertEquals(5, s.position(), "nothing was evaluated");
            float[] last = s.evaluate(Arrays.copyOfRange(tokens, 5, 8));
            assertEquals(8, s.position());
            try (Session fresh = m.newSession()) {
                assertArrayEquals(fresh.evaluate(Arrays.copyOf(tokens, 8)), last, 0f,
                        "filling the context in two calls equals one call");
            }
            assertThrows(ContextOverflowException.class, () -> s.evaluate(new int[] {1}));
        }
    }

    @Test
    void logitsDoNotDependOnThreadsOrBatchSize() throws IOException {
        LoadOptions base = LoadOptions.defaults().withContextLength(64);
        float[][] reference = allLogits(moe, base.withThreads(1), tokens);
        assertArrayEquals(reference, allLogits(moe, base.withThreads(2), tokens), "1 vs 2 threads");
        assertArrayEquals(reference, allLogits(moe, base.withThreads(2).withBatchSize(7), tokens),
                "batches of 7 vs one batch");
        assertArrayEquals(allLogits(dense, base.withThreads(1), tokens), allLogits(dense, base.withThreads(3), tokens),
                "dense model, 1 vs 3 threads");
    }

    /**
     * Q4_K and Q5_K matrices repacked in groups of 16 rows (the default) or multiplied as the file holds them: with
     * 512-bit vectors a prompt's products go through the same integer tiles either way, so its logits are the same
     * bits; with 256-bit vectors the file's layout takes the float path, whose sums round differently: a difference
     * that an activation's 8-bit rounding or an expert's choice can amplify downstream, so the two agree within the bar
     * the float models meet against llama.cpp ({@link LlamaCppReferenceTest}; measured: mean KL 4-6e-5, every
     * position's top token the same), not bit for bit.
     */
    @Test
    void repackedWeightsGiveAPromptTheLogitsOfTheFileLayout() throws IOException {
        for (TensorMix mix : List.of(TensorMix.Q4_K_M, TensorMix.Q5_K_M)) {
            Path file = TestModels.generate(dir, ModelShape.tiny(), mix, 7);
            LoadOptions base = LoadOptions.defaults().withThreads(2).withContextLength(64);
            float[][] fileLayout = allLogits(file, base.withRepack(false), tokens);
            float[][] repackedLogits = allLogits(file, base, tokens);
            if (QuantFormats.fusedKernels()) {
                assertArrayEquals(fileLayout, repackedLogits, mix.name());
            } else {
                LogitStats st = LogitStats.compare(fileLayout, repackedLogits);
                assertTrue(st.meanKl() <= 1e-3 && st.top1() >= 0.97, mix + ": " + st);
            }
            try (Model repacked = Model.load(file, base); Model plain = Model.load(file, base.withRepack(false))) {
                // where the JVM's vectors are narrower than 256 bits the kernels do not run, and nothing is repacked
                assertEquals(InterleavedRows.available(), repacked.repackedBytes() > 0, mix + " matrices repacked");
                assertEquals(0, plain.repackedBytes());
            }
        }
    }

    /**
     * The repacked copy must fit in physical memory (less 2 GiB) beside weights held in memory of their own; a mapped
     * file's pages can be dropped, so there the copy alone counts. Where it does not fit, nothing is repacked.
     */
    @Test
    void repackingIsSkippedWhereItsCopyWouldNotFitInMemory() {
        long gib = 1L << 30;
        assertTrue(Model.repackFits(0, 3 * gib, 8 * gib), "a mapped file: the copy alone");
        assertFalse(Model.repackFits(0, 7 * gib, 8 * gib), "a mapped file whose copy leaves less than 2 GiB");
        assertTrue(Model.repackFits(5 * gib, 3 * gib, 24 * gib), "weights in memory and their copy");
        assertFalse(Model.repackFits(17 * gib, 9 * gib, 24 * gib), "weights in memory and a copy past the memory");
        assertTrue(Model.repackFits(30 * gib, 0, 24 * gib), "nothing to repack");
    }

    @Test
    void aModelReadIntoMemoryGivesTheLogitsOfTheMappedOne() throws IOException {
        LoadOptions base = LoadOptions.defaults().withThreads(2).withContextLength(64);
        assertArrayEquals(allLogits(moe, base, tokens), allLogits(moe, base.withInMemory(true), tokens));
        try (Model m = Model.load(moe, base.withInMemory(true))) {
            assertFalse(m.file().mapped(), "read into memory");
        }
    }

    @Test
    void compactKvCachesStayCloseToF32() throws IOException {
        LoadOptions base = LoadOptions.defaults().withThreads(2).withContextLength(64);
        for (Path model : new Path[] {moe, dense}) {
            float[][] f32 = allLogits(model, base.withKvCacheType(KvCacheType.F32), tokens);
            for (KvCacheType type : new KvCacheType[] {KvCacheType.F16, KvCacheType.Q8_0}) {
                LogitStats st = LogitStats.compare(f32, allLogits(model, base.withKvCacheType(type), tokens));
                // matmuls round activations to 8 bits (as llama.cpp does), so a cache difference of one fp16 ulp
                // occasionally moves an activation across a rounding step: bars above pure cache rounding
                double bar = type == KvCacheType.F16 ? 5e-4 : 5e-3;
                assertTrue(st.meanKl() <= bar, model.getFileName() + " " + type + " vs F32: mean KL " + st.meanKl());
                assertTrue(st.top1() >= 0.9, model.getFileName() + " " + type + " vs F32: top-1 " + st.top1());
            }
        }
    }

    @Test
    void lastLogitsEqualTheLastRowOfAllLogits() throws IOException {
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(2).withBatchSize(8));
             Session a = m.newSession(); Session b = m.newSession()) {
            float[][] all = a.evaluateAll(tokens);
            float[] last = all[all.length - 1];
            float max = 0;
            for (float v : last) {
                max = Math.max(max, Math.abs(v));
            }
            // the same hidden state; the output layer takes the one-token kernel for one row and the tiled one for a
            // batch of rows, which sum in different orders: float32 rounding of a dot product apart
            assertArrayEquals(last, b.evaluate(tokens), 1e-5f * max);
            assertEquals(tokens.length, a.position());
        }
    }

    @Test
    void truncateAndResetReuseTheCache() throws IOException {
        int[] prefix = Arrays.copyOf(tokens, 6);
        int[] first = Arrays.copyOfRange(tokens, 6, 10);
        int[] second = Arrays.copyOfRange(tokens, 10, 14);
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(2).withContextLength(32));
             Session s = m.newSession(); Session fresh = m.newSession()) {
            float[] afterPrefix = s.evaluate(prefix);
            s.evaluate(first);
            s.truncate(prefix.length);
            float[] continued = s.evaluate(second);
            int[] prefixThenSecond = Arrays.copyOf(prefix, prefix.length + second.length);
            System.arraycopy(second, 0, prefixThenSecond, prefix.length, second.length);
            assertArrayEquals(fresh.evaluate(prefixThenSecond), continued, 0f, "truncate keeps the prefix");
            s.reset();
            assertEquals(0, s.position());
            assertArrayEquals(afterPrefix, s.evaluate(prefix), 0f, "reset starts over");
            assertThrows(IllegalArgumentException.class, () -> s.truncate(s.position() + 1));
        }
    }

    @Test
    void concurrentSessionsOfOneModelDoNotInterfere() throws Exception {
        LoadOptions options = LoadOptions.defaults().withContextLength(64);
        for (int threads : new int[] {1, 2}) {
            float[][] expected = new float[tokens.length][];
            try (Model m = Model.load(moe, options.withThreads(threads)); Session s = m.newSession()) {
                for (int t = 0; t < tokens.length; t++) {
                    expected[t] = s.evaluate(new int[] {tokens[t]});
                }
            }
            try (Model m = Model.load(moe, options.withThreads(threads));
                 java.util.concurrent.ExecutorService callers = java.util.concurrent.Executors.newFixedThreadPool(3)) {
                java.util.List<java.util.concurrent.Future<float[][]>> runs = new java.util.ArrayList<>();
                for (int i = 0; i < 3; i++) {
                    runs.add(callers.submit(() -> {
                        try (Session s = m.newSession()) {
                            float[][] out = new float[tokens.length][];
                            for (int t = 0; t < tokens.length; t++) {
                                out[t] = s.evaluate(new int[] {tokens[t]});
                            }
                            return out;
                        }
                    }));
                }
                for (var run : runs) {
                    assertArrayEquals(expected, run.get(), threads + " threads, concurrent sessions");
                }
            }
        }
    }

    @Test
    void rejectsBadTokensAndClosedSessions() throws IOException {
        try (Model m = Model.load(moe, LoadOptions.defaults().withThreads(1).withContextLength(16))) {
            Session s = m.newSession();
            int vocab = m.config().vocab();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> s.evaluate(new int[] {1, vocab}));
            assertTrue(e.getMessage().contains("token id " + vocab + " at index 1"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> s.evaluate(new int[0]));
            assertEquals(0, s.position());
            s.close();
            assertThrows(IllegalStateException.class, () -> s.evaluate(new int[] {1}));
        }
    }
}
