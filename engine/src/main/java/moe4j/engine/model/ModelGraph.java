package moe4j.engine.model;

import moe4j.engine.ModelConfig;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;

/**
 * The forward pass of one architecture with its weights bound. Immutable after loading and shared by
 * all sessions; per-session state lives in the {@link KvCache} and {@link Workspace} passed in.
 */
public interface ModelGraph {

    ModelConfig config();

    /** Allocates a session's working memory for batches of up to {@code capacity} tokens. */
    Workspace newWorkspace(int capacity);

    /** Allocates a session's key/value cache of {@code contextLength} positions, on the backends that run attention. */
    KvCache newKvCache(int contextLength, KvCacheType type);

    /**
     * Evaluates {@code tokens[offset .. offset+n)} at positions {@code startPos ..}, storing their keys
     * and values in {@code cache}. Rows {@code firstOutput .. n-1} of the batch get logits, written to
     * {@code logits[logitsIndex + i - firstOutput]} (each of length vocab); {@code firstOutput == n}
     * computes none.
     */
    void forward(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace workspace,
                 int firstOutput, float[][] logits, int logitsIndex);

    /**
     * As {@link #forward}, but rows {@code firstOutput .. n-1} get the output of the final norm (the
     * hidden state the LM head would read, and what embedding models pool; {@code config().embd()}
     * values each) instead of logits, written to {@code hidden[hiddenIndex + i - firstOutput]}.
     */
    void forwardHidden(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace workspace,
                       int firstOutput, float[][] hidden, int hiddenIndex);
}
