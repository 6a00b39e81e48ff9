package moe4j.engine.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Random;
import org.junit.jupiter.api.Test;

class StreamingDecoderTest {

    @Test
    void holdsBytesOfAnUnfinishedCharacter() {
        Tokenizer t = new TinyVocab().build();
        StreamingDecoder d = t.streamingDecoder();
        assertEquals("a", d.accept('a'));
        assertEquals("", d.accept(0xC3));
        assertTrue(d.hasPending());
        assertEquals("é", d.accept(0xA9));
        assertFalse(d.hasPending());
        // a 4-byte emoji fed byte by byte
        assertEquals("", d.accept(0xF0));
        assertEquals("", d.accept(0x9F));
        assertEquals("", d.accept(0x98));
        assertEquals("😀", d.accept(0x80));
    }

    @Test
    void releasesCompleteTextBeforeAnUnfinishedTail() {
        TinyVocab v = new TinyVocab();
        int aLead = v.merge("a", "ð"); // 'a' then 0xF0, the lead byte of a 4-byte character
        int tail = v.merge("Ł", "ĺ");  // 0x9F 0x98: two continuation bytes
        Tokenizer t = v.build();
        StreamingDecoder d = t.streamingDecoder();
        assertEquals("a", d.accept(aLead));
        assertEquals("", d.accept(tail));
        assertEquals("😀b", d.accept(0x80) + d.accept('b'));
    }

    @Test
    void malformedBytesAreReleasedAtOnce() {
        Tokenizer t = new TinyVocab().build();
        StreamingDecoder d = t.streamingDecoder();
        assertEquals("\uFFFD", d.accept(0x80)); // a continuation byte with no lead
        assertEquals("\uFFFD", d.accept(0xFF)); // never valid in UTF-8
        assertFalse(d.hasPending());
    }

    @Test
    void flushReleasesAnUnfinishedCharacterAsReplacement() {
        Tokenizer t = new TinyVocab().build();
        StreamingDecoder d = t.streamingDecoder();
        assertEquals("x", d.accept('x') + d.accept(0xE2) + d.accept(0x82));
        assertEquals("\uFFFD", d.flush());
        assertFalse(d.hasPending());
        assertEquals("", d.flush());
        assertEquals("y", d.accept('y'));
    }

    @Test
    void rendersSpecialTokensOnlyWhenAsked() {
        TinyVocab v = new TinyVocab();
        int imEnd = v.add("<|im_end|>", TokenType.CONTROL);
        int think = v.add("<think>", TokenType.USER_DEFINED);
        Tokenizer t = v.build();
        assertEquals("<think>", t.streamingDecoder().accept(think) + t.streamingDecoder().accept(imEnd));
        assertEquals("<|im_end|>", t.streamingDecoder(true).accept(imEnd));
    }

    @Test
    void piecesConcatenateToTheFullDecodeAndAreWellFormed() {
        TinyVocab v = new TinyVocab();
        v.merge("ä", "¸");   // E4 B8: first two bytes of many CJK characters
        v.merge("ð", "Ł");   // F0 9F: first two bytes of many emoji
        v.merge("Ġ", "ð");
        Tokenizer t = v.build();
        Random random = new Random(11);
        for (int round = 0; round < 200; round++) {
            String text = TokenizerTest.randomText(random, 30);
            int[] ids = t.encode(text, false, false);
            StreamingDecoder d = t.streamingDecoder();
            StringBuilder streamed = new StringBuilder();
            for (int id : ids) {
                String piece = d.accept(id);
                assertFalse(piece.contains("\uFFFD") && !text.contains("\uFFFD"), piece);
                streamed.append(piece);
            }
            streamed.append(d.flush());
            assertEquals(text, streamed.toString());
        }
    }
}
