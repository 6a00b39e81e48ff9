package moe4j.engine.embedding;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.UnsupportedModelException;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufWriter;

/** {@link Embedder} on random models: pooling, normalization, prefixes, errors, concurrency. */
class EmbedderTest {

    private static final List<String> TEXTS = List.of("The quick brown fox jumps over the lazy dog.",
            "Hello! How are you?", "a", "12345 + 678 = ?", "<|im_start|>user\nhi<|im_end|>\n",
            "Mixture-of-experts models route each token to a few experts.");

    @TempDir
    static Path dir;
    static Path plain;
    static Model model;

    @BeforeAll
    static void load() throws IOException {
        plain = dir.resolve("dense.gguf");
        TestModelGenerator.write(ModelShape.tinyDense(), TensorMix.F32, 5, plain);
        model = Model.load(plain, LoadOptions.defaults().withThreads(2));
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** {@code source} with {@code {arch}.pooling_type} set, as embedding models declare it. */
    static Path withPoolingType(Path source, String name, int code) throws IOException {
        Path target = source.resolveSibling(name);
        try (GgufFile in = GgufFile.open(source)) {
            GgufWriter w = new GgufWriter().putAll(in.metadata());
            w.putUInt32(in.metadata().getString("general.architecture") + ".pooling_type", code);
            for (GgufTensor t : in.tensors()) {
                w.addTensor(t);
            }
            w.write(target);
        }
        return target;
    }

    private static double norm(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return Math.sqrt(s);
    }

    @Test
    void poolingsSelectOrAverageTheTokenStates() {
        EmbeddingOptions raw = EmbeddingOptions.defaults().withNormalize(false);
        try (Embedder none = Embedder.create(model, raw.withPooling(Pooling.NONE));
             Embedder mean = Embedder.create(model, raw.withPooling(Pooling.MEAN));
             Embedder cls = Embedder.create(model, raw.withPooling(Pooling.CLS));
             Embedder last = Embedder.create(model, raw.withPooling(Pooling.LAST))) {
            int[] tokens = none.tokenize(TEXTS.getFirst());
            float[][] rows = none.tokenEmbeddings(tokens);
            assertEquals(tokens.length, rows.length);
            float[] expectedMean = new float[none.dimension()];
            for (int i = 0; i < expectedMean.length; i++) {
                double s = 0;
                for (float[] row : rows) {
                    s += row[i];
                }
                expectedMean[i] = (float) (s / rows.length);
            }
            assertArrayEquals(expectedMean, mean.embedTokens(tokens), 1e-6f);
            assertArrayEquals(rows[0], cls.embedTokens(tokens), 0f);
            assertArrayEquals(rows[rows.length - 1], last.embedTokens(tokens), 0f);
            assertNotEquals(1.0, norm(rows[0]), 1e-3, "the raw states are not unit vectors, so normalizing is tested");
        }
    }

    @Test
    void embeddingsAreUnitVectorsByDefault() {
        try (Embedder e = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.MEAN));
             Embedder raw = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.MEAN)
                     .withNormalize(false))) {
            for (String text : TEXTS) {
                float[] v = e.embed(text);
                float[] r = raw.embed(text);
                assertEquals(model.config().embd(), v.length);
                assertEquals(1.0, norm(v), 1e-5, text);
                assertEquals(1.0, Embedder.cosineSimilarity(v, r), 1e-6, "normalizing keeps the direction");
            }
            for (float[] row : e.tokenEmbeddings(e.tokenize(TEXTS.get(1)))) {
                assertEquals(1.0, norm(row), 1e-5);
            }
        }
    }

    @Test
    void embedAllEqualsOneByOneAndLongTextsSpanSeveralBatches() throws IOException {
        List<float[]> expected = new ArrayList<>();
        try (Embedder e = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.MEAN))) {
            for (String t : TEXTS) {
                expected.add(e.embed(t));
            }
            List<float[]> all = e.embedAll(TEXTS);
            assertEquals(TEXTS.size(), all.size());
            for (int i = 0; i < TEXTS.size(); i++) {
                assertArrayEquals(expected.get(i), all.get(i), 0f, "text " + i);
            }
            assertEquals(List.of(), e.embedAll(List.of()));
        }
        try (Model small = Model.load(plain, LoadOptions.defaults().withThreads(2).withBatchSize(3));
             Embedder e = Embedder.create(small, EmbeddingOptions.defaults().withPooling(Pooling.MEAN));
             Embedder last = Embedder.create(small, EmbeddingOptions.defaults().withPooling(Pooling.LAST));
             Embedder whole = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.LAST))) {
            List<float[]> all = e.embedAll(TEXTS);
            for (int i = 0; i < TEXTS.size(); i++) {
                assertArrayEquals(expected.get(i), all.get(i), 1e-6f, "text " + i + " in batches of 3");
            }
            assertArrayEquals(whole.embed(TEXTS.getLast()), last.embed(TEXTS.getLast()), 0f);
        }
    }

    @Test
    void thePrefixIsPutBeforeTheText() {
        try (Embedder plainEmbedder = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.LAST));
             Embedder query = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.LAST)
                     .withInstruction("Find the answer"))) {
            assertEquals("Instruct: Find the answer\nQuery:", query.options().prefix());
            assertArrayEquals(plainEmbedder.tokenize("Instruct: Find the answer\nQuery:what is 2+2?"),
                    query.tokenize("what is 2+2?"));
            assertArrayEquals(plainEmbedder.embed("Instruct: Find the answer\nQuery:what is 2+2?"),
                    query.embed("what is 2+2?"), 0f);
        }
    }

    @Test
    void concurrentCallsGiveTheSequentialResults() throws Exception {
        try (Embedder e = Embedder.create(model, EmbeddingOptions.defaults().withPooling(Pooling.MEAN))) {
            List<float[]> expected = new ArrayList<>();
            for (String t : TEXTS) {
                expected.add(e.embed(t));
            }
            try (ExecutorService pool = Executors.newFixedThreadPool(4)) {
                List<Future<List<float[]>>> futures = new ArrayList<>();
                for (int job = 0; job < 8; job++) {
                    int shift = job;
                    futures.add(pool.submit(() -> {
                        List<float[]> got = new ArrayList<>();
                        for (int i = 0; i < TEXTS.size(); i++) {
                            got.add(e.embed(TEXTS.get((i + shift) % TEXTS.size())));
                        }
                        return got;
                    }));
                }
                for (int job = 0; job < futures.size(); job++) {
                    List<float[]> got = futures.get(job).get();
                    for (int i = 0; i < TEXTS.size(); i++) {
                        assertArrayEquals(expected.get((i + job) % TEXTS.size()), got.get(i), 0f,
                                "job " + job + " text " + i);
                    }
                }
            }
        }
    }

    @Test
    void thePoolingComesFromTheModel() throws IOException {
        assertEquals(Pooling.NONE, Pooling.declaredBy(model));
        try (Embedder e = Embedder.create(model)) {
            assertEquals(Pooling.NONE, e.pooling());
            IllegalStateException x = assertThrows(IllegalStateException.class, () -> e.embed("hi"));
            assertTrue(x.getMessage().contains("pooling is none"), x.getMessage());
            int[] tokens = e.tokenize("hi there");
            assertEquals(tokens.length, e.tokenEmbeddings(tokens).length);
        }
        for (Pooling p : List.of(Pooling.MEAN, Pooling.CLS, Pooling.LAST)) {
            Path file = withPoolingType(plain, "pooled-" + p.label() + ".gguf", p.code());
            try (Model m = Model.load(file, LoadOptions.defaults().withThreads(2));
                 Embedder declared = Embedder.create(m);
                 Embedder explicit = Embedder.create(model, EmbeddingOptions.defaults().withPooling(p))) {
                assertEquals(p, declared.pooling());
                assertArrayEquals(explicit.embed(TEXTS.get(3)), declared.embed(TEXTS.get(3)), 0f, p.label());
            }
        }
        Path reranker = withPoolingType(plain, "rank.gguf", 4);
        try (Model m = Model.load(reranker, LoadOptions.defaults().withThreads(1))) {
            UnsupportedModelException x = assertThrows(UnsupportedModelException.class, () -> Embedder.create(m));
            assertTrue(x.getMessage().startsWith("qwen3.pooling_type = 4: rerankers"), x.getMessage());
            try (Embedder overridden = Embedder.create(m, EmbeddingOptions.defaults().withPooling(Pooling.LAST))) {
                assertEquals(Pooling.LAST, overridden.pooling());
            }
        }
    }

    @Test
    void badInputIsRejectedBeforeAnyWork() throws IOException {
        try (Model m = Model.load(plain, LoadOptions.defaults().withThreads(1).withContextLength(8));
             Embedder e = Embedder.create(m, EmbeddingOptions.defaults().withPooling(Pooling.LAST))) {
            IllegalArgumentException empty = assertThrows(IllegalArgumentException.class, () -> e.embed(""));
            assertEquals("nothing to embed: the text gives no tokens", empty.getMessage());
            IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                    () -> e.embedAll(List.of("ok", TEXTS.getFirst())));
            assertTrue(tooLong.getMessage().startsWith("text 1: " + e.tokenize(TEXTS.getFirst()).length
                    + " tokens exceed the context length of 8"), tooLong.getMessage());
            assertEquals(8, e.tokenEmbeddings(new int[8]).length, "a text filling the context fits");
            e.close();
            assertThrows(IllegalStateException.class, () -> e.embed("ok"));
        }
        assertThrows(NullPointerException.class, () -> new EmbeddingOptions(Optional.empty(), true, null));
    }
}
