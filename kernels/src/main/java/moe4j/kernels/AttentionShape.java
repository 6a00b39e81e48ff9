package moe4j.kernels;

/**
 * Geometry of grouped-query attention: query head {@code h} reads key/value head
 * {@code h / (heads / kvHeads)}.
 *
 * @param heads    query heads
 * @param kvHeads  key/value heads (divides {@code heads})
 * @param headDim  values per head (keys and values alike)
 * @param scale    multiplier of the query-key dot product, usually {@code 1/sqrt(headDim)}
 */
public record AttentionShape(int heads, int kvHeads, int headDim, float scale) {

    public AttentionShape {
        if (heads <= 0 || kvHeads <= 0 || headDim <= 0 || heads % kvHeads != 0) {
            throw new IllegalArgumentException("invalid attention shape: " + heads + " query heads, " + kvHeads
                    + " key/value heads, head size " + headDim + " (query heads must be a positive multiple of"
                    + " key/value heads)");
        }
    }

    public int qDim() { return heads * headDim; }

    public int kvDim() { return kvHeads * headDim; }
}
