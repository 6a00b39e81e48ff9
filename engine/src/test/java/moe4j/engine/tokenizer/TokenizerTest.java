package moe4j.engine.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.OptionalInt;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The tokenizer core on hand-made vocabularies (no fixture files needed). */
class TokenizerTest {

    /** In {@link TinyVocab}, ids 0..255 are the bytes themselves. */
    private static int[] bytesOf(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[b.length];
        for (int i = 0; i < b.length; i++) {
            ids[i] = b[i] & 0xFF;
        }
        return ids;
    }

    @Test
    void withoutMergesEveryByteIsAToken() {
        Tokenizer t = new TinyVocab().build();
        assertArrayEquals(bytesOf("a é\n😀"), t.encode("a é\n😀", false, false));
        assertArrayEquals(new int[0], t.encode("", false, false));
    }

    @Test
    void lowestRankMergesFirst() {
        TinyVocab v = new TinyVocab();
        int bc = v.merge("b", "c");
        int ab = v.merge("a", "b");
        Tokenizer t = v.build();
        assertArrayEquals(new int[] {'a', bc}, t.encode("abc", false, false));
        assertArrayEquals(new int[] {ab}, t.encode("ab", false, false));
    }

    @Test
    void equalRankMergesLeftmostFirst() {
        TinyVocab v = new TinyVocab();
        int aa = v.merge("a", "a");
        Tokenizer t = v.build();
        assertArrayEquals(new int[] {aa, 'a'}, t.encode("aaa", false, false));
        assertArrayEquals(new int[] {aa, aa}, t.encode("aaaa", false, false));
        int aaaa = v.merge("aa", "aa");
        assertArrayEquals(new int[] {aaaa, aa, 'a'}, v.build().encode("aaaaaaa", false, false));
    }

    @Test
    void queuedPairsInvalidatedByAMergeAreSkipped() {
        TinyVocab v = new TinyVocab();
        v.merge("b", "c");
        v.merge("a", "b");     // queued for "abc" but stale once "bc" is formed
        int abc = v.merge("a", "bc");
        assertArrayEquals(new int[] {abc}, v.build().encode("abc", false, false));
    }

    @Test
    void mergesBuildWordsFromByteLevelSymbols() {
        TinyVocab v = new TinyVocab();
        v.merge("h", "e");
        v.merge("l", "l");
        v.merge("he", "ll");
        int hello = v.merge("hell", "o");
        v.merge("Ġ", "w");
        v.merge("o", "r");
        v.merge("Ġw", "or");
        int ld = v.merge("l", "d");
        int world = v.merge("Ġwor", "ld");
        Tokenizer t = v.build();
        assertArrayEquals(new int[] {hello, world}, t.encode("hello world", false, false));
        // the leading space of " hello" has no merge with "hello": it stays a byte token
        assertArrayEquals(new int[] {' ', hello}, t.encode(" hello", false, false));
        // merges never cross word boundaries: "o" + "," are separate words
        assertArrayEquals(new int[] {hello, ',', world}, t.encode("hello, world", false, false));
        assertArrayEquals(new int[] {ld}, t.encode("ld", false, false));
    }

    @Test
    void nonByteMergesWorkOnMappedCodePoints() {
        TinyVocab v = new TinyVocab();
        int e = v.merge("Ã", "©"); // é = C3 A9
        int newlines = v.merge("Ċ", "Ċ");
        Tokenizer t = v.build();
        assertArrayEquals(new int[] {'c', 'a', 'f', e}, t.encode("café", false, false));
        assertArrayEquals(new int[] {newlines}, t.encode("\n\n", false, false));
        assertEquals("café\n\n", t.decode(new int[] {'c', 'a', 'f', e, newlines}));
    }

    @Test
    void mergeResultMissingFromVocabularyFallsBackToAsciiBytes() {
        TinyVocab v = new TinyVocab();
        v.mergeWithoutToken("x", "y");
        v.mergeWithoutToken("Ã", "©");
        Tokenizer t = v.build();
        assertArrayEquals(new int[] {'x', 'y'}, t.encode("xy", false, false));
        // as in llama.cpp, bytes of a non-ASCII symbol have no single-byte text to look up: dropped
        assertArrayEquals(new int[] {'a'}, t.encode("aé", false, false));
    }

