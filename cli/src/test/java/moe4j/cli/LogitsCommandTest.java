package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.gguf.Fixtures;

class LogitsCommandTest {

    private static final String PROMPT = "<|im_start|>user\nThe quick brown fox jumps over the lazy dog.<|im_end|>\n";

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    @Test
    void writesTheLogitsOfEveryPosition() throws IOException {
        Path out = dir.resolve("batched.bin");
        CliRunner r = CliRunner.run("logits", "-m", model.toString(), "-p", PROMPT, "--out", out.toString(), "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        FixtureFile file = FixtureFile.readLogits(out);
        try (Model m = Model.load(model, LoadOptions.defaults().withThreads(2)); Session s = m.newSession()) {
            int[] expectedTokens = m.tokenizer().encode(PROMPT);
            assertArrayEquals(expectedTokens, file.tokens());
            assertEquals(m.config().vocab(), file.rows()[0].length);
            float[][] expected = s.evaluateAll(expectedTokens);
            for (int i = 0; i < expected.length; i++) {
                assertArrayEquals(expected[i], file.rows()[i], "position " + i);
            }
        }
        assertTrue(r.lastErrLine().startsWith("wrote " + out + ": " + file.tokens().length + " tokens x 515 logits"),
                r.err());
    }

    @Test
    void oneByOneIsCloseToBatched() throws IOException {
        Path batched = dir.resolve("b.bin");
        Path single = dir.resolve("s.bin");
        assertEquals(0, CliRunner.run("logits", "-m", model.toString(), "-p", PROMPT, "-o", batched.toString()).exitCode());
        CliRunner r = CliRunner.run("logits", "-m", model.toString(), "-p", PROMPT, "-o", single.toString(),
                "--one-by-one", "--kv-type", "f32");
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.lastErrLine().endsWith("one token per step"), r.err());
        FixtureFile a = FixtureFile.readLogits(batched);
        FixtureFile b = FixtureFile.readLogits(single);
        assertArrayEquals(a.tokens(), b.tokens());
        for (int i = 0; i < a.tokens().length; i++) {
            float scale = 0;
            for (float v : a.rows()[i]) {
                scale = Math.max(scale, Math.abs(v));
            }
            // the decode path sums in another order and (f16 vs f32 cache) rounds differently: close, not equal
            assertArrayEquals(a.rows()[i], b.rows()[i], 0.02f * scale, "position " + i);
        }
    }

    @Test
    void reproducesTheReferenceTokensOfTheFixtures() throws IOException {
        Path fixture = Fixtures.model("tiny-qwen3moe-Q8_0.gguf");
        Path prompt = Fixtures.fixturesDir().resolve("prompts/p1.txt");
        FixtureFile reference = FixtureFile.readLogits(Fixtures.fixturesDir().resolve("reference/tiny-qwen3moe-Q8_0.p1.bin"));
        Path out = dir.resolve("p1.bin");
        CliRunner r = CliRunner.run("logits", "-m", fixture.toString(), "--file", prompt.toString(), "--out", out.toString());
        assertEquals(0, r.exitCode(), r.err());
        FixtureFile file = FixtureFile.readLogits(out);
        assertArrayEquals(reference.tokens(), file.tokens());
        assertEquals(reference.rows()[0].length, file.rows()[0].length);
        int sameTop = 0;
        for (int i = 0; i < file.tokens().length; i++) {
            sameTop += argmax(file.rows()[i]) == argmax(reference.rows()[i]) ? 1 : 0;
        }
        // the engine's own conformance tests hold the precise bar; this checks the file holds the right rows
        assertTrue(sameTop >= 0.8 * file.tokens().length, sameTop + " of " + file.tokens().length + " top-1 agree");
    }

    private static int argmax(float[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) {
            best = x[i] > x[best] ? i : best;
        }
        return best;
    }

    @Test
    void badInput() throws IOException {
        Path out = dir.resolve("bad.bin");
        CliRunner tooLong = CliRunner.run("logits", "-m", model.toString(), "-p", PROMPT, "-o", out.toString(), "-c", "4");
        assertEquals(1, tooLong.exitCode());
        assertEquals(1, tooLong.errorLineCount(), tooLong.err());
        assertTrue(tooLong.lastErrLine().matches("moe4j: error: the prompt is \\d+ tokens but --ctx-size is 4"),
                tooLong.err());
        assertFalse(Files.exists(out));

        CliRunner noModel = CliRunner.run("logits", "-p", "x", "-o", out.toString());
        assertEquals(2, noModel.exitCode());
        assertTrue(noModel.err().contains("--model"), noModel.err());

        Path garbage = dir.resolve("garbage.gguf");
        Files.writeString(garbage, "not a model");
        CliRunner invalid = CliRunner.run("logits", "-m", garbage.toString(), "-p", "x", "-o", out.toString());
        assertEquals(1, invalid.exitCode());
        assertEquals(1, invalid.errLines().length, invalid.err());
        assertFalse(Files.exists(out));
    }
}
