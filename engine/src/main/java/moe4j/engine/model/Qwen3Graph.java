package moe4j.engine.model;

import java.util.List;

import moe4j.engine.LoadListener;
import moe4j.engine.ModelConfig;
import moe4j.engine.UnsupportedModelException;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Activations;
import moe4j.kernels.AttentionShape;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCache;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.Rope;
import moe4j.kernels.StagingArea;
import moe4j.kernels.Weight;

/**
 * Qwen3 ({@code qwen3}, dense SwiGLU FFN) and Qwen3-MoE ({@code qwen3moe}, every layer a mixture of
 * experts): pre-norm transformer blocks with {@link Qwen3Attention}, NEOX RoPE, final RMSNorm and an
 * LM head that is {@code token_embd} when the file has no {@code output.weight}.
 *
 * <p>Placed on several backends ({@link BackendAssignment}), each block runs with its norm on its own backend (the
 * FFN norm and the router with the experts), and the residual stream (the {@code hidden} rows) follows it: it is
 * copied from one backend's workspace to the next one's at each change of backend. A session's KV cache is then a
 * {@link SplitKvCache}.
 */
public final class Qwen3Graph implements ModelGraph {

    /** Output rows whose logits are computed together; bounds the logits buffer. */
    private static final int HEAD_ROWS = 32;

    /**
     * A layer; {@code attnBackend} runs its attention norm and attention, {@code ffnBackend} its FFN norm and FFN,
     * except a large batch of a layer with {@code staged} tensors, whose FFN runs on {@code attnBackend}.
     */
    private record Layer(int attnBackend, Weight attnNorm, Qwen3Attention attention, int ffnBackend, Weight ffnNorm,
                         FeedForward ffn, StagedMoe staged) {}

    /**
     * The tensors of a mixture-of-experts block that lies on another backend than its attention, for large batches
     * staged on the attention's backend: FFN norm, router and the three expert stacks, in this order.
     */
    private record StagedMoe(List<GgufTensor> tensors, int expertsUsed) {

        /** Bytes of a staging area of {@code backend} that holds them all. */
        long bytes(Backend backend) {
            return tensors.stream().mapToLong(backend::stagedBytes).sum();
        }

        /** Copies them into {@code area}: the FFN norm and the block, weights of {@code backend} until the next copy. */
        Staged stage(Backend backend, StagingArea area) {
            backend.beginStaging(area);
            Weight[] w = new Weight[tensors.size()];
            long offset = 0;
            for (int i = 0; i < w.length; i++) {
                w[i] = backend.stage(tensors.get(i), area, offset);
                offset += backend.stagedBytes(tensors.get(i));
            }
            return new Staged(w[0], new MoeFeedForward(backend, w[1], w[2], w[3], w[4], expertsUsed));
        }
    }

    private record Staged(Weight ffnNorm, FeedForward ffn) {}

    private final ModelConfig config;
    private final List<Backend> backends;
    /** Backend of the token embedding lookup. */
    private final int embedBackend;
    /** Backend of the final norm and the LM head. */
    private final int headBackend;
    /** Per backend, the layers whose attention (and KV cache) it holds. */
    private final int[] kvLayers;
    private final Weight tokenEmbedding;
    private final Weight outputNorm;
    private final Weight output;
    private final Layer[] layers;
    /**
     * Per backend, the areas its staged blocks are copied into, taken in turn (none where nothing is staged; one where
     * a single layer is): a layer's block is copied into one while the previous layer's computes from the other.
     */
    private final StagingArea[][] staging;
    /** Per backend, the staging area the next staged block takes. */
    private final int[] nextStaging;
    private final int stageBatch;

    private Qwen3Graph(ModelConfig config, BackendAssignment assignment, int[] kvLayers, Weight tokenEmbedding,
                       Weight outputNorm, Weight output, Layer[] layers, StagingArea[][] staging) {
        this.config = config;
        this.backends = assignment.backends();
        this.embedBackend = assignment.embedding();
        this.headBackend = assignment.head();
        this.kvLayers = kvLayers;
        this.tokenEmbedding = tokenEmbedding;
        this.outputNorm = outputNorm;
        this.output = output;
        this.layers = layers;
        this.staging = staging;
        this.nextStaging = new int[staging.length];
        this.stageBatch = assignment.stageBatch();
    }

