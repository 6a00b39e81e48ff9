package moe4j.langchain4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.langchain4j.data.embedding.Embedding;
import dev.langchain4j.data.segment.TextSegment;
import dev.langchain4j.model.embedding.EmbeddingModel;
import dev.langchain4j.model.embedding.request.EmbeddingRequest;
import dev.langchain4j.model.embedding.response.EmbeddingResponse;
import dev.langchain4j.model.output.Response;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.embedding.Embedder;
import moe4j.engine.embedding.Pooling;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.Fixtures;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufWriter;

/** {@link Moe4jEmbeddingModel} driven through LangChain4j's {@link EmbeddingModel} interface. */
class Moe4jEmbeddingModelTest {

    private static final List<String> TEXTS = List.of("The quick brown fox jumps over the lazy dog.",
            "Hello! How are you?", "Mixture-of-experts models route each token to a few experts.");

    @TempDir
    static Path dir;
    static Model model;
    static Embedder embedder;

    /** A random dense model that declares last-token pooling, as Qwen3-Embedding files do. */
    @BeforeAll
    static void load() throws IOException {
        Path generated = dir.resolve("dense.gguf");
        TestModelGenerator.write(ModelShape.tinyDense(), TensorMix.Q8_0, 3, generated);
        Path pooled = dir.resolve("dense-last.gguf");
        try (GgufFile in = GgufFile.open(generated)) {
            GgufWriter w = new GgufWriter().putAll(in.metadata()).putUInt32("qwen3.pooling_type", Pooling.LAST.code());
            for (GgufTensor t : in.tensors()) {
                w.addTensor(t);
            }
            w.write(pooled);
        }
        model = Model.load(pooled, LoadOptions.defaults().withThreads(2));
        embedder = Embedder.create(model);
    }

    @AfterAll
    static void close() {
        embedder.close();
        model.close();
    }

    @Test
    void embedsThroughTheLangChain4jInterface() {
        EmbeddingModel em = new Moe4jEmbeddingModel(embedder);
        assertEquals(Pooling.LAST, embedder.pooling(), "the pooling the file declares");
        assertEquals(256, em.dimension());
        Response<Embedding> one = em.embed(TEXTS.getFirst());
        assertArrayEquals(embedder.embed(TEXTS.getFirst()), one.content().vector(), 0f);
        assertEquals(embedder.tokenize(TEXTS.getFirst()).length, one.tokenUsage().inputTokenCount());
        assertArrayEquals(one.content().vector(), em.embed(TextSegment.from(TEXTS.getFirst())).content().vector(), 0f);

        Response<List<Embedding>> all = em.embedAll(TEXTS.stream().map(TextSegment::from).toList());
        assertEquals(TEXTS.size(), all.content().size());
        int tokens = 0;
        for (int i = 0; i < TEXTS.size(); i++) {
            assertArrayEquals(embedder.embed(TEXTS.get(i)), all.content().get(i).vector(), 0f, "segment " + i);
            assertEquals(1.0, norm(all.content().get(i).vector()), 1e-5);
            tokens += embedder.tokenize(TEXTS.get(i)).length;
        }
        assertEquals(tokens, all.tokenUsage().inputTokenCount());

        EmbeddingResponse viaRequest = em.embed(EmbeddingRequest.builder()
                .textSegments(List.of(TextSegment.from(TEXTS.get(1)))).build());
        assertArrayEquals(embedder.embed(TEXTS.get(1)), viaRequest.embeddings().getFirst().vector(), 0f);
    }

    @Test
    void errorsReachTheCaller() {
        EmbeddingModel em = new Moe4jEmbeddingModel(embedder);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> em.embedAll(List.of(TextSegment.from("fine"), TextSegment.from("x".repeat(5000)))));
        assertTrue(e.getMessage().startsWith("text 1: "), e.getMessage());
    }

    @Test
    void matchesLlamaCppOnTheFixtureEmbeddingModels() throws IOException {
        for (String name : List.of("tiny-qwen3-embed-last-Q8_0", "tiny-qwen3-embed-mean-Q8_0")) {
            Path file = Fixtures.model(name + ".gguf");
            Path fixtures = Fixtures.fixturesDir();
            ByteBuffer ref = ByteBuffer.wrap(Files.readAllBytes(fixtures.resolve("reference/" + name + ".p1.bin")))
                    .order(ByteOrder.LITTLE_ENDIAN);
            int n = ref.getInt();
            float[] expected = new float[ref.getInt()];
            ref.position(8 + 4 * n);
            ref.asFloatBuffer().get(expected);
            String text = Files.readString(fixtures.resolve("prompts/p1.txt"), StandardCharsets.UTF_8);
            try (Model m = Model.load(file, LoadOptions.defaults().withThreads(2)); Embedder e = Embedder.create(m)) {
                EmbeddingModel em = new Moe4jEmbeddingModel(e);
                Response<Embedding> got = em.embed(text);
                assertEquals(n, got.tokenUsage().inputTokenCount());
                double cosine = Embedder.cosineSimilarity(expected, got.content().vector());
                assertTrue(cosine >= 0.999, name + ": cosine " + cosine);
            }
        }
    }

    private static double norm(float[] v) {
        double s = 0;
        for (float x : v) {
            s += (double) x * x;
        }
        return Math.sqrt(s);
    }
}
