package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;

class GenerateCommandTest {

    private static final Pattern SUMMARY = Pattern.compile(
            "prompt: (\\d+) tokens, \\S+ tok/s; generated: (\\d+) tokens, \\S+ tok/s; stop: ([a-z ]+)");

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    /** What the engine generates for {@code prompt} (text tokenized as the command does). */
    private static GenerationResult engineGenerate(String prompt, SamplerSettings settings, int maxTokens)
            throws IOException {
        return engineGenerate(prompt, settings, maxTokens, LoadOptions.defaults().withThreads(2));
    }

    private static GenerationResult engineGenerate(String prompt, SamplerSettings settings, int maxTokens,
            LoadOptions options) throws IOException {
        try (Model m = Model.load(model, options); Session s = m.newSession()) {
            Generator g = new Generator(s, new Sampler(settings, s.vocabularySize()), m.tokenizer());
            return g.generate(m.tokenizer().encode(prompt), GenerationOptions.maxTokens(maxTokens), GenerationListener.NONE);
        }
    }

    private static Matcher summary(CliRunner r) {
        Matcher m = SUMMARY.matcher(r.err());
        assertTrue(m.find(), "summary line in: " + r.err());
        return m;
    }

    @Test
    void greedyGenerationIsReproducibleAndMatchesTheEngine() throws IOException {
        String[] args = {"generate", "-m", model.toString(), "-p", "The quick brown fox", "-n", "12", "--temp", "0",
                "--seed", "3", "-t", "2"};
        CliRunner first = CliRunner.run(args);
        CliRunner second = CliRunner.run(args);
        assertEquals(0, first.exitCode(), first.err());
        assertEquals(first.out(), second.out());

        GenerationResult expected = engineGenerate("The quick brown fox", SamplerSettings.greedy(), 12);
        assertEquals(expected.text().endsWith("\n") ? expected.text() : expected.text() + "\n", first.out());
        Matcher s = summary(first);
        assertEquals(expected.promptTokens(), Integer.parseInt(s.group(1)));
        assertEquals(expected.tokens().length, Integer.parseInt(s.group(2)));
        assertTrue(first.err().contains("loaded tiny-moe.gguf"), first.err());
        assertTrue(first.err().matches("(?s).*memory: weights [^(]*\\(mapped(, (2 MiB|4 KiB) pages)?(; [^)]* repacked in RAM)?\\).*"),
                first.err());
        // in 4 KiB pages (a file just written, as this one), the line after says how to get 2 MiB ones; else nothing
        assertEquals(first.err().contains("(mapped, 4 KiB pages)"),
                first.err().contains("(dd if=" + model + " iflag=nocache count=0)"), first.err());
        assertTrue(first.err().matches("(?s).*warm-up: \\d+ tokens in .*"), first.err());

        // read into memory instead of mapped: the same text
        String[] inMemory = java.util.Arrays.copyOf(args, args.length + 1);
        inMemory[args.length] = "--no-mmap";
        CliRunner read = CliRunner.run(inMemory);
        assertEquals(0, read.exitCode(), read.err());
        assertEquals(first.out(), read.out());
        assertTrue(read.err().matches("(?s).*memory: weights [^(]*\\(in memory(; [^)]* repacked in RAM)?\\).*"), read.err());

        // weights multiplied as the file holds them: what the engine generates so
        String[] asInFile = java.util.Arrays.copyOf(args, args.length + 1);
        asInFile[args.length] = "--no-repack";
        CliRunner plain = CliRunner.run(asInFile);
        assertEquals(0, plain.exitCode(), plain.err());
        GenerationResult notRepacked = engineGenerate("The quick brown fox", SamplerSettings.greedy(), 12,
                LoadOptions.defaults().withThreads(2).withRepack(false));
        assertEquals(notRepacked.text().endsWith("\n") ? notRepacked.text() : notRepacked.text() + "\n", plain.out());
        assertFalse(plain.err().contains("repacked"), plain.err());

        // the warm-up is a throwaway session: skipping it changes nothing but the time
        String[] skip = java.util.Arrays.copyOf(args, args.length + 1);
        skip[args.length] = "--no-warmup";
        CliRunner cold = CliRunner.run(skip);
        assertEquals(0, cold.exitCode(), cold.err());
        assertEquals(first.out(), cold.out());
        assertFalse(cold.err().contains("warm-up"), cold.err());
    }