    /** Binds the weights of a {@code qwen3} or {@code qwen3moe} file to the backends of {@code assignment}. */
    public static Qwen3Graph load(ModelConfig c, GgufFile file, BackendAssignment assignment, LoadListener listener) {
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
        if (assignment.attention().size() != c.layers()) {
            throw new IllegalArgumentException("the backend assignment has " + assignment.attention().size()
                    + " layers, the model " + c.layers());
        }
        List<Backend> backends = assignment.backends();
        Backend embedOn = backends.get(assignment.embedding());
        Backend headOn = backends.get(assignment.head());
        // a tied LM head away from the embedding's backend binds token_embd there too
        boolean headCopy = c.tiedEmbeddings() && headOn != embedOn;
        int perLayer = moe ? 12 : 11;
        TensorBinder b = new TensorBinder(file, listener,
                2 + (c.tiedEmbeddings() && !headCopy ? 0 : 1) + perLayer * c.layers());
        long embd = c.embd();
        // a tied head on the embedding's backend multiplies token_embd too: then it is bound for products
        Weight tokenEmbedding = c.tiedEmbeddings() && !headCopy ? b.bind(embedOn, "token_embd.weight", embd, c.vocab())
                : b.bindForLookup(embedOn, "token_embd.weight", embd, c.vocab());
        Weight outputNorm = b.bind(headOn, "output_norm.weight", embd);
        Weight output = b.bindOptional(headOn, "output.weight", embd, c.vocab())
                .orElseGet(() -> headCopy ? b.bind(headOn, "token_embd.weight", embd, c.vocab()) : tokenEmbedding);
        Rope rope = c.rope(Rope.Style.NEOX);
        AttentionShape shape = new AttentionShape(c.heads(), c.kvHeads(), c.headDim(),
                (float) (1.0 / Math.sqrt(c.headDim())));
        Layer[] layers = new Layer[c.layers()];
        int[] kvLayers = new int[backends.size()];
        for (int i = 0; i < layers.length; i++) {
            String p = "blk." + i + ".";
            int ai = assignment.attention().get(i);
            int fi = assignment.ffn().get(i);
            Backend a = backends.get(ai);
            Backend f = backends.get(fi);
            Weight attnNorm = b.bind(a, p + "attn_norm.weight", embd);
            // the layer's index within the KV cache of its backend
            Qwen3Attention attention = new Qwen3Attention(a, kvLayers[ai]++,
                    b.bind(a, p + "attn_q.weight", embd, c.qDim()),
                    b.bind(a, p + "attn_k.weight", embd, c.kvDim()),
                    b.bind(a, p + "attn_v.weight", embd, c.kvDim()),
                    b.bind(a, p + "attn_output.weight", c.qDim(), embd),
                    b.bind(a, p + "attn_q_norm.weight", c.headDim()),
                    b.bind(a, p + "attn_k_norm.weight", c.headDim()),
                    c.rmsEps(), rope, shape);
            Weight ffnNorm = b.bind(f, p + "ffn_norm.weight", embd);
            FeedForward ffn = moe
                    ? new MoeFeedForward(f,
                            b.bind(f, p + "ffn_gate_inp.weight", embd, c.experts()),
                            b.bind(f, p + "ffn_gate_exps.weight", embd, c.expertFfn(), c.experts()),
                            b.bind(f, p + "ffn_up_exps.weight", embd, c.expertFfn(), c.experts()),
                            b.bind(f, p + "ffn_down_exps.weight", c.expertFfn(), embd, c.experts()),
                            c.expertsUsed())
                    : new DenseFeedForward(f,
                            b.bind(f, p + "ffn_gate.weight", embd, c.ffn()),
                            b.bind(f, p + "ffn_up.weight", embd, c.ffn()),
                            b.bind(f, p + "ffn_down.weight", c.ffn(), embd));
            // staged where the attention's backend copies weights in (a GPU) and the block's own reads them in place
            // (system RAM): a block on another GPU is better reached by moving the activations, as for one token
            GgufTensor gateExps = moe ? file.tensor(p + "ffn_gate_exps.weight") : null;
            StagedMoe staged = moe && fi != ai && assignment.stageBatch() > 0 && a.stagedBytes(gateExps) > 0
                    && f.stagedBytes(gateExps) == 0
                    ? new StagedMoe(List.of(file.tensor(p + "ffn_norm.weight"), file.tensor(p + "ffn_gate_inp.weight"),
                            gateExps, file.tensor(p + "ffn_up_exps.weight"), file.tensor(p + "ffn_down_exps.weight")),
                            c.expertsUsed())
                    : null;
            layers[i] = new Layer(ai, attnNorm, attention, fi, ffnNorm, ffn, staged);
        }
        // two areas per backend that stages several layers' blocks (one for a single layer), each as large as its
        // largest staged block (Planner.stagingBytes counts the same)
        long[] stagingBytes = new long[backends.size()];
        int[] stagedLayers = new int[backends.size()];
        for (Layer l : layers) {
            if (l.staged() != null) {
                stagingBytes[l.attnBackend()] = Math.max(stagingBytes[l.attnBackend()],
                        l.staged().bytes(backends.get(l.attnBackend())));
                stagedLayers[l.attnBackend()]++;
            }
        }
        StagingArea[][] staging = new StagingArea[backends.size()][];
        for (int i = 0; i < staging.length; i++) {
            staging[i] = new StagingArea[Math.min(stagedLayers[i], 2)];
            for (int j = 0; j < staging[i].length; j++) {
                staging[i][j] = backends.get(i).allocateStaging(stagingBytes[i]);
            }
        }
        return new Qwen3Graph(c, assignment, kvLayers, tokenEmbedding, outputNorm, output, layers, staging);
    }

