package moe4j.engine.generation;

/** Streams a generation's output as it is produced; both methods run on the generating thread. */
public interface GenerationListener {

    GenerationListener NONE = new GenerationListener() { };

    /** A generated token (stop tokens are not reported). */
    default void onToken(int token) { }

    /**
     * Final text: complete characters, never part of a stop string. Text that might begin a stop
     * string is held back until it is clear that it does not.
     */
    default void onText(String text) { }
}
