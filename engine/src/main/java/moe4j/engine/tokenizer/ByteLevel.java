package moe4j.engine.tokenizer;

/**
 * The GPT-2 byte-level alphabet: every byte 0..255 stands for one printable code point, so that
 * token texts and merges never contain raw control bytes or real spaces.
 *
 * <p>Bytes that are already printable (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) keep their own value;
 * the remaining 68 are given U+0100, U+0101, ... in increasing byte order (space becomes U+0120).
 */
final class ByteLevel {

    /** Every mapped code point is below this bound, so the inverse table stays small. */
    private static final int MAX_MAPPED = 0x100 + 68;

    private static final char[] CHAR_OF_BYTE = new char[256];
    private static final short[] BYTE_OF_CHAR = new short[MAX_MAPPED];

    static {
        java.util.Arrays.fill(BYTE_OF_CHAR, (short) -1);
        int next = 0x100;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            char c = (char) (printable ? b : next++);
            CHAR_OF_BYTE[b] = c;
            BYTE_OF_CHAR[c] = (short) b;
        }
    }

    private ByteLevel() {
    }

    /** The code point standing for {@code b} (only the low 8 bits are used). */
    static char charOf(int b) {
        return CHAR_OF_BYTE[b & 0xFF];
    }

    /** The byte a code point of a byte-level string stands for, or -1 if it stands for none. */
    static int byteOf(int codePoint) {
        return codePoint >= 0 && codePoint < MAX_MAPPED ? BYTE_OF_CHAR[codePoint] : -1;
    }

    /** The byte-level string of {@code length} bytes starting at {@code offset}. */
    static String encode(byte[] bytes, int offset, int length) {
        char[] chars = new char[length];
        for (int i = 0; i < length; i++) {
            chars[i] = charOf(bytes[offset + i]);
        }
        return new String(chars);
    }
}
