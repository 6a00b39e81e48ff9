package moe4j.engine.tokenizer;

/**
 * Turns generated token ids into text one token at a time. A token may end in the middle of a
 * multi-byte UTF-8 character (e.g. the first two bytes of an emoji); those bytes are held back
 * until the character is complete, so every returned piece is well-formed text. At most three
 * bytes are ever held.
 *
 * <p>Not thread-safe: use one decoder per generation stream.
 */
public final class StreamingDecoder {

    private final Tokenizer tokenizer;
    private final boolean renderSpecial;
    private final ByteSink pending = new ByteSink();

    StreamingDecoder(Tokenizer tokenizer, boolean renderSpecial) {
        this.tokenizer = tokenizer;
        this.renderSpecial = renderSpecial;
    }

    /** Adds one token; returns the text completed by it (possibly empty). */
    public String accept(int id) {
        tokenizer.appendPiece(id, renderSpecial, pending);
        int complete = completePrefixLength();
        String text = pending.toString(complete);
        pending.discard(complete);
        return text;
    }

    /** Returns whatever is still held (an unfinished character becomes U+FFFD) and resets. */
    public String flush() {
        String text = pending.toString(pending.size());
        pending.discard(pending.size());
        return text;
    }

    /** True when bytes of an unfinished character are being held. */
    public boolean hasPending() {
        return pending.size() > 0;
    }

    /**
     * Length of the longest prefix that does not end inside a started multi-byte character. Only
     * a valid lead byte (0xC2-0xF4) followed by fewer continuation bytes than it announces is
     * held; anything malformed is released at once (and decodes to U+FFFD).
     */
    private int completePrefixLength() {
        int size = pending.size();
        for (int back = 1; back <= Math.min(3, size); back++) {
            int b = pending.at(size - back) & 0xFF;
            if ((b & 0xC0) == 0x80) {
                continue; // continuation byte: look further back for its lead
            }
            int expected = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 1;
            return expected > back ? size - back : size;
        }
        return size;
    }
}
