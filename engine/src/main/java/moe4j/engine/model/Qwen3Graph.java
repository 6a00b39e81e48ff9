package moe4j.engine.model;

import moe4j.engine.LoadListener;
import moe4j.engine.ModelConfig;
import moe4j.engine.UnsupportedModelException;
import moe4j.gguf.GgufFile;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCache;
import moe4j.kernels.Rope;
import moe4j.kernels.Weight;

/**
 * Qwen3 ({@code qwen3}, dense SwiGLU FFN) and Qwen3-MoE ({@code qwen3moe}, every layer a mixture of
 * experts): pre-norm transformer blocks with {@link Qwen3Attention}, NEOX RoPE, final RMSNorm and an
 * LM head that is {@code token_embd} when the file has no {@code output.weight}.
 */
public final class Qwen3Graph implements ModelGraph {

    /** Output rows whose logits are computed together; bounds the logits buffer. */
    private static final int HEAD_ROWS = 32;

    private record Layer(Weight attnNorm, Qwen3Attention attention, Weight ffnNorm, FeedForward ffn) {}

    private final ModelConfig config;
    private final Backend backend;
    private final Weight tokenEmbedding;
    private final Weight outputNorm;
    private final Weight output;
    private final Layer[] layers;

    private Qwen3Graph(ModelConfig config, Backend backend, Weight tokenEmbedding, Weight outputNorm, Weight output,
                       Layer[] layers) {
        this.config = config;
        this.backend = backend;
        this.tokenEmbedding = tokenEmbedding;
        this.outputNorm = outputNorm;
        this.output = output;
        this.layers = layers;
    }

    /** Binds the weights of a {@code qwen3} or {@code qwen3moe} file to {@code backend}. */
    public static Qwen3Graph load(ModelConfig c, GgufFile file, Backend backend, LoadListener listener) {
        boolean moe = c.architecture().equals("qwen3moe");
        if (moe != c.isMoe()) {
            throw new UnsupportedModelException(c.architecture() + " model with " + c.experts()
                    + " experts: qwen3moe needs " + c.architecture() + ".expert_count > 0, qwen3 must have none (in "
                    + file.paths().getFirst() + ")");
        }
        if (!moe && c.ffn() <= 0) {
            throw new UnsupportedModelException(c.architecture() + ".feed_forward_length is missing or zero (in "
                    + file.paths().getFirst() + ")");
        }
        int perLayer = moe ? 12 : 11;
        TensorBinder b = new TensorBinder(file, backend, listener, 2 + (c.tiedEmbeddings() ? 0 : 1) + perLayer * c.layers());
        long embd = c.embd();
        Weight tokenEmbedding = b.bind("token_embd.weight", embd, c.vocab());
        Weight outputNorm = b.bind("output_norm.weight", embd);
        Weight output = b.bindOptional("output.weight", embd, c.vocab()).orElse(tokenEmbedding);
        Rope rope = c.rope(Rope.Style.NEOX);
        AttentionShape shape = new AttentionShape(c.heads(), c.kvHeads(), c.headDim(),
                (float) (1.0 / Math.sqrt(c.headDim())));
        Layer[] layers = new Layer[c.layers()];
        for (int i = 0; i < layers.length; i++) {
            String p = "blk." + i + ".";
            Weight attnNorm = b.bind(p + "attn_norm.weight", embd);
            Qwen3Attention attention = new Qwen3Attention(backend, i,
                    b.bind(p + "attn_q.weight", embd, c.qDim()),
                    b.bind(p + "attn_k.weight", embd, c.kvDim()),
                    b.bind(p + "attn_v.weight", embd, c.kvDim()),
                    b.bind(p + "attn_output.weight", c.qDim(), embd),
                    b.bind(p + "attn_q_norm.weight", c.headDim()),
                    b.bind(p + "attn_k_norm.weight", c.headDim()),
                    c.rmsEps(), rope, shape);
            Weight ffnNorm = b.bind(p + "ffn_norm.weight", embd);
            FeedForward ffn = moe
                    ? new MoeFeedForward(backend,
                            b.bind(p + "ffn_gate_inp.weight", embd, c.experts()),
                            b.bind(p + "ffn_gate_exps.weight", embd, c.expertFfn(), c.experts()),
                            b.bind(p + "ffn_up_exps.weight", embd, c.expertFfn(), c.experts()),
                            b.bind(p + "ffn_down_exps.weight", c.expertFfn(), embd, c.experts()),
                            c.expertsUsed())
                    : new DenseFeedForward(backend,
                            b.bind(p + "ffn_gate.weight", embd, c.ffn()),
                            b.bind(p + "ffn_up.weight", embd, c.ffn()),
                            b.bind(p + "ffn_down.weight", c.ffn(), embd));
            layers[i] = new Layer(attnNorm, attention, ffnNorm, ffn);
        }
        return new Qwen3Graph(c, backend, tokenEmbedding, outputNorm, output, layers);
    }

