package moe4j.engine;

import java.util.List;
import java.util.Objects;
import java.util.Optional;

import moe4j.kernels.KvCacheType;
import moe4j.kernels.cuda.CudaDevices;
import moe4j.kernels.cuda.CudaUnavailableException;

/**
 * How to load a model and size its sessions.
 *
 * @param threads       CPU worker threads; 0 = one per available processor
 * @param kvCacheType   storage type of each session's key/value cache
 * @param contextLength positions per session; 0 = the model's training context, capped at {@link #DEFAULT_CONTEXT_CAP}
 * @param batchSize     tokens evaluated per step when processing a prompt
 * @param listener      progress while binding tensors
 * @param device        where the model runs (its weights, caches and computation) when {@code placement} asks for a
 *                      single device
 * @param placement     how to spread the model over several devices; {@link PlacementOptions#NONE} = on {@code device}
 * @param inMemory      read the file into memory instead of mapping it
 * @param repack        let the CPU backend repack the weights it multiplies into its own faster layout (Q4_K rows
 *                      in groups of 16, as llama.cpp does): their size again in memory, the mapped file's pages
 *                      then unused
 */
public record LoadOptions(int threads, KvCacheType kvCacheType, int contextLength, int batchSize, LoadListener listener,
                          Device device, PlacementOptions placement, boolean inMemory,
                          boolean repack) {

    /** Cap of the default context, so a session's cache does not silently take many gigabytes. */
    public static final int DEFAULT_CONTEXT_CAP = 4096;

    public static final int DEFAULT_BATCH_SIZE = 256;

    public LoadOptions {
        Objects.requireNonNull(kvCacheType, "kvCacheType");
        Objects.requireNonNull(listener, "listener");
        Objects.requireNonNull(device, "device");
        Objects.requireNonNull(placement, "placement");
        if (threads < 0) {
            throw new IllegalArgumentException("threads must be 0 (all processors) or positive, got " + threads);
        }
        if (contextLength < 0) {
            throw new IllegalArgumentException("context length must be 0 (model default) or positive, got " + contextLength);
        }
        if (batchSize <= 0) {
            throw new IllegalArgumentException("batch size must be positive, got " + batchSize);
        }
    }

    /** The CPU with all processors, F16 cache, default context and batch, no progress reports, weights repacked. */
    public static LoadOptions defaults() {
        return new LoadOptions(0, KvCacheType.F16, 0, DEFAULT_BATCH_SIZE, LoadListener.NONE, Device.CPU,
                PlacementOptions.NONE, false, true);
    }

    public LoadOptions withThreads(int threads) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withKvCacheType(KvCacheType type) {
        return new LoadOptions(threads, type, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withContextLength(int contextLength) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withBatchSize(int batchSize) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withListener(LoadListener listener) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withDevice(Device device) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    public LoadOptions withPlacement(PlacementOptions placement) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    /**
     * With {@code true}, {@link Model#load(java.nio.file.Path, LoadOptions)} reads the file into memory instead of
     * mapping it (llama.cpp's {@code --no-mmap}; see {@link moe4j.gguf.GgufFile#open(java.nio.file.Path, boolean)}).
     */
    public LoadOptions withInMemory(boolean inMemory) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    /** With {@code false}, the CPU backend multiplies every weight as the file holds it (llama.cpp's {@code --no-repack}). */
    public LoadOptions withRepack(boolean repack) {
        return new LoadOptions(threads, kvCacheType, contextLength, batchSize, listener, device, placement, inMemory, repack);
    }

    /** The thread count to use: {@link #threads()} or the number of available processors. */
    public int effectiveThreads() {
        return threads > 0 ? threads : Runtime.getRuntime().availableProcessors();
    }

    /** The devices the model is placed on: {@code placement}'s list, or {@code device} alone where it lists none. */
    public List<Device> devices() {
        return placement.devices().isEmpty() ? List.of(device) : placement.devices();
    }

    /**
     * Fails, saying why, when these options ask for a GPU and CUDA cannot be used on this machine: for callers that
     * build a model in memory first (minutes for tens of gigabytes) and would otherwise learn it only after.
     *
     * @throws CudaUnavailableException naming the reason
     */
    public void requireUsableDevices() {
        if (devices().stream().anyMatch(d -> d.kind() == Device.Kind.CUDA)) {
            Optional<String> reason = CudaDevices.unavailableReason();
            if (reason.isPresent()) {
                throw new CudaUnavailableException(reason.get());
            }
        }
    }
}
