package moe4j.kernels;

import moe4j.gguf.GgufTensor;

/**
 * A compute device as the model graph sees it. The graph binds weights once, allocates activation
 * buffers and caches through the backend, and then only calls operations; it never learns where a
 * tensor lives. Every operation works on the first {@code n} rows (tokens) of its buffers, so a batch
 * of prompt tokens and a single decoded token take the same path. Buffers passed to one operation
 * must come from this backend.
 *
 * <p>Implementations are thread-safe: several sessions may call operations concurrently.
 */
public interface Backend extends AutoCloseable {

    /** Human-readable description, e.g. {@code cpu (8 threads)}. */
    String description();

    /**
     * Makes a tensor usable by this backend (a matrix, an expert stack or a vector) without copying
     * large weights.
     *
     * @throws moe4j.kernels.quant.UnsupportedTensorTypeException when the backend cannot compute with its type
     */
    Weight bind(GgufTensor tensor);

    /**
     * {@code tensor} as a weight that is only read a row at a time ({@link #embed}: token embeddings), never
     * multiplied: a backend that rearranges weights for its products may leave this one as the file has it.
     */
    default Weight bindForLookup(GgufTensor tensor) {
        return bind(tensor);
    }

    /** Bytes of the weights bound so far that this backend holds rearranged in memory of its own (host RAM). */
    default long repackedBytes() {
        return 0;
    }

    /** A buffer of {@code capacity} rows of {@code width} floats, zero-filled. */
    Activations allocate(int capacity, int width);

    /** Routing scratch for batches of up to {@code capacity} tokens, {@code k} of {@code experts} experts each. */
    ExpertRouting allocateRouting(int experts, int k, int capacity);

    /**
     * A key/value cache for {@code contextLength} positions of {@code layers} layers, {@code kvHeads} heads of
     * {@code headDim} values each per position (the backend may lay a head's positions out together).
     */
    KvCache allocateKvCache(int layers, int contextLength, int kvHeads, int headDim, KvCacheType type);

    /**
     * Memory for weights copied in on demand, {@code bytes} large ({@link #stage}): what a GPU computes with when
     * a large batch runs a layer whose weights live in system RAM. {@link StagingArea#NONE} for a backend that
     * reads weights where they lie.
     */
    default StagingArea allocateStaging(long bytes) {
        return StagingArea.NONE;
    }

    /** Bytes of a staging area that {@link #stage} takes for {@code tensor} (0 where weights are read in place). */
    default long stagedBytes(GgufTensor tensor) {
        return 0;
    }

    /**
     * Starts a new set of weights in {@code area} ({@link #stage}): returns once no operation enqueued before that
     * may read what {@code area} held is still running. A backend may let the copy overlap operations that read
     * another area, so that taking two areas in turn hides the copies behind the computation.
     */
    default void beginStaging(StagingArea area) {}

    /**
     * {@code tensor} as a weight of this backend, its data copied into {@code area} from byte {@code offset}, after
     * {@link #beginStaging} on {@code area} (and no other area since); valid until {@code area} is begun again. A
     * backend that reads weights where they lie binds the tensor ({@link #bind}).
     */
    default Weight stage(GgufTensor tensor, StagingArea area, long offset) {
        return bind(tensor);
    }

    /** Copies {@code dst.width()} floats from the host into row {@code row} of {@code dst}. */
    void write(float[] src, int srcOffset, Activations dst, int row);

    /** Copies row {@code row} of {@code src} to the host. */
    void read(Activations src, int row, float[] dst, int dstOffset);

    /**
     * Copies {@code n} rows from the host, {@code dst.width()} floats each, packed from {@code srcOffset}, into rows
     * {@code [row, row + n)} of {@code dst}; a backend may move them in one transfer.
     */
    default void writeRows(float[] src, int srcOffset, Activations dst, int row, int n) {
        for (int i = 0; i < n; i++) {
            write(src, srcOffset + i * dst.width(), dst, row + i);
        }
    }

    /**
     * Copies rows {@code [row, row + n)} of {@code src} to the host, packed; a backend may move them in one
     * transfer.
     */
    default void readRows(Activations src, int row, int n, float[] dst, int dstOffset) {
        for (int i = 0; i < n; i++) {
            read(src, row + i, dst, dstOffset + i * src.width());
        }
    }

    /** Copies rows {@code [srcRow, srcRow + n)} of {@code src} to rows {@code [dstRow, dstRow + n)} of {@code dst}. */
    void copyRows(Activations src, int srcRow, Activations dst, int dstRow, int n);

    /** {@code out[i] = table row tokens[offset + i]} (embedding lookup). */
    void embed(Weight table, int[] tokens, int offset, int n, Activations out);