    @Test
    void seededSamplingIsReproducible() throws IOException {
        String[] args = {"generate", "-m", model.toString(), "-p", "Once upon a time", "-n", "16", "--temp", "1.2",
                "--top-k", "0", "--top-p", "0.9", "--min-p", "0.01", "--repeat-penalty", "1.1", "--presence-penalty",
                "0.2", "--frequency-penalty", "0.1", "--seed", "11", "-t", "2"};
        CliRunner first = CliRunner.run(args);
        CliRunner second = CliRunner.run(args);
        assertEquals(0, first.exitCode(), first.err());
        assertEquals(first.out(), second.out());
        assertTrue(first.err().contains("; seed 11"), first.err());

        SamplerSettings settings = new SamplerSettings(1.2f, 0, 0.9f, 0.01f, 1.1f, 0.2f, 0.1f, 64, 11);
        GenerationResult expected = engineGenerate("Once upon a time", settings, 16);
        assertEquals(expected.tokens().length, Integer.parseInt(summary(first).group(2)));
        assertTrue(first.out().startsWith(expected.text()), first.out());
    }

    @Test
    void respectsTheTokenLimit() {
        for (int n : new int[] {0, 1, 5}) {
            CliRunner r = CliRunner.run("generate", "-m", model.toString(), "-p", "Hello", "-n", Integer.toString(n),
                    "--seed", "1", "-t", "2");
            assertEquals(0, r.exitCode(), r.err());
            Matcher s = summary(r);
            int generated = Integer.parseInt(s.group(2));
            assertTrue(generated <= n, "generated " + generated + " > " + n);
            if (s.group(3).equals("token limit")) {
                assertEquals(n, generated);
            } else {
                assertEquals("end of text", s.group(3));
            }
        }
    }

    @Test
    void chatWrapsThePromptInTheTemplate() throws IOException {
        CliRunner r = CliRunner.run("generate", "-m", model.toString(), "-p", "Hi", "--chat", "-n", "3", "--temp", "0",
                "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        String rendered;
        int promptTokens;
        try (Model m = Model.load(model, LoadOptions.defaults())) {
            rendered = ChatTemplates.fromGguf(m.file().metadata()).render(List.of(ChatMessage.user("Hi")), true, true);
            promptTokens = m.tokenizer().encode(rendered).length;
        }
        assertTrue(rendered.contains("<|im_start|>user\nHi<|im_end|>"), rendered);
        assertEquals(promptTokens, Integer.parseInt(summary(r).group(1)));
    }

    @Test
    void stopStringCutsTheText() throws IOException {
        GenerationResult free = engineGenerate("abc", SamplerSettings.greedy(), 20);
        String text = free.text();
        assertTrue(text.length() >= 4, "the greedy continuation is long enough to cut: '" + text + "'");
        // a stop string that the greedy continuation contains, so the output is cut right before its first occurrence
        String stop = text.substring(text.length() / 2, text.length() / 2 + 2);
        CliRunner r = CliRunner.run("generate", "-m", model.toString(), "-p", "abc", "-n", "20", "--temp", "0",
                "--stop", stop, "-t", "2");
        assertEquals(0, r.exitCode(), r.err());
        String expected = text.substring(0, text.indexOf(stop));
        assertEquals(expected.endsWith("\n") || expected.isEmpty() ? expected : expected + "\n", r.out());
        assertEquals("stop string", summary(r).group(3));
    }

    @Test
    void badInputFailsWithOneErrorLine() {
        CliRunner missing = CliRunner.run("generate", "-m", dir.resolve("nope.gguf").toString(), "-p", "x");
        assertEquals(1, missing.exitCode());
        assertEquals(1, missing.errLines().length, missing.err());
        assertTrue(missing.err().startsWith("moe4j: error: file not found: "), missing.err());

        CliRunner negative = CliRunner.run("generate", "-m", model.toString(), "-p", "x", "-n", "-1");
        assertEquals(2, negative.exitCode());
        assertEquals(1, negative.errLines().length, negative.err());
        assertTrue(negative.err().contains("--n-predict must not be negative"), negative.err());

        CliRunner tooLong = CliRunner.run("generate", "-m", model.toString(), "-p", "many words ".repeat(20), "-c", "16");
        assertEquals(1, tooLong.exitCode());
        assertEquals(1, tooLong.errorLineCount(), tooLong.err());
        assertTrue(tooLong.lastErrLine().matches("moe4j: error: the prompt is \\d+ tokens but the context holds 16; .*"),
                tooLong.err());
        assertTrue(tooLong.out().isEmpty());

        CliRunner both = CliRunner.run("generate", "-m", model.toString(), "-p", "x", "-f", "y.txt");
        assertEquals(2, both.exitCode());
        CliRunner noThink = CliRunner.run("generate", "-m", model.toString(), "-p", "x", "--no-think");
        assertEquals(2, noThink.exitCode());
        assertTrue(noThink.err().contains("--no-think needs --chat"), noThink.err());
        CliRunner badTopP = CliRunner.run("generate", "-m", model.toString(), "-p", "x", "--top-p", "0");
        assertEquals(2, badTopP.exitCode());
        assertFalse(badTopP.err().contains("loaded"), "sampling flags are checked before loading");
    }
}
