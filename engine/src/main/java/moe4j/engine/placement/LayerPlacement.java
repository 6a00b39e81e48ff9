package moe4j.engine.placement;

/**
 * Where one layer runs.
 *
 * @param layer     block index
 * @param attention device of its attention block: attention norm, projections, Q/K norms, and its KV cache
 * @param experts   device of its expert blocks; the attention device for a dense model
 * @param ffn       device of its feed-forward block: FFN norm, router and experts (so {@code experts}), or a dense
 *                  model's FFN
 */
public record LayerPlacement(int layer, String attention, String experts, String ffn) {}
