package moe4j.kernels;

/**
 * Per-session attention key/value storage allocated by a {@link Backend}: for every layer, one key
 * and one value vector of {@link #kvDim()} floats per position, up to {@link #contextLength()}
 * positions. Closing releases the memory.
 */
public interface KvCache extends AutoCloseable {

    int layers();

    int contextLength();

    int kvDim();

    KvCacheType type();

    /** Bytes held by the cache. */
    long byteSize();

    @Override
    void close();
}
