package moe4j.engine;

/** Evaluating tokens would run past the end of a session's context; thrown before any work is done. */
public class ContextOverflowException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final int tokens;
    private final int cached;
    private final int contextLength;

    public ContextOverflowException(int tokens, int cached, int contextLength) {
        super("prompt of " + tokens + " tokens + " + cached + " cached exceeds the context of " + contextLength);
        this.tokens = tokens;
        this.cached = cached;
        this.contextLength = contextLength;
    }

    /** Tokens the caller asked to evaluate. */
    public int tokens() { return tokens; }

    /** Positions already in the session's cache. */
    public int cached() { return cached; }

    public int contextLength() { return contextLength; }
}
