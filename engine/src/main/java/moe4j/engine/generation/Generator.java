package moe4j.engine.generation;

import java.util.Arrays;
import java.util.List;
import java.util.Objects;

import moe4j.engine.Session;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.tokenizer.StreamingDecoder;
import moe4j.engine.tokenizer.Tokenizer;

/**
 * The decode loop: evaluate the prompt, then sample, report and evaluate one token at a time until a
 * stop condition. Token-id based; with a {@link Tokenizer} it also produces text, honours stop strings
 * and stops on the tokenizer's end-of-generation ids.
 *
 * <p>The last sampled token is not evaluated, so afterwards the session holds the prompt and every
 * generated token but the last (as llama.cpp's server leaves it).
 */
public final class Generator {

    private final Session session;
    private final Sampler sampler;
    private final Tokenizer tokenizer;

    /** @param tokenizer may be null: then no text is produced and stop strings are not allowed */
    public Generator(Session session, Sampler sampler, Tokenizer tokenizer) {
        this.session = Objects.requireNonNull(session, "session");
        this.sampler = Objects.requireNonNull(sampler, "sampler");
        this.tokenizer = tokenizer;
    }

    /**
     * Evaluates {@code prompt} after what the session already holds and generates a continuation.
     *
     * @throws moe4j.engine.ContextOverflowException when the prompt does not fit (before any work)
     */
    public GenerationResult generate(int[] prompt, GenerationOptions options, GenerationListener listener) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt must hold at least one token");
        }
        if (tokenizer == null && !options.stopStrings().isEmpty()) {
            throw new IllegalArgumentException("stop strings need a tokenizer");
        }
        float[] logits = new float[session.vocabularySize()];
        session.evaluate(prompt, 0, prompt.length, logits);
        for (int t : prompt) {
            sampler.accept(t);
        }
        StreamingDecoder decoder = tokenizer == null ? null : tokenizer.streamingDecoder();
        TextStopper text = new TextStopper(options.stopStrings(), listener);
        int[] generated = new int[Math.min(options.maxTokens(), 1024)];
        int count = 0;
        int[] next = new int[1];
        StopReason reason;
        while (true) {
            if (options.cancellation().isCancelled()) {
                reason = StopReason.CANCELLED;
                break;
            }
            if (count == options.maxTokens()) {
                reason = StopReason.MAX_TOKENS;
                break;
            }
            int token = sampler.sample(logits);
            if (options.stopTokens().contains(token) || (tokenizer != null && tokenizer.isEndOfGeneration(token))) {
                reason = StopReason.END_OF_GENERATION;
                break;
            }
            sampler.accept(token);
            if (count == generated.length) {
                generated = Arrays.copyOf(generated, Math.min(options.maxTokens(), generated.length * 2));
            }
            generated[count++] = token;
            listener.onToken(token);
            if (decoder != null && text.append(decoder.accept(token))) {
                reason = StopReason.STOP_STRING;
                break;
            }
            if (session.remaining() == 0) {
                reason = StopReason.CONTEXT_FULL;
                break;
            }
            next[0] = token;
            session.evaluate(next, 0, 1, logits);
        }
        if (decoder != null && reason != StopReason.STOP_STRING) {
            if (text.append(decoder.flush())) {
                reason = StopReason.STOP_STRING;
            } else {
                text.finish();
            }
        }
        return new GenerationResult(Arrays.copyOf(generated, count), text.text(), reason, prompt.length);
    }

    /** Emits text as it becomes final and detects stop strings, which may span several tokens. */
    private static final class TextStopper {
        private final List<String> stops;
        private final GenerationListener listener;
        private final StringBuilder emitted = new StringBuilder();
        private final StringBuilder pending = new StringBuilder();

        TextStopper(List<String> stops, GenerationListener listener) {
            this.stops = stops;
            this.listener = listener;
        }

        /** Adds a piece; returns true when a stop string has appeared (the text is then cut before it). */
        boolean append(String piece) {
            if (piece.isEmpty()) {
                return false;
            }
            pending.append(piece);
            int cut = -1;
            for (String s : stops) {
                int at = pending.indexOf(s);
                if (at >= 0 && (cut < 0 || at < cut)) {
                    cut = at;
                }
            }
            if (cut >= 0) {
                pending.setLength(cut);
                finish();
                return true;
            }
            int hold = 0;
            for (String s : stops) {
                for (int len = Math.min(s.length() - 1, pending.length()); len > hold; len--) {
                    if (endsWith(pending, s, len)) {
                        hold = len;
                        break;
                    }
                }
            }
            emit(pending.length() - hold);
            return false;
        }

        /** Whether {@code sb} ends with the first {@code len} chars of {@code s}. */
        private static boolean endsWith(StringBuilder sb, String s, int len) {
            int off = sb.length() - len;
            for (int i = 0; i < len; i++) {
                if (sb.charAt(off + i) != s.charAt(i)) {
                    return false;
                }
            }
            return true;
        }

        void finish() {
            emit(pending.length());
        }

        private void emit(int chars) {
            if (chars > 0) {
                String out = pending.substring(0, chars);
                pending.delete(0, chars);
                emitted.append(out);
                listener.onText(out);
            }
        }

        String text() {
            return emitted.toString();
        }
    }
}
