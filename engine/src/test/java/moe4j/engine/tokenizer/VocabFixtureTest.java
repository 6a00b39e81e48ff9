package moe4j.engine.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import moe4j.gguf.Fixtures;
import moe4j.gguf.GgufFile;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * llama.cpp's own tokenizer test vectors ({@code shared/fixtures/vocab}): every case of the qwen2
 * (Qwen3's pre-tokenizer) and gpt-2 vocabularies, tokenized with add_special = false and
 * parse_special = false, must give exactly llama.cpp's ids.
 */
class VocabFixtureTest {

    private static final String QWEN2 = "ggml-vocab-qwen2.gguf";
    private static final String GPT2 = "ggml-vocab-gpt-2.gguf";
    private static final Map<String, Tokenizer> LOADED = new ConcurrentHashMap<>();

    private record Case(int index, String input, int[] expected) {
    }

    private static Path vocabDir() {
        return Fixtures.fixturesDir().resolve("vocab");
    }

    private static Tokenizer tokenizer(String name) {
        return LOADED.computeIfAbsent(name, n -> {
            try (GgufFile f = GgufFile.open(vocabDir().resolve(n))) {
                return Tokenizer.fromGguf(f.metadata());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /** Inputs are separated by "\n__ggml_vocab_test__\n"; outputs are one line of ids per input. */
    private static List<Case> cases(String name) throws IOException {
        String[] inputs = Files.readString(vocabDir().resolve(name + ".inp")).split("\n__ggml_vocab_test__\n", -1);
        String[] outputs = Files.readString(vocabDir().resolve(name + ".out")).split("\n", -1);
        assertEquals(inputs.length, outputs.length, name + ": inputs and outputs differ in count");
        List<Case> cases = new ArrayList<>();
        for (int i = 0; i < inputs.length; i++) {
            String line = outputs[i].strip();
            int[] ids = line.isEmpty() ? new int[0] : Arrays.stream(line.split(" ")).mapToInt(Integer::parseInt).toArray();
            cases.add(new Case(i, inputs[i], ids));
        }
        return cases;
    }

    private static Stream<DynamicTest> vectors(String name) throws IOException {
        Tokenizer t = tokenizer(name);
        List<Case> cases = cases(name);
        assertTrue(cases.size() >= 40, name + " holds " + cases.size() + " cases");
        return cases.stream().map(c -> DynamicTest.dynamicTest(name + " #" + c.index() + " '" + printable(c.input()) + "'",
                () -> {
                    int[] ids = t.encode(c.input(), false, false);
                    assertArrayEquals(c.expected(), ids, () -> "ids of '" + printable(c.input()) + "': " + Arrays.toString(ids));
                    assertEquals(c.input(), t.decode(ids), "round trip");
                }));
    }

    private static String printable(String s) {
        String p = s.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t");
        return p.length() > 40 ? p.substring(0, 40) + "..." : p;
    }

    @TestFactory
    Stream<DynamicTest> qwen2Vectors() throws IOException {
        Fixtures.requireShared();
        return vectors(QWEN2);
    }

    @TestFactory
    Stream<DynamicTest> gpt2Vectors() throws IOException {
        Fixtures.requireShared();
        return vectors(GPT2);
    }

    @Test
    void qwen2VocabularyFacts() {
        Tokenizer t = tokenizer(QWEN2);
        assertEquals(151936, t.vocabSize());
        assertEquals(PreTokenizer.QWEN2, t.preTokenizer());
        assertArrayEquals(new int[] {9707, 1879}, t.encode("Hello world", false, false));
        assertArrayEquals(new int[] {271}, t.encode("\n\n", false, false));
        assertEquals("Ġ", t.tokenText(220));
        assertEquals("Ċ", t.tokenText(198));
        assertEquals(Set.of(151643, 151645), t.endOfGenerationIds());
        assertEquals(OptionalInt.of(151643), t.bos());
        assertEquals(OptionalInt.of(151643), t.eos());
        // add_bos/add_eos are absent: qwen2 adds nothing
        assertArrayEquals(new int[] {9707}, t.encode("Hello"));
    }

    @Test
    void qwen2ControlTokensParsedOnRequest() {
        Tokenizer t = tokenizer(QWEN2);
        int imStart = t.find("<|im_start|>").orElseThrow();
        int imEnd = t.find("<|im_end|>").orElseThrow();
        assertEquals(151644, imStart);
        assertEquals(151645, imEnd);
        String prompt = "<|im_start|>user\nHello world<|im_end|>\n";
        int[] ids = t.encode(prompt, false, true);
        int[] body = t.encode("user\nHello world", false, false);
        int[] expected = TokenizerTest.concat(new int[] {imStart}, body, new int[] {imEnd}, new int[] {198});
        assertArrayEquals(expected, ids);
        assertEquals(prompt, t.decode(ids, true));
        assertEquals("user\nHello world\n", t.decode(ids));
        int[] literal = t.encode(prompt, false, false);
        assertFalse(Arrays.stream(literal).anyMatch(id -> id == imStart || id == imEnd));
        assertEquals(prompt, t.decode(literal));
    }

    @Test
    void qwen2RoundTripsRandomUnicodeAndStreams() {
        Tokenizer t = tokenizer(QWEN2);
        Random random = new Random(2024);
        for (int round = 0; round < 300; round++) {
            String text = TokenizerTest.randomText(random, 60);
            int[] ids = t.encode(text, false, false);
            assertEquals(text, t.decode(ids), text);
            StreamingDecoder d = t.streamingDecoder();
            StringBuilder streamed = new StringBuilder();
            for (int id : ids) {
                streamed.append(d.accept(id));
            }
            assertFalse(d.hasPending(), text);
            assertEquals(text, streamed.toString());
        }
    }

    @Test
    void qwen2SplitsEmojiAcrossTokensAndStreamsThemWhole() {
        Tokenizer t = tokenizer(QWEN2);
        // llama.cpp's vector: " 🦙" is 11162 99 247, three tokens cutting the emoji's 4 bytes
        String text = "this is 🦙.cpp 🦙🦙 ok";
        int[] ids = t.encode(text, false, false);
        StreamingDecoder d = t.streamingDecoder();
        List<String> pieces = new ArrayList<>();
        boolean held = false;
        for (int id : ids) {
            String piece = d.accept(id);
            held |= d.hasPending();
            pieces.add(piece);
            assertFalse(piece.contains("\uFFFD"), piece);
        }
        assertTrue(held, "some token ends inside an emoji: " + Arrays.toString(ids));
        assertEquals(text, String.join("", pieces));
    }

    @Test
    void largeTextEncodesAndRoundTrips() throws IOException {
        Tokenizer t = tokenizer(QWEN2);
        StringBuilder sb = new StringBuilder();
        List<Case> cases = cases(QWEN2);
        for (int i = 0; sb.length() < 100_000; i++) {
            sb.append(cases.get(i % cases.size()).input()).append("<|im_end|>");
        }
        String text = sb.toString();
        int[] ids = t.encode(text, false, true);
        assertTrue(ids.length > 10_000);
        assertEquals(text, t.decode(ids, true));
    }

    /**
     * The fixture models' reference runs record the ids llama.cpp gave each prompt file
     * (add_special = false, parse_special = true): {@code int32 n, int32 dim, int32 ids[n], ...}.
     */
    @TestFactory
    Stream<DynamicTest> referencePromptsTokenizeLikeLlamaCpp() throws IOException {
        Path fixtures = Fixtures.fixturesDir();
        List<Path> references;
        try (Stream<Path> s = Files.list(fixtures.resolve("reference"))) {
            references = s.filter(p -> p.toString().endsWith(".bin")).sorted().toList();
        }
        assertFalse(references.isEmpty(), "no reference runs in " + fixtures);
        return references.stream().map(ref -> DynamicTest.dynamicTest(ref.getFileName().toString(), () -> {
            String[] parts = ref.getFileName().toString().split("\\.");
            Path model = fixtures.resolve("models").resolve(parts[0] + ".gguf");
            String prompt = Files.readString(fixtures.resolve("prompts").resolve(parts[1] + ".txt"));
            int[] expected = readReferenceIds(ref);
            try (GgufFile f = GgufFile.open(model)) {
                Tokenizer t = Tokenizer.fromGguf(f.metadata());
                assertArrayEquals(expected, t.encode(prompt, false, true));
                assertEquals(prompt, t.decode(expected, true));
            }
        }));
    }

    private static int[] readReferenceIds(Path ref) throws IOException {
        try (var in = Files.newInputStream(ref)) {
            java.nio.ByteBuffer header = java.nio.ByteBuffer.wrap(in.readNBytes(8)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            int n = header.getInt();
            assertTrue(n > 0 && n < 100_000, ref + ": implausible token count " + n);
            header.getInt(); // dim
            java.nio.ByteBuffer ids = java.nio.ByteBuffer.wrap(in.readNBytes(4 * n)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            int[] out = new int[n];
            for (int i = 0; i < n; i++) {
                out[i] = ids.getInt();
            }
            return out;
        }
    }

    @Test
    void gpt2VocabularyFacts() {
        Tokenizer t = tokenizer(GPT2);
        assertEquals(50257, t.vocabSize());
        assertEquals(PreTokenizer.GPT2, t.preTokenizer());
        assertEquals(Set.of(50256), t.endOfGenerationIds());
        int[] ids = t.encode("<|endoftext|>", false, true);
        assertArrayEquals(new int[] {50256}, ids);
        Random random = new Random(5);
        for (int round = 0; round < 100; round++) {
            String text = TokenizerTest.randomText(random, 60);
            assertEquals(text, t.decode(t.encode(text, false, false)), text);
        }
    }
}