    @Test
    void llama3EmitsWholeVocabularyWordsWithoutMerging() {
        TinyVocab v = new TinyVocab();
        int abc = v.add("abc", TokenType.NORMAL);
        int ab = v.merge("a", "b");
        assertArrayEquals(new int[] {abc}, v.build(PreTokenizer.LLAMA3).encode("abc", false, false));
        assertArrayEquals(new int[] {ab, 'c'}, v.build(PreTokenizer.QWEN2).encode("abc", false, false));
        assertArrayEquals(new int[] {ab, 'c', 'd'}, v.build(PreTokenizer.LLAMA3).encode("abcd", false, false));
    }

    // -------------------------------------------------------------------------- special tokens

    private static final class Specials {
        final TinyVocab v = new TinyVocab();
        final int imStart = v.add("<|im_start|>", TokenType.CONTROL);
        final int imEnd = v.add("<|im_end|>", TokenType.CONTROL);
        final int think = v.add("<think>", TokenType.USER_DEFINED);
        final int thinkEnd = v.add("</think>", TokenType.USER_DEFINED);
        final int pad = v.add("[PAD300]", TokenType.UNUSED);
        final int shortTag = v.add("<a>", TokenType.USER_DEFINED);
        final int longTag = v.add("<a><b>", TokenType.USER_DEFINED);
        final int endOfText = v.add("<|endoftext|>", TokenType.CONTROL);
        final Tokenizer t = v.build();
    }

    @Test
    void controlTokensAreParsedOnlyWhenAsked() {
        Specials s = new Specials();
        String text = "<|im_start|>user\nhi<|im_end|>";
        int[] expected = concat(new int[] {s.imStart}, bytesOf("user\nhi"), new int[] {s.imEnd});
        assertArrayEquals(expected, s.t.encode(text, false, true));
        assertArrayEquals(bytesOf(text), s.t.encode(text, false, false));
    }

    @Test
    void userDefinedTokensAreAlwaysParsed() {
        Specials s = new Specials();
        int[] expected = concat(new int[] {s.think}, bytesOf("x"), new int[] {s.thinkEnd}, bytesOf(" ok"));
        assertArrayEquals(expected, s.t.encode("<think>x</think> ok", false, false));
        assertArrayEquals(expected, s.t.encode("<think>x</think> ok", false, true));
    }

    @Test
    void longerSpecialTokensWin() {
        Specials s = new Specials();
        assertArrayEquals(new int[] {s.longTag, s.shortTag}, s.t.encode("<a><b><a>", false, false));
        assertArrayEquals(concat(new int[] {s.shortTag}, bytesOf("<b")), s.t.encode("<a><b", false, false));
    }

    @Test
    void adjacentAndRepeatedSpecialTokens() {
        Specials s = new Specials();
        assertArrayEquals(new int[] {s.imEnd, s.imEnd, s.imStart},
                s.t.encode("<|im_end|><|im_end|><|im_start|>", false, true));
        // a partial marker is plain text
        assertArrayEquals(bytesOf("<|im_end"), s.t.encode("<|im_end", false, true));
    }

    @Test
    void unusedTokensAreNeverMatched() {
        Specials s = new Specials();
        assertArrayEquals(bytesOf("[PAD300]"), s.t.encode("[PAD300]", false, true));
    }

    @Test
    void addSpecialFollowsTheModelsBosEosFlags() {
        Specials s = new Specials();
        TokenizerSpec base = s.v.spec(PreTokenizer.QWEN2);
        Tokenizer both = Tokenizer.create(new TokenizerSpec(base.tokens(), base.types(), base.merges(),
                PreTokenizer.QWEN2, OptionalInt.of(s.endOfText), OptionalInt.of(s.imEnd), OptionalInt.empty(), true, true));
        assertArrayEquals(new int[] {s.endOfText, 'h', s.imEnd}, both.encode("h", true, false));
        assertArrayEquals(new int[] {'h'}, both.encode("h", false, false));
        assertArrayEquals(new int[] {s.endOfText, s.imStart, s.imEnd}, both.encode("<|im_start|>"));
        Tokenizer none = Tokenizer.create(new TokenizerSpec(base.tokens(), base.types(), base.merges(),
                PreTokenizer.QWEN2, OptionalInt.of(s.endOfText), OptionalInt.of(s.imEnd), OptionalInt.empty(), false, false));
        assertArrayEquals(new int[] {s.imStart}, none.encode("<|im_start|>"));
        assertEquals(OptionalInt.of(s.endOfText), none.bos());
        assertEquals(OptionalInt.of(s.imEnd), none.eos());
    }

