package moe4j.engine.testmodel;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class TestVocabularyTest {

    @Test
    void byteSymbolsFollowTheGpt2MapAndOrder() {
        TestVocabulary v = TestVocabulary.build(515);
        // landmarks of the Qwen vocabulary (tokenizer-and-chat.md 2)
        assertEquals("!", v.tokens().get(0));
        assertEquals(",", v.tokens().get(11));
        assertEquals("\u010A", v.tokens().get(198));
        assertEquals("\u0120", v.tokens().get(220));
        String[] symbols = TestVocabulary.byteSymbols();
        assertEquals("\u0100", symbols[0x00]);
        assertEquals("\u0121", symbols[0x7F]);
        assertEquals("\u0143", symbols[0xAD]);
        assertEquals("A", symbols['A']);
        assertEquals(256, new HashSet<>(List.of(symbols)).size());
    }

    @ParameterizedTest
    @ValueSource(ints = {259, 515, 4096, 151936})
    void everyMergeJoinsTwoEarlierTokensIntoALaterOne(int size) {
        TestVocabulary v = TestVocabulary.build(size);
        assertEquals(size, v.size());
        assertEquals(size - 259, v.merges().size());
        assertEquals(size, new HashSet<>(v.tokens()).size(), "duplicate tokens");
        Map<String, Integer> id = new HashMap<>();
        for (int i = 0; i < size; i++) {
            id.put(v.tokens().get(i), i);
        }
        for (String merge : v.merges()) {
            String[] parts = merge.split(" ");
            assertEquals(2, parts.length, merge);
            Integer merged = id.get(parts[0] + parts[1]);
            assertTrue(merged != null && merged >= 256 && merged < size - 3, merge);
            assertTrue(id.get(parts[0]) < merged && id.get(parts[1]) < merged, merge);
        }
        int[] types = v.tokenTypes();
        for (int i = 0; i < size; i++) {
            assertEquals(i >= size - 3 ? TestVocabulary.CONTROL : TestVocabulary.NORMAL, types[i]);
        }
        assertEquals(List.of("<|endoftext|>", "<|im_start|>", "<|im_end|>"), v.tokens().subList(size - 3, size));
        assertEquals(size - 1, v.imEndId());
    }

    @Test
    void learnedMergesComeFromEnglishText() {
        TestVocabulary v = TestVocabulary.build(515);
        assertTrue(v.tokens().contains("\u0120the"), "' the' should be one token");
        assertTrue(v.merges().indexOf("\u0120 t") < 10, "' t' is among the most frequent pairs");
    }

    @Test
    void isDeterministicAndRejectsTooSmallSizes() {
        assertEquals(TestVocabulary.build(2000).merges(), TestVocabulary.build(2000).merges());
        assertThrows(IllegalArgumentException.class, () -> TestVocabulary.build(258));
    }
}
