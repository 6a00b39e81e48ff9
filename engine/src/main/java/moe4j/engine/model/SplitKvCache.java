package moe4j.engine.model;

import java.util.Arrays;
import java.util.Objects;

import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;

/**
 * A session's KV cache when the layers' attention runs on several backends: one cache per backend holding the
 * layers whose attention runs there (numbered within it), none where no attention runs.
 */
final class SplitKvCache implements KvCache {

    private final KvCache[] parts;
    private final int layers;
    private final int contextLength;
    private final int kvDim;
    private final KvCacheType type;

    /** @param parts per backend its cache, or null */
    SplitKvCache(KvCache[] parts, int layers, int contextLength, int kvDim, KvCacheType type) {
        this.parts = parts.clone();
        this.layers = layers;
        this.contextLength = contextLength;
        this.kvDim = kvDim;
        this.type = Objects.requireNonNull(type, "type");
    }

    /** The cache of backend {@code backend}. */
    KvCache part(int backend) {
        KvCache p = parts[backend];
        if (p == null) {
            throw new IllegalStateException("no KV cache on backend " + backend + ": no attention runs there");
        }
        return p;
    }

    @Override
    public int layers() { return layers; }

    @Override
    public int contextLength() { return contextLength; }

    @Override
    public int kvDim() { return kvDim; }

    @Override
    public KvCacheType type() { return type; }

    @Override
    public long byteSize() {
        return Arrays.stream(parts).filter(Objects::nonNull).mapToLong(KvCache::byteSize).sum();
    }

    @Override
    public void close() {
        for (KvCache p : parts) {
            if (p != null) {
                p.close();
            }
        }
    }
}