    // -------------------------------------------------------------------------------- decoding

    @Test
    void decodeHidesControlTokensUnlessRendered() {
        Specials s = new Specials();
        int[] ids = concat(new int[] {s.imStart}, bytesOf("hi"), new int[] {s.think, s.pad, s.imEnd});
        assertEquals("hi<think>", s.t.decode(ids));
        assertEquals("<|im_start|>hi<think><|im_end|>", s.t.decode(ids, true));
    }

    @Test
    void byteTokensDecodeToTheirByte() {
        TinyVocab v = new TinyVocab();
        int a = v.add("<0x41>", TokenType.BYTE);
        int c3 = v.add("<0xC3>", TokenType.BYTE);
        Tokenizer t = v.build();
        assertEquals("Aé", t.decode(new int[] {a, c3, 0xA9}));
    }

    @Test
    void malformedUtf8DecodesToReplacementCharacters() {
        Tokenizer t = new TinyVocab().build();
        assertEquals("a\uFFFD", t.decode(new int[] {'a', 0xE2, 0x82}));
        assertEquals("\uFFFDb", t.decode(new int[] {0x80, 'b'}));
    }

    @Test
    void roundTripsRandomUnicode() {
        TinyVocab v = new TinyVocab();
        v.merge("Ġ", "t");
        v.merge("h", "e");
        v.merge("Ġt", "he");
        v.merge("ä", "¸");
        v.add("<think>", TokenType.USER_DEFINED);
        Tokenizer[] tokenizers = {v.build(PreTokenizer.QWEN2), v.build(PreTokenizer.LLAMA3), v.build(PreTokenizer.GPT2)};
        Random random = new Random(7);
        for (int round = 0; round < 300; round++) {
            String text = randomText(random, 40);
            for (Tokenizer t : tokenizers) {
                assertEquals(text, t.decode(t.encode(text, false, false)), () -> t.preTokenizer() + ": " + text);
                assertEquals(text, t.decode(t.encode(text, false, true)), () -> t.preTokenizer() + ": " + text);
            }
        }
    }

    /** Random valid text mixing ASCII, whitespace, accents, CJK, emoji and astral code points. */
    static String randomText(Random random, int maxLength) {
        StringBuilder sb = new StringBuilder();
        for (int i = random.nextInt(maxLength + 1); i > 0; i--) {
            int cp = switch (random.nextInt(8)) {
                case 0 -> " \n\r\t'".charAt(random.nextInt(5));
                case 1, 2 -> 0x20 + random.nextInt(0x5F);
                case 3 -> 0xA0 + random.nextInt(0x200);
                case 4 -> 0x4E00 + random.nextInt(0x500);
                case 5 -> 0x1F300 + random.nextInt(0x300);
                case 6 -> "<think>".charAt(random.nextInt(7));
                default -> {
                    int c;
                    do {
                        c = random.nextInt(0x110000);
                    } while (Character.getType(c) == Character.SURROGATE);
                    yield c;
                }
            };
            sb.appendCodePoint(cp);
        }
        return sb.toString();
    }

    @Test
    void unpairedSurrogatesEncodeAsReplacementCharacter() {
        Tokenizer t = new TinyVocab().build();
        assertArrayEquals(bytesOf("a\uFFFDb"), t.encode("a\uD800b", false, false));
    }

    @Test
    void longInputsEncodeAndRoundTrip() {
        TinyVocab v = new TinyVocab();
        v.merge("a", "a");
        v.merge("aa", "aa");
        v.merge("Ġ", "a");
        Tokenizer t = v.build();
        Random random = new Random(3);
        StringBuilder sb = new StringBuilder();
        while (sb.length() < 100_000) {
            sb.append(randomText(random, 50)).append("a".repeat(random.nextInt(30))).append(' ');
        }
        String mixed = sb.toString();
        assertEquals(mixed, t.decode(t.encode(mixed, false, true)));
        // one 100 000-byte word: the merge queue must not degrade quadratically
        int[] ids = t.encode("a".repeat(100_000), false, false);
        assertEquals(25_000, ids.length);
        assertEquals(v.id("aaaa"), ids[0]);
    }

