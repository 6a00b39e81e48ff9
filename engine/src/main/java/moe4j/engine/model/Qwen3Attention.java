package moe4j.engine.model;

import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCache;
import moe4j.kernels.Rope;
import moe4j.kernels.Weight;

/**
 * Qwen3's attention block: separate Q/K/V projections, per-head RMSNorm of queries and keys before
 * RoPE, causal grouped-query attention over the KV cache, output projection.
 */
final class Qwen3Attention {

    private final Backend backend;
    private final int layer;
    private final Weight wq;
    private final Weight wk;
    private final Weight wv;
    private final Weight wo;
    private final Weight qNorm;
    private final Weight kNorm;
    private final float eps;
    private final Rope rope;
    private final AttentionShape shape;

    Qwen3Attention(Backend backend, int layer, Weight wq, Weight wk, Weight wv, Weight wo, Weight qNorm, Weight kNorm,
                   float eps, Rope rope, AttentionShape shape) {
        this.backend = backend;
        this.layer = layer;
        this.wq = wq;
        this.wk = wk;
        this.wv = wv;
        this.wo = wo;
        this.qNorm = qNorm;
        this.kNorm = kNorm;
        this.eps = eps;
        this.rope = rope;
        this.shape = shape;
    }

    void reserve(Workspace ws) {
        ws.buffer("attn.q", shape.qDim());
        ws.buffer("attn.k", shape.kvDim());
        ws.buffer("attn.v", shape.kvDim());
        ws.buffer("attn.out", shape.qDim());
    }

    /** {@code out = attention(in)} for rows at positions {@code startPos ..}; appends their keys and values to the cache. */
    void forward(Activations in, Activations out, int n, int startPos, KvCache cache, Workspace ws) {
        Activations q = ws.buffer("attn.q", shape.qDim());
        Activations k = ws.buffer("attn.k", shape.kvDim());
        Activations v = ws.buffer("attn.v", shape.kvDim());
        Activations heads = ws.buffer("attn.out", shape.qDim());
        backend.matmul3(wq, q, wk, k, wv, v, in, n);
        backend.normRopeStoreKv(q, qNorm, k, kNorm, v, eps, shape.heads(), shape.kvHeads(), rope, cache, layer,
                startPos, n);
        backend.attention(q, cache, layer, shape, startPos, n, heads);
        backend.matmul(wo, heads, out, n);
    }
}
