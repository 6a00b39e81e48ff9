package moe4j.engine.generation;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.ContextOverflowException;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.engine.tokenizer.Tokenizer;

class GeneratorTest {

    @TempDir
    static Path dir;
    static Model model;
    static int[] prompt;

    @BeforeAll
    static void load() throws IOException {
        Path p = dir.resolve("moe.gguf");
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.Q8_0, 11, p);
        model = Model.load(p, LoadOptions.defaults().withThreads(2).withContextLength(64));
        prompt = model.tokenizer().encode("Hello there, how are", false, false);
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** A greedy run without a tokenizer, so only the token limit stops it. */
    private static GenerationResult greedyTokens(int max) {
        try (Session s = model.newSession()) {
            return new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), null)
                    .generate(prompt, GenerationOptions.maxTokens(max), GenerationListener.NONE);
        }
    }

    @Test
    void greedyGenerationIsTheArgmaxChain() {
        GenerationResult r = greedyTokens(10);
        assertEquals(StopReason.MAX_TOKENS, r.stopReason());
        assertEquals(10, r.tokens().length);
        assertEquals(prompt.length, r.promptTokens());
        try (Session s = model.newSession()) {
            float[] logits = s.evaluate(prompt);
            for (int i = 0; i < 10; i++) {
                int best = 0;
                for (int t = 1; t < logits.length; t++) {
                    if (logits[t] > logits[best]) {
                        best = t;
                    }
                }
                assertEquals(best, r.tokens()[i], "token " + i);
                logits = s.evaluate(new int[] {best});
            }
        }
        assertArrayEquals(r.tokens(), greedyTokens(10).tokens(), "reproducible");
    }

    @Test
    void streamsTokensAndTextAndStopsOnAStopToken() {
        GenerationResult full = greedyTokens(12);
        int stopAt = 5;
        int stop = full.tokens()[stopAt];
        int first = Arrays.stream(full.tokens()).boxed().toList().indexOf(stop);
        List<Integer> streamed = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        try (Session s = model.newSession()) {
            Tokenizer tok = model.tokenizer();
            GenerationResult r = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), tok)
                    .generate(prompt, GenerationOptions.maxTokens(12).withStopTokens(Set.of(stop)),
                            new GenerationListener() {
                                @Override
                                public void onToken(int token) {
                                    streamed.add(token);
                                }

                                @Override
                                public void onText(String t) {
                                    text.append(t);
                                }
                            });
            if (r.stopReason() == StopReason.END_OF_GENERATION) {
                assertTrue(r.tokens().length <= first, "stopped at or before the stop token");
            }
            assertEquals(Arrays.stream(r.tokens()).boxed().toList(), streamed);
            assertEquals(tok.decode(r.tokens()), r.text());
            assertEquals(r.text(), text.toString());
            for (int t : r.tokens()) {
                assertFalse(t == stop, "the stop token is not part of the output");
            }
        }
    }

    @Test
    void stopStringCutsTheTextAndIsNeverStreamed() {
        Tokenizer tok = model.tokenizer();
        GenerationResult full;
        try (Session s = model.newSession()) {
            full = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), tok)
                    .generate(prompt, GenerationOptions.maxTokens(16), GenerationListener.NONE);
        }
        String text = full.text();
        assumeLongEnough(text);
        String stop = text.substring(text.length() / 2, text.length() / 2 + 3);
        String expected = text.substring(0, text.indexOf(stop));
        StringBuilder streamed = new StringBuilder();
        try (Session s = model.newSession()) {
            GenerationResult r = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), tok)
                    .generate(prompt, GenerationOptions.maxTokens(16).withStopStrings(List.of(stop)),
                            new GenerationListener() {
                                @Override
                                public void onText(String t) {
                                    streamed.append(t);
                                }
                            });
            assertEquals(StopReason.STOP_STRING, r.stopReason());
            assertEquals(expected, r.text());
            assertEquals(expected, streamed.toString());
        }
    }

    private static void assumeLongEnough(String text) {
        org.junit.jupiter.api.Assumptions.assumeTrue(text.length() >= 8,
                "the random model produced too little text for a stop-string test: '" + text + "'");
    }

    @Test
    void cancellationStopsBetweenTokens() {
        CancellationToken cancel = new CancellationToken();
        try (Session s = model.newSession()) {
            List<Integer> seen = new ArrayList<>();
            GenerationResult r = new Generator(s, new Sampler(SamplerSettings.defaults(5), model.config().vocab()), null)
                    .generate(prompt, GenerationOptions.maxTokens(50).withCancellation(cancel), new GenerationListener() {
                        @Override
                        public void onToken(int token) {
                            seen.add(token);
                            if (seen.size() == 3) {
                                cancel.cancel();
                            }
                        }
                    });
            assertEquals(StopReason.CANCELLED, r.stopReason());
            assertEquals(3, r.tokens().length);
        }
    }

    @Test
    void stopsWhenTheContextIsFullAndRejectsAnOversizedPrompt() {
        int[] four = Arrays.copyOf(prompt, 4);
        try (Session s = model.newSession(6)) {
            GenerationResult r = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), null)
                    .generate(four, GenerationOptions.maxTokens(50), GenerationListener.NONE);
            assertEquals(StopReason.CONTEXT_FULL, r.stopReason());
            assertEquals(3, r.tokens().length, "positions 4 and 5 hold two generated tokens; the third is not evaluated");
            assertEquals(6, s.position());
        }
        try (Session s = model.newSession(3)) {
            Generator g = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), null);
            assertThrows(ContextOverflowException.class,
                    () -> g.generate(four, GenerationOptions.maxTokens(5), GenerationListener.NONE));
            assertEquals(0, s.position());
        }
    }

    @Test
    void zeroMaxTokensOnlyEvaluatesThePrompt() {
        try (Session s = model.newSession()) {
            GenerationResult r = new Generator(s, new Sampler(SamplerSettings.greedy(), model.config().vocab()), null)
                    .generate(prompt, GenerationOptions.maxTokens(0), GenerationListener.NONE);
            assertEquals(0, r.tokens().length);
            assertEquals(StopReason.MAX_TOKENS, r.stopReason());
            assertEquals(prompt.length, s.position());
        }
    }
}
