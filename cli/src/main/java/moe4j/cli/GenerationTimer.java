package moe4j.cli;

import java.util.Locale;

import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.StopReason;

/**
 * Passes a generation's output on and times its two phases: the prompt (until the first token is
 * sampled) and the decoding of the rest.
 */
final class GenerationTimer implements GenerationListener {

    private final GenerationListener target;
    private long start;
    private long firstToken;

    GenerationTimer(GenerationListener target) {
        this.target = target;
    }

    /** Call right before starting the generation. */
    void start() {
        start = System.nanoTime();
        firstToken = 0;
    }

    @Override
    public void onToken(int token) {
        if (firstToken == 0) {
            firstToken = System.nanoTime();
        }
        target.onToken(token);
    }

    @Override
    public void onText(String text) {
        target.onText(text);
    }

    /** Call right after the generation returned. */
    Summary finish(GenerationResult result) {
        long end = System.nanoTime();
        long promptEnd = firstToken != 0 ? firstToken : end;
        return new Summary(result.promptTokens(), (promptEnd - start) / 1e9, result.tokens().length,
                (end - promptEnd) / 1e9, result.stopReason());
    }

    /** Token counts and speeds of one generation, printed as one line. */
    record Summary(int promptTokens, double promptSeconds, int generatedTokens, double generationSeconds,
                   StopReason stopReason) {

        @Override
        public String toString() {
            return "prompt: " + promptTokens + " tokens, " + rate(promptTokens, promptSeconds) + "; generated: "
                    + generatedTokens + " tokens, " + rate(generatedTokens, generationSeconds) + "; stop: "
                    + describe(stopReason);
        }

        private static String rate(int tokens, double seconds) {
            return tokens == 0 || seconds <= 0 ? "- tok/s" : String.format(Locale.ROOT, "%.1f tok/s", tokens / seconds);
        }

        static String describe(StopReason reason) {
            return switch (reason) {
                case END_OF_GENERATION -> "end of text";
                case STOP_STRING -> "stop string";
                case MAX_TOKENS -> "token limit";
                case CANCELLED -> "interrupted";
                case CONTEXT_FULL -> "context full";
            };
        }
    }
}
