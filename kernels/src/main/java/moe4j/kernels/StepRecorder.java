package moe4j.kernels;

/**
 * Runs one decode step: the backend operations that evaluate a single token at one position. A backend
 * may record the operations of the first run and replay the recording for later tokens (a CUDA graph),
 * so the step must issue the same operations on the same buffers every time it runs under the same
 * {@code key}; only the token and the position may change, and every operation must use
 * {@code position} (plus a fixed offset) as its start position and {@code token} as the token it
 * embeds. A step must not read results to the host: read after {@link #run} returns. Not thread-safe:
 * one per session.
 */
public interface StepRecorder extends AutoCloseable {

    /** Runs the step directly each time: backends that have nothing to replay. */
    StepRecorder DIRECT = (key, token, position, step) -> step.run();

    /**
     * Runs {@code step} for {@code token} at {@code position}, or replays its recording under {@code key}
     * (compared with {@code equals}; a new key records anew).
     */
    void run(Object key, int token, int position, Runnable step);

    /** Releases the recording; the default holds none. */
    @Override
    default void close() {}
}
