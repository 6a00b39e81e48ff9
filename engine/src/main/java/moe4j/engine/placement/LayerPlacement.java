package moe4j.engine.placement;

/**
 * Where one layer runs.
 *
 * @param layer     block index
 * @param attention device of its attention (and its norms, router and KV cache)
 * @param experts   device of its expert blocks (of the one holding most of their bytes, when a tensor override
 *                  splits them); the attention device for a dense model
 */
public record LayerPlacement(int layer, String attention, String experts) {}
