package moe4j.engine.generation;

/** Why a generation ended. */
public enum StopReason {
    /** The model produced an end-of-generation token (or one of the caller's stop tokens). */
    END_OF_GENERATION,
    /** The text contained one of the stop strings. */
    STOP_STRING,
    /** The token limit was reached. */
    MAX_TOKENS,
    /** The cancellation token was set. */
    CANCELLED,
    /** The session's context is full. */
    CONTEXT_FULL
}