    @Override
    public ModelConfig config() { return config; }

    @Override
    public Workspace newWorkspace(int capacity) {
        Workspace ws = new Workspace(backend, capacity);
        ws.buffer("hidden", config.embd());
        ws.buffer("normed", config.embd());
        ws.buffer("block.out", config.embd());
        int headRows = Math.min(capacity, HEAD_ROWS);
        ws.buffer("head.in", headRows, config.embd());
        ws.buffer("head.logits", headRows, config.vocab());
        for (Layer l : layers) {
            l.attention.reserve(ws);
            l.ffn.reserve(ws);
        }
        return ws;
    }

    @Override
    public void forward(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws,
                        int firstOutput, float[][] logits, int logitsIndex) {
        run(tokens, offset, n, startPos, cache, ws, firstOutput, logits, logitsIndex, true);
    }

    @Override
    public void forwardHidden(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws,
                              int firstOutput, float[][] hidden, int hiddenIndex) {
        run(tokens, offset, n, startPos, cache, ws, firstOutput, hidden, hiddenIndex, false);
    }

    /** What a recorded decode step depends on besides the token and position. */
    private record StepKey(KvCache cache, boolean output, boolean lmHead) {}

    /** The layers, then the final norm of the output rows and, with {@code lmHead}, their logits. */
    private void run(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws,
                     int firstOutput, float[][] out, int outIndex, boolean lmHead) {
        if (n <= 0 || n > ws.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " tokens is outside 1.." + ws.capacity());
        }
        if (n == 1) {
            // a decode step: the same operations for every token, which the backend may record and replay
            // (a replayed step does not run this code, so the result buffer is named here, not taken from head())
            boolean output = firstOutput == 0;
            ws.stepRecorder().run(new StepKey(cache, output, lmHead), tokens[offset], startPos, () -> {
                layers(tokens, offset, 1, startPos, cache, ws);
                if (output) {
                    head(ws, 0, 1, lmHead);
                }
            });
            if (output) {
                backend.read(headResult(ws, lmHead), 0, out[outIndex], 0);
            }
            return;
        }
        layers(tokens, offset, n, startPos, cache, ws);
        int headRows = Math.min(ws.capacity(), HEAD_ROWS);
        for (int row = firstOutput; row < n; row += headRows) {
            int m = Math.min(headRows, n - row);
            Activations result = head(ws, row, m, lmHead);
            for (int i = 0; i < m; i++) {
                backend.read(result, i, out[outIndex + row - firstOutput + i], 0);
            }
        }
    }

    /** Embeds the tokens and runs every layer; the result is the workspace's {@code hidden} buffer. */
    private void layers(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws) {
        Activations hidden = ws.buffer("hidden", config.embd());
        Activations normed = ws.buffer("normed", config.embd());
        Activations blockOut = ws.buffer("block.out", config.embd());
        backend.embed(tokenEmbedding, tokens, offset, n, hidden);
        if (layers.length > 0) {
            backend.rmsNorm(hidden, layers[0].attnNorm, config.rmsEps(), normed, n);
        }
        for (int i = 0; i < layers.length; i++) {
            Layer l = layers[i];
            l.attention.forward(normed, blockOut, n, startPos, cache, ws);
            backend.addRmsNorm(hidden, blockOut, l.ffnNorm, config.rmsEps(), normed, n);
            l.ffn.forward(normed, blockOut, n, ws);
            if (i + 1 < layers.length) {
                // the residual add and the next layer's attention norm, which a backend may fuse
                backend.addRmsNorm(hidden, blockOut, layers[i + 1].attnNorm, config.rmsEps(), normed, n);
            } else {
                backend.add(hidden, blockOut, n);
            }
        }
    }

    /**
     * The final norm of hidden rows {@code row .. row+m-1} and, with {@code lmHead}, their logits: the
     * buffer holding the result in its first {@code m} rows.
     */
    private Activations head(Workspace ws, int row, int m, boolean lmHead) {
        int headRows = Math.min(ws.capacity(), HEAD_ROWS);
        Activations headIn = ws.buffer("head.in", headRows, config.embd());
        backend.copyRows(ws.buffer("hidden", config.embd()), row, headIn, 0, m);
        backend.rmsNorm(headIn, outputNorm, config.rmsEps(), headIn, m);
        if (lmHead) {
            backend.matmul(output, headIn, headResult(ws, true), m);
        }
        return headResult(ws, lmHead);
    }

    /** The buffer {@link #head} leaves its result in. */
    private Activations headResult(Workspace ws, boolean lmHead) {
        int headRows = Math.min(ws.capacity(), HEAD_ROWS);
        return lmHead ? ws.buffer("head.logits", headRows, config.vocab()) : ws.buffer("head.in", headRows, config.embd());
    }
}
