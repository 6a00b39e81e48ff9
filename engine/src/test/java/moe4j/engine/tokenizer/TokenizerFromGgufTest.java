package moe4j.engine.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.OptionalInt;
import java.util.function.Consumer;
import java.util.stream.IntStream;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadataException;
import moe4j.gguf.GgufWriter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Tokenizer#fromGguf} on small GGUF files written here. */
class TokenizerFromGgufTest {

    @TempDir
    Path dir;

    private Tokenizer load(Consumer<GgufWriter> edit) throws IOException {
        TinyVocab v = new TinyVocab();
        int hi = v.merge("h", "i");
        v.add("<|endoftext|>", TokenType.CONTROL);
        v.add("<think>", TokenType.USER_DEFINED);
        GgufWriter w = new GgufWriter()
                .putString("general.architecture", "qwen3")
                .putString("tokenizer.ggml.model", "gpt2")
                .putString("tokenizer.ggml.pre", "qwen2")
                .putStringArray("tokenizer.ggml.tokens", v.tokens)
                .putInt32Array("tokenizer.ggml.token_type", v.types.stream().mapToInt(Enum::ordinal).toArray())
                .putStringArray("tokenizer.ggml.merges", v.merges)
                .putUInt32("tokenizer.ggml.eos_token_id", 257)
                .putUInt32("tokenizer.ggml.bos_token_id", 257);
        assertEquals(256, hi);
        edit.accept(w);
        Path file = dir.resolve("vocab.gguf");
        w.write(file);
        try (GgufFile f = GgufFile.open(file)) {
            return Tokenizer.fromGguf(f.metadata());
        }
    }

    @Test
    void readsVocabularyMergesTypesAndSpecialIds() throws IOException {
        Tokenizer t = load(w -> { });
        assertEquals(259, t.vocabSize());
        assertEquals(PreTokenizer.QWEN2, t.preTokenizer());
        // USER_DEFINED <think> is always matched; CONTROL <|endoftext|> stays text without parseSpecial
        int[] plain = TokenizerTest.concat(new int[] {256, ' ', 258},
                "<|endoftext|>".chars().toArray());
        assertArrayEquals(plain, t.encode("hi <think><|endoftext|>", false, false));
        assertArrayEquals(new int[] {256, 257}, t.encode("hi<|endoftext|>", false, true));
        assertEquals(OptionalInt.of(257), t.eos());
        assertEquals(OptionalInt.of(257), t.bos());
        assertEquals(TokenType.USER_DEFINED, t.tokenType(258));
        assertTrue(t.isEndOfGeneration(257));
        // qwen2 adds no BOS by default
        assertArrayEquals(new int[] {256}, t.encode("hi"));
    }

    @Test
    void addFlagsAndPreTokenizerDefaults() throws IOException {
        Tokenizer withEos = load(w -> w.putBool("tokenizer.ggml.add_eos_token", true));
        assertArrayEquals(new int[] {256, 257}, withEos.encode("hi"));
        // llama-bpe adds BOS unless the file says otherwise
        Tokenizer llama = load(w -> w.putString("tokenizer.ggml.pre", "llama-bpe"));
        assertArrayEquals(new int[] {257, 256}, llama.encode("hi"));
        Tokenizer llamaNoBos = load(w -> w.putString("tokenizer.ggml.pre", "llama-bpe")
                .putBool("tokenizer.ggml.add_bos_token", false));
        assertArrayEquals(new int[] {256}, llamaNoBos.encode("hi"));
    }

    @Test
    void missingTokenTypesMeanNormal() throws IOException {
        Tokenizer t = load(w -> w.remove("tokenizer.ggml.token_type"));
        assertEquals(TokenType.NORMAL, t.tokenType(258));
        // "<|endoftext|>" is an end-of-generation text, and so becomes CONTROL regardless
        assertEquals(TokenType.CONTROL, t.tokenType(257));
    }

    @Test
    void unsupportedModelsFailClearly() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> load(w -> w.putString("tokenizer.ggml.model", "llama")));
        assertTrue(e.getMessage().contains("tokenizer model 'llama' not supported yet"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> load(w -> w.putString("tokenizer.ggml.pre", "tekken")));
        assertTrue(e.getMessage().contains("'tekken'") && e.getMessage().contains("tokenizer.ggml.pre"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> load(w -> w.remove("tokenizer.ggml.pre")));
        assertTrue(e.getMessage().contains("tokenizer.ggml.pre is missing"), e.getMessage());
    }

    @Test
    void inconsistentMetadataFailsNamingTheKey() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> load(w -> w.putInt32Array("tokenizer.ggml.token_type", 1, 1)));
        assertTrue(e.getMessage().contains("token_type"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> load(w -> w.putInt32Array("tokenizer.ggml.token_type",
                        IntStream.range(0, 259).map(i -> i == 5 ? 9 : 1).toArray())));
        assertTrue(e.getMessage().contains("token 5 has invalid token type 9"), e.getMessage());
        GgufMetadataException m = assertThrows(GgufMetadataException.class,
                () -> load(w -> w.remove("tokenizer.ggml.merges")));
        assertTrue(m.getMessage().contains("tokenizer.ggml.merges"), m.getMessage());
    }
}
