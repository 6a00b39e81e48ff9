package moe4j.kernels;

/**
 * A batch of activation vectors owned by a {@link Backend}: {@link #capacity()} rows of {@link #width()}
 * floats, one row per token. Operations take the number of rows in use, so one buffer serves batches of
 * any size up to its capacity. Where the memory lives (heap, off-heap, device) is the backend's business.
 */
public interface Activations extends AutoCloseable {

    /** Maximum number of rows. */
    int capacity();

    /** Floats per row. */
    int width();

    /** Releases the buffer's memory now rather than when it is no longer referenced (device buffers); idempotent. */
    @Override
    default void close() {}
}