    /** {@code out[i][r] = dot(w row r, x[i])}; {@code w} must be a single matrix. */
    void matmul(Weight w, Activations x, Activations out, int n);

    /**
     * {@link #matmul} of one input by three matrices (a layer's query, key and value projections):
     * {@code out0 = w0 x}, {@code out1 = w1 x}, {@code out2 = w2 x}; a backend may run them as one pass.
     */
    default void matmul3(Weight w0, Activations out0, Weight w1, Activations out1, Weight w2, Activations out2,
                         Activations x, int n) {
        matmul(w0, x, out0, n);
        matmul(w1, x, out1, n);
        matmul(w2, x, out2, n);
    }

    /**
     * RMS normalization of each group of {@code gain.rowLength()} consecutive values of each row
     * (a whole row, or each head), scaled element-wise by {@code gain}. {@code out} may be {@code x}.
     */
    void rmsNorm(Activations x, Weight gain, float eps, Activations out, int n);

    /** Rotates each of the {@code heads} heads of every row in place; row {@code i} is at position {@code startPos + i}. */
    void rope(Activations x, int heads, Rope rope, int startPos, int n);

    /** Stores keys and values of rows {@code 0..n-1} at positions {@code startPos..startPos+n-1} of {@code layer}. */
    void storeKv(KvCache cache, int layer, Activations k, Activations v, int startPos, int n);

    /**
     * Causal attention of query row {@code i} (at position {@code startPos + i}) over cached positions
     * {@code 0..startPos+i} of {@code layer}; heads concatenated into {@code out}.
     */
    void attention(Activations q, KvCache cache, int layer, AttentionShape shape, int startPos, int n,
                   Activations out);

    /** {@code acc += x}. */
    void add(Activations acc, Activations x, int n);

    /** {@code acc += x}, then {@link #rmsNorm} of {@code acc} into {@code out}; a backend may fuse the two. */
    default void addRmsNorm(Activations acc, Activations x, Weight gain, float eps, Activations out, int n) {
        add(acc, x, n);
        rmsNorm(acc, gain, eps, out, n);
    }

    /** {@link #rmsNorm} of {@code x} in place, then {@link #rope}; a backend may fuse the two. */
    default void rmsNormRope(Activations x, Weight gain, float eps, int heads, Rope rope, int startPos, int n) {
        rmsNorm(x, gain, eps, x, n);
        rope(x, heads, rope, startPos, n);
    }

    /**
     * The attention inputs of {@code n} rows at positions {@code startPos ..}: {@link #rmsNormRope} of the
     * queries ({@code heads} heads) and of the keys ({@code kvHeads}), then {@link #storeKv} of the keys and
     * values into {@code layer} of the cache; a backend may fuse them.
     */
    default void normRopeStoreKv(Activations q, Weight qNorm, Activations k, Weight kNorm, Activations v, float eps,
                                 int heads, int kvHeads, Rope rope, KvCache cache, int layer, int startPos, int n) {
        rmsNormRope(q, qNorm, eps, heads, rope, startPos, n);
        rmsNormRope(k, kNorm, eps, kvHeads, rope, startPos, n);
        storeKv(cache, layer, k, v, startPos, n);
    }

    /** {@code gate = silu(gate) * up}. */
    void siluMul(Activations gate, Activations up, int n);

    /**
     * Mixture-of-experts routing: softmax of each row of {@code logits} over all experts, the
     * {@code routing.k()} most probable experts in descending order, their probabilities renormalized
     * to sum to 1 (sum clamped below at 2^-14), stored in {@code routing}, which must come from
     * {@link #allocateRouting} of this backend.
     */
    void routeSoftmaxTopK(Activations logits, int n, ExpertRouting routing);

    /**
     * The router's product {@code logits = router x}, then {@link #routeSoftmaxTopK} of the logits; a backend
     * may fuse the two.
     */
    default void route(Weight router, Activations x, Activations logits, int n, ExpertRouting routing) {
        matmul(router, x, logits, n);
        routeSoftmaxTopK(logits, n, routing);
    }

    /**
     * SwiGLU experts: for every assignment of {@code routing} (token {@code t}, slot {@code s}, expert
     * {@code e}), {@code y = down_e · (silu(gate_e · x_t) * (up_e · x_t))}, then
     * {@code out[t] = y_0 * weight_0 + y_1 * weight_1 + ...} in slot order. Each selected expert's
     * weights are read once for all its tokens.
     */
    void experts(Weight gate, Weight up, Weight down, Activations x, ExpertRouting routing, ExpertBuffers buffers,
                 Activations out, int n);

    /** A recorder for one session's decode steps; the default runs each step directly. */
    default StepRecorder stepRecorder() {
        return StepRecorder.DIRECT;
    }

    @Override
    void close();
}
