package moe4j.cli;

/**
 * Splits streamed text into reasoning ({@code <think>...</think>}, tags included) and answer, even when
 * a tag arrives split over several pieces: a possible start of a tag is held back until the next piece
 * settles it.
 */
final class ThinkingFilter {

    static final String OPEN = "<think>";
    static final String CLOSE = "</think>";

    /** Receives the text in order, each part marked as reasoning or answer. */
    @FunctionalInterface
    interface Sink {
        void text(String text, boolean thinking);
    }

    private final Sink sink;
    private final StringBuilder pending = new StringBuilder();
    private boolean thinking;

    ThinkingFilter(Sink sink) {
        this.sink = sink;
    }

    void accept(String piece) {
        pending.append(piece);
        while (true) {
            String tag = thinking ? CLOSE : OPEN;
            int at = pending.indexOf(tag);
            if (at < 0) {
                emit(pending.length() - partialTagLength(tag), thinking);
                return;
            }
            if (thinking) {
                emit(at + tag.length(), true);
                thinking = false;
            } else {
                emit(at, false);
                thinking = true;
                emit(tag.length(), true);
            }
        }
    }

    /** Releases what is held back; the next text starts as answer again. */
    void finish() {
        emit(pending.length(), thinking);
        thinking = false;
    }

    /** Length of the longest end of {@code pending} that begins {@code tag}. */
    private int partialTagLength(String tag) {
        for (int len = Math.min(tag.length() - 1, pending.length()); len > 0; len--) {
            if (pending.substring(pending.length() - len).equals(tag.substring(0, len))) {
                return len;
            }
        }
        return 0;
    }

    private void emit(int chars, boolean asThinking) {
        if (chars > 0) {
            String text = pending.substring(0, chars);
            pending.delete(0, chars);
            sink.text(text, asThinking);
        }
    }
}
