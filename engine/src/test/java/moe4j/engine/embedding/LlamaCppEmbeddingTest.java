package moe4j.engine.embedding;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.gguf.Fixtures;

/** moe4j's embeddings against llama.cpp's for the fixture embedding models (pooling last and mean). */
class LlamaCppEmbeddingTest {

    private static final List<String> MODELS = List.of("tiny-qwen3-embed-last-Q8_0", "tiny-qwen3-embed-mean-Q8_0");

    static Stream<Arguments> cases() {
        return MODELS.stream().flatMap(m -> Stream.of("p1", "p2").map(p -> Arguments.of(m, p)));
    }

    /** A reference file of an embedding model: int32 n_tokens, int32 dim, int32 tokens[n], float32 embedding[dim]. */
    record ReferenceEmbedding(int[] tokens, float[] embedding) {
        static ReferenceEmbedding read(Path file) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
            int n = b.getInt();
            int dim = b.getInt();
            if (n <= 0 || dim <= 0 || b.remaining() != 4L * n + 4L * dim) {
                throw new IOException(file + ": header says " + n + " tokens, dimension " + dim + " but "
                        + b.remaining() + " bytes follow (expected one pooled embedding)");
            }
            int[] tokens = new int[n];
            b.asIntBuffer().get(tokens);
            b.position(b.position() + 4 * n);
            float[] v = new float[dim];
            b.asFloatBuffer().get(v);
            return new ReferenceEmbedding(tokens, v);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("cases")
    void matchesLlamaCpp(String name, String prompt) throws IOException {
        Path modelFile = Fixtures.model(name + ".gguf");
        Path fixtures = Fixtures.fixturesDir();
        Path refFile = fixtures.resolve("reference").resolve(name + "." + prompt + ".bin");
        assumeTrue(Files.isRegularFile(refFile), "reference " + refFile + " not found: skipping");
        ReferenceEmbedding ref = ReferenceEmbedding.read(refFile);
        String text = Files.readString(fixtures.resolve("prompts").resolve(prompt + ".txt"), StandardCharsets.UTF_8);

        try (Model m = Model.load(modelFile, LoadOptions.defaults().withThreads(2));
             Embedder e = Embedder.create(m)) {
            assertEquals(name.contains("-last-") ? Pooling.LAST : Pooling.MEAN, e.pooling(), "declared pooling");
            assertArrayEquals(ref.tokens(), e.tokenize(text), "tokens");
            assertEquals(ref.embedding().length, e.dimension());
            float[] v = e.embed(text);
            double cosine = Embedder.cosineSimilarity(ref.embedding(), v);
            System.out.printf("%s %s: cosine %.7f vs llama.cpp%n", name, prompt, cosine);
            // Q8_0 weights: llama.cpp rounds activations to 8 bits before its dot products (fixtures README)
            assertTrue(cosine >= 0.999, name + " " + prompt + ": cosine " + cosine + " < 0.999");
        }
    }
}
