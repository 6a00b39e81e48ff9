package moe4j.engine.tokenizer;

import static moe4j.engine.tokenizer.PreTokenizer.GPT2;
import static moe4j.engine.tokenizer.PreTokenizer.LLAMA3;
import static moe4j.engine.tokenizer.PreTokenizer.QWEN2;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** Expected words are derived by hand from the patterns' regex semantics (see {@link PreTokenizer}). */
class PreTokenizerTest {

    private static void assertSplit(PreTokenizer pre, String text, String... words) {
        assertEquals(List.of(words), pre.split(text), () -> pre + " split of '" + text + "'");
    }

    @Test
    void qwen2LettersTakeOneLeadingNonLetter() {
        assertSplit(QWEN2, "Hello world", "Hello", " world");
        assertSplit(QWEN2, "hello!!! world", "hello", "!!!", " world");
        // [^\r\n\p{L}\p{N}]?\p{L}+ : any single non-letter, non-digit, non-newline prefixes letters
        assertSplit(QWEN2, "a\u00A0b", "a", "\u00A0b");
        assertSplit(QWEN2, "x-ray", "x", "-ray");
        // a combining mark is not a letter: alone it is "other", before a letter it is the prefix
        assertSplit(QWEN2, "e\u0301", "e", "\u0301");
        assertSplit(QWEN2, "a\u0301b", "a", "\u0301b");
    }

    @Test
    void qwen2DigitsOnePerWord() {
        assertSplit(QWEN2, "2024", "2", "0", "2", "4");
        assertSplit(QWEN2, "I'm 12 cats!!\n\nok", "I", "'m", " ", "1", "2", " cats", "!!\n\n", "ok");
        // \p{N} includes letter numbers and other numbers
        assertSplit(QWEN2, "Ⅻ½²", "Ⅻ", "½", "²");
    }

    @Test
    void qwen2ContractionsAreCaseInsensitive() {
        assertSplit(QWEN2, "HE'S", "HE", "'S");
        assertSplit(QWEN2, "we'Re they'LL", "we", "'Re", " they", "'LL");
        assertSplit(QWEN2, "a'", "a", "'");
        // not a contraction: the apostrophe prefixes the letters
        assertSplit(QWEN2, "'x", "'x");
    }

    @Test
    void qwen2Whitespace() {
        // a run before a word gives up its last space to the word
        assertSplit(QWEN2, "  Hello", " ", " Hello");
        assertSplit(QWEN2, "x  ", "x", "  ");
        // \s*[\r\n]+ : through the last newline of the run
        assertSplit(QWEN2, " \n\n  x", " \n\n", " ", " x");
        assertSplit(QWEN2, "a\r\nb", "a", "\r\n", "b");
        // a tab before letters is the optional prefix
        assertSplit(QWEN2, "\t\tfoo", "\t", "\tfoo");
        // punctuation takes following newlines
        assertSplit(QWEN2, "...\n\nfoo", "...\n\n", "foo");
        assertSplit(QWEN2, " !!", " !!");
        assertSplit(QWEN2, " ", " ");
    }

    @Test
    void llama3GroupsDigitsByThree() {
        assertSplit(LLAMA3, "2024", "202", "4");
        assertSplit(LLAMA3, "1234567", "123", "456", "7");
        assertSplit(LLAMA3, "x 12 y", "x", " ", "12", " y");
        assertSplit(LLAMA3, "Ⅻ½²", "Ⅻ½²");
    }

    @Test
    void llama3ContractionsAreCaseInsensitive() {
        assertSplit(LLAMA3, "WE'RE", "WE", "'RE");
        assertSplit(LLAMA3, "I'LL i'Ve", "I", "'LL", " i", "'Ve");
        assertSplit(LLAMA3, "Don'T", "Don", "'T");
    }

    @Test
    void llama3SharesTheQwen2RulesOtherwise() {
        assertSplit(LLAMA3, " \n\n  x", " \n\n", " ", " x");
        assertSplit(LLAMA3, " 🦙🦙", " 🦙🦙");
        assertSplit(LLAMA3, "a\u0301b", "a", "\u0301b");
    }

    @Test
    void gpt2Rules() {
        assertSplit(GPT2, "Hello  world", "Hello", " ", " world");
        assertSplit(GPT2, "abc 2024def", "abc", " 2024", "def");
        assertSplit(GPT2, "we're", "we", "'re");
        // case-sensitive contractions: "'" and "RE" are separate words
        assertSplit(GPT2, "WE'RE", "WE", "'", "RE");
        // no optional prefix other than one space
        assertSplit(GPT2, "\t\tfoo", "\t", "\t", "foo");
        assertSplit(GPT2, "a\u00A0b", "a", "\u00A0", "b");
        // \s+(?!\S) splits off the run but its last code point, which (not being a space) then stands alone
        assertSplit(GPT2, "hi!!\n\nyo", "hi", "!!", "\n", "\n", "yo");
        assertSplit(GPT2, "Ⅻ½²", "Ⅻ½²");
        assertSplit(GPT2, " ", " ");
    }

    @Test
    void wordsAlwaysCoverTheInput() {
        Random random = new Random(42);
        int[] alphabet = {'a', 'Z', ' ', '\n', '\r', '\t', '\'', 's', '1', '!', 0xA0, 0x301, 0x4E2D, 0x1F600, 0x3000, 0xB2};
        for (int round = 0; round < 500; round++) {
            StringBuilder sb = new StringBuilder();
            for (int i = random.nextInt(20); i > 0; i--) {
                sb.appendCodePoint(alphabet[random.nextInt(alphabet.length)]);
            }
            String text = sb.toString();
            for (PreTokenizer pre : PreTokenizer.values()) {
                List<String> words = pre.split(text);
                assertEquals(text, String.join("", words), () -> pre + " " + text);
                assertFalse(words.contains(""), () -> pre + " produced an empty word for " + text);
            }
        }
    }

    @Test
    void ggufNamesAndAliases() {
        assertSame(QWEN2, PreTokenizer.forGgufName("qwen2"));
        assertSame(QWEN2, PreTokenizer.forGgufName("deepseek-r1-qwen"));
        assertSame(LLAMA3, PreTokenizer.forGgufName("llama-bpe"));
        assertSame(LLAMA3, PreTokenizer.forGgufName("llama3"));
        assertSame(GPT2, PreTokenizer.forGgufName("gpt-2"));
        assertTrue(LLAMA3.ignoreMerges());
        assertFalse(QWEN2.ignoreMerges());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> PreTokenizer.forGgufName("qwen35"));
        assertTrue(e.getMessage().contains("'qwen35'") && e.getMessage().contains("qwen2"), e.getMessage());
    }
}