    @Override
    public ModelConfig config() { return config; }

    @Override
    public Workspace newWorkspace(int capacity) {
        Workspace ws = backends.size() == 1 ? new Workspace(backends.getFirst(), capacity)
                : Workspace.across(backends, capacity);
        boolean[] blocks = new boolean[backends.size()];   // backends that run a layer's block
        for (Layer l : layers) {
            blocks[l.attnBackend] = true;
            blocks[l.ffnBackend] = true;
        }
        for (int i = 0; i < blocks.length; i++) {
            // the residual stream visits the embedding's and the head's backends too, which need no block buffers
            // (the planner counts each backend's scratch so)
            if (blocks[i] || i == embedBackend || i == headBackend) {
                ws.on(i).buffer("hidden", config.embd());
            }
            if (blocks[i]) {
                ws.on(i).buffer("normed", config.embd());
                ws.on(i).buffer("block.out", config.embd());
            }
        }
        Workspace head = ws.on(headBackend);
        int headRows = Math.min(capacity, HEAD_ROWS);
        head.buffer("head.in", headRows, config.embd());
        head.buffer("head.logits", headRows, config.vocab());
        for (Layer l : layers) {
            l.attention.reserve(ws.on(l.attnBackend));
            l.ffn.reserve(ws.on(l.ffnBackend));
            if (l.staged != null) {
                l.ffn.reserve(ws.on(l.attnBackend));   // the same buffers where a large batch runs the block
            }
        }
        return ws;
    }

