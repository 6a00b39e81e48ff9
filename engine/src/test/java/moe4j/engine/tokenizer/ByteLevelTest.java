package moe4j.engine.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;

class ByteLevelTest {

    @Test
    void landmarksOfTheGpt2Alphabet() {
        assertEquals(0x100, ByteLevel.charOf(0x00));
        assertEquals(0x10A, ByteLevel.charOf('\n'));
        assertEquals(0x10D, ByteLevel.charOf('\r'));
        assertEquals(0x120, ByteLevel.charOf(' '));
        assertEquals(0x121, ByteLevel.charOf(0x7F));
        assertEquals(0x122, ByteLevel.charOf(0x80));
        assertEquals(0x142, ByteLevel.charOf(0xA0));
        assertEquals(0x143, ByteLevel.charOf(0xAD));
        assertEquals('!', ByteLevel.charOf('!'));
        assertEquals('~', ByteLevel.charOf('~'));
        assertEquals(0xA1, ByteLevel.charOf(0xA1));
        assertEquals(0xFF, ByteLevel.charOf(0xFF));
    }

    @Test
    void mapIsABijectionAndInvertible() {
        Set<Character> seen = new HashSet<>();
        for (int b = 0; b < 256; b++) {
            char c = ByteLevel.charOf(b);
            seen.add(c);
            assertEquals(b, ByteLevel.byteOf(c));
        }
        assertEquals(256, seen.size());
        assertEquals(-1, ByteLevel.byteOf(0x144));
        assertEquals(-1, ByteLevel.byteOf(' '));
        assertEquals(-1, ByteLevel.byteOf(0x4E16));
    }

    @Test
    void encodeMapsEachByte() {
        byte[] bytes = "a b\n".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        assertEquals("aĠbĊ", ByteLevel.encode(bytes, 0, bytes.length));
        assertEquals("Ġb", ByteLevel.encode(bytes, 1, 2));
    }
}
