package moe4j.engine.placement;

import java.util.List;
import java.util.Objects;

import moe4j.engine.LoadOptions;
import moe4j.kernels.KvCacheType;

/**
 * What to plan for and the manual choices that override automatic fitting.
 *
 * @param contextLength positions of the KV cache
 * @param kvType        KV cache storage type
 * @param batchSize     tokens per step of prompt processing, which sizes the activation buffers
 * @param split         share of the GPU-resident layers per GPU, like llama.cpp's {@code --tensor-split 3,1};
 *                      empty = in proportion to the memory each GPU has left for layers
 * @param gpuLayers     how many layers (the last ones) go to the GPUs; {@link #AUTO} = as many as fit
 * @param nCpuMoe       layers (the first ones) whose experts stay in system RAM, like llama.cpp's
 *                      {@code --n-cpu-moe}; {@link #AUTO} = the GPUs take as many expert blocks as fit
 * @param overrides     tensor-name patterns pinned to devices, first match wins; they take precedence over
 *                      everything else
 * @param marginBytes   memory kept free on every device (driver, runtime, fragmentation)
 * @param stageBatch    batches of at least this many tokens run a mixture-of-experts block placed in system RAM
 *                      on its layer's GPU, copied there for the batch: each GPU keeps room for the largest block;
 *                      0 never
 * @param cpuRepack     whether the CPU backends repack the matrices they multiply ({@code LoadOptions#repack()} on a
 *                      machine that runs the repacked kernels), so that system RAM holds
 *                      {@link ModelFootprint.TensorFootprint#repackedBytes()} of them rather than the file's bytes
 */
public record PlanRequest(int contextLength, KvCacheType kvType, int batchSize, List<Double> split, int gpuLayers,
                          int nCpuMoe, List<TensorOverride> overrides, long marginBytes, int stageBatch,
                          boolean cpuRepack) {

    public static final int AUTO = -1;

    /** 512 MiB: a CUDA context and the runtime's own allocations take a few hundred MiB of a GPU. */
    public static final long DEFAULT_MARGIN = 512L << 20;

    /** llama.cpp's threshold for moving a CPU-placed operation's batch to the GPU. */
    public static final int DEFAULT_STAGE_BATCH = 32;

    /**
     * @throws IllegalArgumentException unless {@code stageBatch} is 0 (never) or at least 2: a single token is
     *         computed where its experts lie
     */
    public static void requireStageBatch(int stageBatch) {
        if (stageBatch < 0 || stageBatch == 1) {
            throw new IllegalArgumentException("stageBatch must be 0 (never) or at least 2 (a single token is computed"
                    + " where its experts lie), got " + stageBatch);
        }
    }

    public PlanRequest {
        Objects.requireNonNull(kvType, "kvType");
        split = List.copyOf(split);
        overrides = List.copyOf(overrides);
        if (contextLength <= 0) {
            throw new IllegalArgumentException("context length must be positive, got " + contextLength);
        }
        if (batchSize <= 0) {
            throw new IllegalArgumentException("batch size must be positive, got " + batchSize);
        }
        for (double d : split) {
            if (!(d >= 0) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("split proportions must be finite and not negative, got " + split);
            }
        }
        if (!split.isEmpty() && split.stream().mapToDouble(Double::doubleValue).sum() <= 0) {
            throw new IllegalArgumentException("split proportions must not all be 0, got " + split);
        }
        if (gpuLayers < AUTO || nCpuMoe < AUTO) {
            throw new IllegalArgumentException("gpuLayers and nCpuMoe must be AUTO (-1) or at least 0");
        }
        requireStageBatch(stageBatch);
        if (marginBytes < 0) {
            throw new IllegalArgumentException("margin must not be negative, got " + marginBytes);
        }
    }

    /**
     * Automatic fitting for {@code contextLength} positions: F16 cache, the engine's batch size, default margin, the
     * file's bytes in system RAM (no repacking).
     */
    public static PlanRequest defaults(int contextLength) {
        return new PlanRequest(contextLength, KvCacheType.F16, LoadOptions.DEFAULT_BATCH_SIZE, List.of(), AUTO, AUTO,
                List.of(), DEFAULT_MARGIN, DEFAULT_STAGE_BATCH, false);
    }

    public PlanRequest withContextLength(int n) {
        return new PlanRequest(n, kvType, batchSize, split, gpuLayers, nCpuMoe, overrides, marginBytes, stageBatch,
                cpuRepack);
    }

    public PlanRequest withKvType(KvCacheType t) {
        return new PlanRequest(contextLength, t, batchSize, split, gpuLayers, nCpuMoe, overrides, marginBytes,
                stageBatch, cpuRepack);
    }

    public PlanRequest withBatchSize(int n) {
        return new PlanRequest(contextLength, kvType, n, split, gpuLayers, nCpuMoe, overrides, marginBytes,
                stageBatch, cpuRepack);
    }

    public PlanRequest withSplit(List<Double> proportions) {
        return new PlanRequest(contextLength, kvType, batchSize, proportions, gpuLayers, nCpuMoe, overrides,
                marginBytes, stageBatch, cpuRepack);
    }

    public PlanRequest withGpuLayers(int n) {
        return new PlanRequest(contextLength, kvType, batchSize, split, n, nCpuMoe, overrides, marginBytes,
                stageBatch, cpuRepack);
    }

    public PlanRequest withNCpuMoe(int n) {
        return new PlanRequest(contextLength, kvType, batchSize, split, gpuLayers, n, overrides, marginBytes,
                stageBatch, cpuRepack);
    }

    /** All experts in system RAM, attention on the GPUs: llama.cpp's {@code --cpu-moe}. */
    public PlanRequest withCpuMoe() {
        return withNCpuMoe(Integer.MAX_VALUE);
    }

    public PlanRequest withOverrides(List<TensorOverride> o) {
        return new PlanRequest(contextLength, kvType, batchSize, split, gpuLayers, nCpuMoe, o, marginBytes,
                stageBatch, cpuRepack);
    }

    public PlanRequest withStageBatch(int tokens) {
        return new PlanRequest(contextLength, kvType, batchSize, split, gpuLayers, nCpuMoe, overrides, marginBytes,
                tokens, cpuRepack);
    }

    public PlanRequest withCpuRepack(boolean repack) {
        return new PlanRequest(contextLength, kvType, batchSize, split, gpuLayers, nCpuMoe, overrides, marginBytes,
                stageBatch, repack);
    }

    public PlanRequest withMargin(long bytes) {
        return new PlanRequest(contextLength, kvType, batchSize, split, gpuLayers, nCpuMoe, overrides, bytes,
                stageBatch, cpuRepack);
    }
}