    @Override
    public KvCache newKvCache(int contextLength, KvCacheType type) {
        if (backends.size() == 1) {
            return backends.getFirst().allocateKvCache(layers.length, contextLength, config.kvHeads(), config.headDim(), type);
        }
        KvCache[] parts = new KvCache[backends.size()];
        try {
            for (int i = 0; i < parts.length; i++) {
                if (kvLayers[i] > 0) {
                    parts[i] = backends.get(i).allocateKvCache(kvLayers[i], contextLength, config.kvHeads(), config.headDim(),
                            type);
                }
            }
        } catch (RuntimeException | Error e) {
            for (KvCache p : parts) {
                if (p != null) {
                    p.close();
                }
            }
            throw e;
        }
        return new SplitKvCache(parts, layers.length, contextLength, config.kvDim(), type);
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

    /** What a recorded part of a decode step across backends depends on: the step's, and which part it is. */
    private record SegmentKey(StepKey step, int index) {}

    /**
     * Where the operations of a forward pass run: {@link #DIRECT}ly as they come, or in {@link Segments} of a decode
     * step across backends. {@code on} runs backend operations on backend {@code backend}; {@code move} copies the
     * residual stream between backends through the host.
     */
    private interface Exec {
        void on(int backend, Runnable operations);

        void move(int from, int to, int n, Workspace ws);
    }

    private static final Exec DIRECT = new Exec() {
        @Override
        public void on(int backend, Runnable operations) {
            operations.run();
        }

        @Override
        public void move(int from, int to, int n, Workspace ws) {
            ws.transfer("hidden", from, to, n);
        }
    };

    /**
     * A decode step across backends cut where the residual stream moves: each run of operations on one backend is
     * a segment, which the backend may record and replay like a whole step ({@link Workspace#segmentRecorder}); the
     * copies between backends, which a recording cannot hold, run between segments. Segment i of every token runs
     * the same operations, so the recordings stay valid from token to token.
     */
    private static final class Segments implements Exec {
        private final Workspace ws;
        private final StepKey step;
        private final int token;
        private final int position;
        private final List<Runnable> pending = new java.util.ArrayList<>();
        private int backend = -1;
        private int index;

        Segments(Workspace ws, StepKey step, int token, int position) {
            this.ws = ws;
            this.step = step;
            this.token = token;
            this.position = position;
        }

        @Override
        public void on(int b, Runnable operations) {
            if (b != backend) {
                finish();
                backend = b;
            }
            pending.add(operations);
        }

        @Override
        public void move(int from, int to, int n, Workspace unused) {
            finish();
            ws.transfer("hidden", from, to, n);
        }

        /** Runs the segment gathered so far. */
        void finish() {
            if (pending.isEmpty()) {
                return;
            }
            List<Runnable> segment = List.copyOf(pending);
            pending.clear();
            int i = index++;
            ws.on(backend).segmentRecorder(i).run(new SegmentKey(step, i), token, position,
                    () -> segment.forEach(Runnable::run));
        }
    }

    /** The layers, then the final norm of the output rows and, with {@code lmHead}, their logits. */
    private void run(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws,
                     int firstOutput, float[][] out, int outIndex, boolean lmHead) {
        if (n <= 0 || n > ws.capacity()) {
            throw new IllegalArgumentException("batch of " + n + " tokens is outside 1.." + ws.capacity());
        }
        Backend headOn = backends.get(headBackend);
        if (n == 1) {
            // a decode step: the same operations for every token, which the backend may record and replay
            // (a replayed step does not run this code, so the result buffer is named here, not taken from head())
            boolean output = firstOutput == 0;
            StepKey key = new StepKey(cache, output, lmHead);
            if (backends.size() == 1) {
                ws.stepRecorder().run(key, tokens[offset], startPos, () -> {
                    layers(tokens, offset, 1, startPos, cache, ws, DIRECT);
                    if (output) {
                        head(ws, 0, 1, lmHead);
                    }
                });
            } else {
                Segments segments = new Segments(ws, key, tokens[offset], startPos);
                layers(tokens, offset, 1, startPos, cache, ws, segments);
                if (output) {
                    segments.on(headBackend, () -> head(ws, 0, 1, lmHead));
                }
                segments.finish();
            }
            if (output) {
                headOn.read(headResult(ws.on(headBackend), lmHead), 0, out[outIndex], 0);
            }
            return;
        }
        layers(tokens, offset, n, startPos, cache, ws, DIRECT);
        int headRows = Math.min(ws.capacity(), HEAD_ROWS);
        for (int row = firstOutput; row < n; row += headRows) {
            int m = Math.min(headRows, n - row);
            Activations result = head(ws, row, m, lmHead);
            for (int i = 0; i < m; i++) {
                headOn.read(result, i, out[outIndex + row - firstOutput + i], 0);
            }
        }
    }

    /** Embeds the tokens and runs every layer; the result is the {@code hidden} buffer of the head's backend. */
    private void layers(int[] tokens, int offset, int n, int startPos, KvCache cache, Workspace ws, Exec exec) {
        int embed = embedBackend;
        exec.on(embed, () -> backends.get(embed).embed(tokenEmbedding, tokens, offset, n,
                ws.on(embed).buffer("hidden", config.embd())));
        if (layers.length == 0) {
            move(embed, headBackend, n, ws, exec);
            return;
        }
        int first = move(embed, layers[0].attnBackend, n, ws, exec);
        exec.on(first, () -> {
            Workspace w = ws.on(first);
            backends.get(first).rmsNorm(w.buffer("hidden", config.embd()), layers[0].attnNorm, config.rmsEps(),
                    w.buffer("normed", config.embd()), n);
        });
        int at = first;   // the backend holding the residual stream
        for (int i = 0; i < layers.length; i++) {
            Layer l = layers[i];
            int attn = at;
            exec.on(attn, () -> {
                Workspace w = ws.on(attn);
                l.attention.forward(w.buffer("normed", config.embd()), w.buffer("block.out", config.embd()), n,
                        startPos, kvCache(cache, attn), w);
            });
            int ffn;
            if (l.staged != null && n >= stageBatch) {
                // a large batch: the block's weights come to the residual stream rather than the stream to them. One
                // thread at a time stages on a backend and enqueues the products (the next staging into an area waits
                // for the products that read it): the lock is the backend's, which graphs and sessions may share.
                // Never a decode step.
                synchronized (backends.get(attn)) {
                    StagingArea area = staging[attn][nextStaging[attn]];
                    nextStaging[attn] = (nextStaging[attn] + 1) % staging[attn].length;
                    Staged staged = l.staged.stage(backends.get(attn), area);
                    ffn = residual(attn, attn, staged.ffnNorm(), n, ws, exec);
                    exec.on(ffn, () -> {
                        Workspace w = ws.on(attn);
                        staged.ffn().forward(w.buffer("normed", config.embd()), w.buffer("block.out", config.embd()),
                                n, w);
                    });
                }
            } else {
                ffn = residual(attn, l.ffnBackend, l.ffnNorm, n, ws, exec);
                exec.on(ffn, () -> {
                    Workspace w = ws.on(ffn);
                    l.ffn.forward(w.buffer("normed", config.embd()), w.buffer("block.out", config.embd()), n, w);
                });
            }
            if (i + 1 < layers.length) {
                at = residual(ffn, layers[i + 1].attnBackend, layers[i + 1].attnNorm, n, ws, exec);
            } else {
                exec.on(ffn, () -> {
                    Workspace w = ws.on(ffn);
                    backends.get(ffn).add(w.buffer("hidden", config.embd()), w.buffer("block.out", config.embd()), n);
                });
                move(ffn, headBackend, n, ws, exec);
            }
        }
    }

    /**
     * Adds the block output on backend {@code from} to the residual stream, moves the stream to backend {@code to}
     * and norms it with {@code gain} into {@code normed} there, the next block's input; returns {@code to}.
     */
    private int residual(int from, int to, Weight gain, int n, Workspace ws, Exec exec) {
        Workspace a = ws.on(from);
        if (from == to) {
            // the residual add and the next block's norm, which a backend may fuse
            exec.on(from, () -> backends.get(from).addRmsNorm(a.buffer("hidden", config.embd()),
                    a.buffer("block.out", config.embd()), gain, config.rmsEps(), a.buffer("normed", config.embd()), n));
            return to;
        }
        exec.on(from, () -> backends.get(from).add(a.buffer("hidden", config.embd()), a.buffer("block.out", config.embd()),
                n));
        move(from, to, n, ws, exec);
        Workspace b = ws.on(to);
        exec.on(to, () -> backends.get(to).rmsNorm(b.buffer("hidden", config.embd()), gain, config.rmsEps(),
                b.buffer("normed", config.embd()), n));
        return to;
    }

    /** Copies the residual stream's {@code n} rows from backend {@code from} to backend {@code to}; returns {@code to}. */
    private static int move(int from, int to, int n, Workspace ws, Exec exec) {
        if (from != to) {
            exec.move(from, to, n, ws);
        }
        return to;
    }

    /** The part of the session's cache on backend {@code backend}. */
    private KvCache kvCache(KvCache cache, int backend) {
        if (backends.size() == 1) {
            return cache;
        }
        if (!(cache instanceof SplitKvCache split)) {
            throw new IllegalArgumentException("a graph placed on " + backends.size() + " backends needs the KV cache"
                    + " of its newKvCache, got " + cache.getClass().getSimpleName());
        }
        return split.part(backend);
    }

    /**
     * The final norm of hidden rows {@code row .. row+m-1} and, with {@code lmHead}, their logits: the
     * buffer holding the result in its first {@code m} rows.
     */
    private Activations head(Workspace ws, int row, int m, boolean lmHead) {
        Workspace w = ws.on(headBackend);
        Backend backend = backends.get(headBackend);
        int headRows = Math.min(w.capacity(), HEAD_ROWS);
        Activations headIn = w.buffer("head.in", headRows, config.embd());
        backend.copyRows(w.buffer("hidden", config.embd()), row, headIn, 0, m);
        backend.rmsNorm(headIn, outputNorm, config.rmsEps(), headIn, m);
        if (lmHead) {
            backend.matmul(output, headIn, headResult(w, true), m);
        }
        return headResult(w, lmHead);
    }

    /** The buffer {@link #head} leaves its result in. */
    private Activations headResult(Workspace ws, boolean lmHead) {
        int headRows = Math.min(ws.capacity(), HEAD_ROWS);
        return lmHead ? ws.buffer("head.logits", headRows, config.vocab()) : ws.buffer("head.in", headRows, config.embd());
    }
}