    // ------------------------------------------------------------------------ vocabulary info

    @Test
    void endOfGenerationSetAndControlUpgrade() {
        TinyVocab v = new TinyVocab();
        int endOfText = v.add("<|endoftext|>", TokenType.CONTROL);
        int imEnd = v.add("<|im_end|>", TokenType.USER_DEFINED); // mis-typed in the file
        int eot = v.add("<turn_end>", TokenType.CONTROL);
        int filler = v.add("<other>", TokenType.CONTROL);
        TokenizerSpec base = v.spec(PreTokenizer.QWEN2);
        Tokenizer t = Tokenizer.create(new TokenizerSpec(base.tokens(), base.types(), base.merges(), PreTokenizer.QWEN2,
                OptionalInt.empty(), OptionalInt.of(endOfText), OptionalInt.of(eot), false, false));
        assertEquals(Set.of(endOfText, imEnd, eot), t.endOfGenerationIds());
        assertTrue(t.isEndOfGeneration(imEnd));
        assertFalse(t.isEndOfGeneration(filler));
        assertFalse(t.isEndOfGeneration('a'));
        // end-of-generation tokens are control tokens: hidden in output, parsed only on request
        assertEquals(TokenType.CONTROL, t.tokenType(imEnd));
        assertEquals("", t.decode(new int[] {imEnd}));
        assertArrayEquals(bytesOf("<|im_end|>"), t.encode("<|im_end|>", false, false));
    }

    @Test
    void lookupsAndEmptyTexts() {
        TinyVocab v = new TinyVocab();
        int empty = v.add("", TokenType.NORMAL);
        int think = v.add("<think>", TokenType.USER_DEFINED);
        Tokenizer t = v.build();
        assertEquals(258, t.vocabSize());
        assertEquals("[EMPTY_256]", t.tokenText(empty));
        assertEquals(OptionalInt.of(think), t.find("<think>"));
        assertEquals(OptionalInt.of(0x20), t.find("Ġ"));
        assertEquals(OptionalInt.empty(), t.find("nope"));
        assertEquals(TokenType.USER_DEFINED, t.tokenType(think));
        assertEquals(OptionalInt.empty(), t.bos());
        assertEquals(Set.of(), t.endOfGenerationIds());
    }

    @Test
    void invalidInputsFailClearly() {
        Tokenizer t = new TinyVocab().build();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {256}));
        assertTrue(e.getMessage().contains("256"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> t.tokenText(-1));

        TinyVocab badMerge = new TinyVocab();
        badMerge.merges.add("nospace");
        e = assertThrows(IllegalArgumentException.class, badMerge::build);
        assertTrue(e.getMessage().contains("merge 0") && e.getMessage().contains("nospace"), e.getMessage());

        TinyVocab v = new TinyVocab();
        TokenizerSpec base = v.spec(PreTokenizer.QWEN2);
        e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.create(new TokenizerSpec(base.tokens(),
                base.types(), base.merges(), PreTokenizer.QWEN2, OptionalInt.empty(), OptionalInt.empty(),
                OptionalInt.empty(), true, false)));
        assertTrue(e.getMessage().contains("bos"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> new TokenizerSpec(base.tokens(), List.of(),
                base.merges(), PreTokenizer.QWEN2, OptionalInt.empty(), OptionalInt.empty(), OptionalInt.empty(),
                false, false));
        assertTrue(e.getMessage().contains("256 tokens but 0 token types"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> TokenType.fromCode(7, 12));
    }

    @Test
    void specialIdsOutsideTheVocabularyAreIgnored() {
        TinyVocab v = new TinyVocab();
        TokenizerSpec base = v.spec(PreTokenizer.QWEN2);
        Tokenizer t = Tokenizer.create(new TokenizerSpec(base.tokens(), base.types(), base.merges(), PreTokenizer.QWEN2,
                OptionalInt.of(9999), OptionalInt.of(-1), OptionalInt.empty(), false, false));
        assertEquals(OptionalInt.empty(), t.bos());
        assertEquals(OptionalInt.empty(), t.eos());
        assertEquals(Set.of(), t.endOfGenerationIds());
    }

    static int[] concat(int[]... parts) {
        return java.util.Arrays.stream(parts).flatMapToInt(java.util.Arrays::stream).toArray();
    }
}
