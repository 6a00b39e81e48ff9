package moe4j.kernels;

/**
 * Memory of a backend that weights are copied into on demand ({@link Backend#stage}): device memory on a GPU;
 * nothing for a backend that reads weights where they lie. Closing it returns the memory; the weights staged
 * into it are then unusable.
 */
public interface StagingArea extends AutoCloseable {

    /** The area of a backend that needs none. */
    StagingArea NONE = new StagingArea() {
        @Override
        public long bytes() { return 0; }

        @Override
        public void close() { }
    };

    /** Its size. */
    long bytes();

    @Override
    void close();
}
