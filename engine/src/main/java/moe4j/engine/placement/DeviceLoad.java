package moe4j.engine.placement;

import java.util.List;
import java.util.Objects;

/**
 * What a placement puts on one device.
 *
 * @param device             the device
 * @param weightsBytes       weights stored there (a tied LM head placed away from the embedding counts twice)
 * @param kvBytes            KV cache of the layers whose attention runs there
 * @param scratchBytes       activation buffers for a batch (estimate: the engine's workspace buffers)
 * @param marginBytes        memory kept free
 * @param weightsReadPerToken weight bytes a token reads there at batch 1 (its experts' slices only)
 * @param kvBytesPerPosition KV cache bytes per cached position (what attention reads per position per token)
 * @param attentionLayers    layers whose attention block (attention norm, projections, Q/K norms) and KV cache are
 *                           there
 * @param expertLayers       MoE layers whose feed-forward block (FFN norm, router, experts) is there
 * @param globals            global tensors there ({@code token_embd.weight}, {@code output.weight}...)
 */
public record DeviceLoad(DeviceSpec device, long weightsBytes, long kvBytes, long scratchBytes, long marginBytes,
                         long weightsReadPerToken, long kvBytesPerPosition, List<Integer> attentionLayers,
                         List<Integer> expertLayers, List<String> globals) {

    public DeviceLoad {
        Objects.requireNonNull(device, "device");
        attentionLayers = List.copyOf(attentionLayers);
        expertLayers = List.copyOf(expertLayers);
        globals = List.copyOf(globals);
    }

    /** Weights, KV cache and scratch. */
    public long totalBytes() { return weightsBytes + kvBytes + scratchBytes; }

    /** Capacity less the margin (0 when the margin is larger). */
    public long usableBytes() { return Math.max(0, device.capacityBytes() - marginBytes); }

    /** Usable memory left; negative when the device is short. */
    public long freeBytes() { return usableBytes() - totalBytes(); }

    public boolean fits() { return freeBytes() >= 0; }

    public boolean isEmpty() { return totalBytes() == 0 && globals.isEmpty(); }

    /** Seconds one token's reads take at peak bandwidth with {@code cachedPositions} positions in the cache. */
    public double readSecondsPerToken(long cachedPositions) {
        return (weightsReadPerToken + (double) kvBytesPerPosition * cachedPositions) / (device.memoryGBps() * 1e9);
    }
}
