package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.embedding.Embedder;
import moe4j.engine.embedding.EmbeddingOptions;
import moe4j.engine.embedding.Pooling;
import moe4j.gguf.Fixtures;

class EmbedCommandTest {

    private static final String TEXT = "The quick brown fox jumps over the lazy dog.";

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    private static Embedder embedder(Model m, Pooling pooling) {
        return Embedder.create(m, EmbeddingOptions.defaults().withPooling(pooling));
    }

    @Test
    void writesThePooledEmbeddingInTheFixtureFormat() throws IOException {
        Path out = dir.resolve("mean.bin");
        CliRunner r = CliRunner.run("embed", "-m", model.toString(), "-p", TEXT, "--pooling", "mean", "--out",
                out.toString(), "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals("", r.out(), "--out alone prints nothing on stdout");
        FixtureFile file = FixtureFile.read(out);
        try (Model m = Model.load(model, LoadOptions.defaults().withThreads(2)); Embedder e = embedder(m, Pooling.MEAN)) {
            assertArrayEquals(e.tokenize(TEXT), file.tokens());
            assertEquals(1, file.rows().length);
            assertArrayEquals(e.embed(TEXT), file.rows()[0], 0f);
        }
        assertTrue(r.err().contains("embedded 1 text (" + file.tokens().length + " tokens)"), r.err());
        assertTrue(r.err().contains("pooling mean, dimension 256, L2-normalized"), r.err());
        assertEquals("wrote " + out, r.lastErrLine());
    }

    @Test
    void printsEveryLineOfAnInputFileAsJson() throws IOException {
        Path lines = dir.resolve("lines.txt");
        Files.writeString(lines, "first line\n\nsecond line\nthird\n");
        CliRunner r = CliRunner.run("embed", "-m", model.toString(), "--input", lines.toString(), "--pooling", "last",
                "--json", "--instruction", "Find it");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode root = new ObjectMapper().readTree(r.out());
        assertEquals("last", root.get("pooling").asText());
        assertTrue(root.get("normalized").asBoolean());
        assertEquals(256, root.get("dimension").asInt());
        JsonNode data = root.get("data");
        List<String> texts = List.of("first line", "second line", "third");
        assertEquals(texts.size(), data.size(), "the empty line is skipped");
        try (Model m = Model.load(model, LoadOptions.defaults().withThreads(2));
             Embedder e = Embedder.create(m, EmbeddingOptions.defaults().withPooling(Pooling.LAST)
                     .withInstruction("Find it"))) {
            for (int i = 0; i < texts.size(); i++) {
                JsonNode item = data.get(i);
                assertEquals(i, item.get("index").asInt());
                assertEquals(e.tokenize(texts.get(i)).length, item.get("tokens").asInt());
                float[] expected = e.embed(texts.get(i));
                float[] got = new float[item.get("embedding").size()];
                for (int k = 0; k < got.length; k++) {
                    got[k] = item.get("embedding").get(k).floatValue();
                }
                assertArrayEquals(expected, got, 0f, "line " + i);
            }
        }
    }

    @Test
    void withoutPoolingEveryTokenGetsAVector() throws IOException {
        // the generated model declares no pooling_type, so the default is none
        CliRunner r = CliRunner.run("embed", "-m", model.toString(), "-p", "hello world", "--no-normalize");
        assertEquals(0, r.exitCode(), r.err());
        try (Model m = Model.load(model, LoadOptions.defaults().withThreads(2))) {
            int[] tokens = m.tokenizer().encode("hello world");
            String[] lines = r.out().split("\\R");
            assertEquals(tokens.length, lines.length, r.out());
            for (int i = 0; i < tokens.length; i++) {
                assertTrue(lines[i].startsWith("text 0 token " + i + " (id " + tokens[i] + "): ["), lines[i]);
                assertTrue(lines[i].endsWith("] (256 values)"), lines[i]);
            }
        }
        assertTrue(r.err().contains("pooling none, dimension 256, not normalized"), r.err());
    }

    @Test
    void matchesLlamaCppOnTheFixtureEmbeddingModel() throws IOException {
        Path modelFile = Fixtures.model("tiny-qwen3-embed-last-Q8_0.gguf");
        Path fixtures = Fixtures.fixturesDir();
        Path out = dir.resolve("p1.bin");
        CliRunner r = CliRunner.run("embed", "-m", modelFile.toString(), "-f",
                fixtures.resolve("prompts/p1.txt").toString(), "--out", out.toString());
        assertEquals(0, r.exitCode(), r.err());
        FixtureFile ref = FixtureFile.read(fixtures.resolve("reference/tiny-qwen3-embed-last-Q8_0.p1.bin"));
        FixtureFile got = FixtureFile.read(out);
        assertArrayEquals(ref.tokens(), got.tokens());
        double cosine = Embedder.cosineSimilarity(ref.rows()[0], got.rows()[0]);
        assertTrue(cosine >= 0.999, "cosine " + cosine);
    }

    @Test
    void usageErrors() throws IOException {
        Path lines = dir.resolve("two.txt");
        Files.writeString(lines, "one\ntwo\n");
        CliRunner several = CliRunner.run("embed", "-m", model.toString(), "--input", lines.toString(), "--out",
                dir.resolve("x.bin").toString());
        assertEquals(2, several.exitCode());
        assertTrue(several.lastErrLine().contains("--out writes one text"), several.err());
        assertFalse(Files.exists(dir.resolve("x.bin")));

        CliRunner both = CliRunner.run("embed", "-m", model.toString(), "-p", "x", "--input", lines.toString());
        assertEquals(2, both.exitCode(), both.err());
        CliRunner none = CliRunner.run("embed", "-m", model.toString());
        assertEquals(2, none.exitCode(), none.err());
        CliRunner badPooling = CliRunner.run("embed", "-m", model.toString(), "-p", "x", "--pooling", "rank");
        assertEquals(2, badPooling.exitCode(), badPooling.err());
        CliRunner empty = CliRunner.run("embed", "-m", model.toString(), "-p", "", "--pooling", "mean");
        assertEquals(1, empty.exitCode());
        assertEquals("moe4j: error: nothing to embed: the text gives no tokens", empty.lastErrLine());
    }
}
