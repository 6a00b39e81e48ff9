package moe4j.engine.embedding;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Objects;

import moe4j.engine.Model;
import moe4j.engine.Session;

/**
 * Text embeddings from a model: each text is tokenized (with the model's BOS/EOS policy and special
 * tokens recognized, as llama.cpp's embedding tools do), evaluated, and the final-norm hidden states
 * of its tokens are pooled and, by default, L2-normalized.
 *
 * <p>Thread-safe: concurrent calls each take a session from a pool (created on demand, kept for reuse,
 * each with a KV cache sized to the longest text it has seen, up to the model's context length). Each
 * text is evaluated in batches of {@link moe4j.engine.LoadOptions#batchSize()} tokens; the texts of one
 * {@link #embedAll} call run one after another on one session. Closing the embedder releases its
 * sessions, not the model.
 *
 * <pre>{@code
 * try (Model model = Model.load(path, LoadOptions.defaults());
 *      Embedder embedder = Embedder.create(model)) {
 *     float[] v = embedder.embed("The quick brown fox");
 * }
 * }</pre>
 */
public final class Embedder implements AutoCloseable {

    /** Smallest KV cache a pooled session gets, so that short texts do not reallocate it again and again. */
    private static final int MIN_SESSION_CONTEXT = 64;

    private final Model model;
    private final EmbeddingOptions options;
    private final Pooling pooling;
    private final int dimension;
    private final Deque<Worker> idle = new ArrayDeque<>();
    private boolean closed;

    private Embedder(Model model, EmbeddingOptions options, Pooling pooling) {
        this.model = model;
        this.options = options;
        this.pooling = pooling;
        this.dimension = model.config().embd();
    }

    /** An embedder with the model's pooling, L2-normalized, no prefix. */
    public static Embedder create(Model model) {
        return create(model, EmbeddingOptions.defaults());
    }

    /**
     * @throws moe4j.engine.UnsupportedModelException when no pooling is given and the model declares one
     *                                                that is not supported (rank)
     */
    public static Embedder create(Model model, EmbeddingOptions options) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(options, "options");
        return new Embedder(model, options, options.pooling().orElseGet(() -> Pooling.declaredBy(model)));
    }

    public Model model() { return model; }

    public EmbeddingOptions options() { return options; }

    /** The pooling in use: the options' or the model's. */
    public Pooling pooling() { return pooling; }

    /** Length of every embedding: the model's hidden size. */
    public int dimension() { return dimension; }

    /** The tokens a text is embedded as: the prefix and the text, with the model's BOS/EOS policy. */
    public int[] tokenize(String text) {
        Objects.requireNonNull(text, "text");
        return model.tokenizer().encode(options.prefix() + text);
    }

    /** The embedding of {@code text}; see {@link #embedTokens}. */
    public float[] embed(String text) {
        return embedTokens(tokenize(text));
    }

    /** The embeddings of {@code texts}, in order; every text is checked before any is evaluated. */
    public List<float[]> embedAll(List<String> texts) {
        List<int[]> sequences = new ArrayList<>(texts.size());
        for (String text : texts) {
            sequences.add(tokenize(text));
        }
        return embedAllTokens(sequences);
    }

    /**
     * The pooled embedding of a token sequence.
     *
     * @throws IllegalStateException    when the pooling is {@link Pooling#NONE} (use {@link #tokenEmbeddings})
     * @throws IllegalArgumentException when there are no tokens, or more than the model's context length
     */
    public float[] embedTokens(int[] tokens) {
        return embedAllTokens(List.of(tokens)).getFirst();
    }

    /** The pooled embeddings of token sequences, in order; every sequence is checked before any is evaluated. */
    public List<float[]> embedAllTokens(List<int[]> sequences) {
        if (pooling == Pooling.NONE) {
            throw new IllegalStateException("pooling is none (" + model.path().getFileName() + " declares no "
                    + model.config().architecture() + ".pooling_type, or 0): there is one vector per token; use"
                    + " tokenEmbeddings, or choose a pooling with EmbeddingOptions.withPooling");
        }
        for (int i = 0; i < sequences.size(); i++) {
            check(sequences.get(i), sequences.size() == 1 ? "" : "text " + i + ": ");
        }
        List<float[]> out = new ArrayList<>(sequences.size());
        if (sequences.isEmpty()) {
            return out;
        }
        Worker worker = borrow();
        try {
            for (int[] tokens : sequences) {
                out.add(finish(worker.pool(tokens)));
            }
        } finally {
            release(worker);
        }
        return out;
    }

    /**
     * The vector of every token (no pooling; normalized each when the options say so), {@code [tokens][dimension]}.
     *
     * @throws IllegalArgumentException when there are no tokens, or more than the model's context length
     */
    public float[][] tokenEmbeddings(int[] tokens) {
        check(tokens, "");
        float[][] rows = new float[tokens.length][dimension];
        Worker worker = borrow();
        try {
            worker.session(tokens.length).evaluateHidden(tokens, 0, tokens.length, rows);
        } finally {
            release(worker);
        }
        for (float[] row : rows) {
            finish(row);
        }
        return rows;
    }

    /** Cosine similarity of two vectors of the same length (0 when either is zero). */
    public static double cosineSimilarity(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("vectors of different lengths: " + a.length + " and " + b.length);
        }
        double dot = 0;
        double na = 0;
        double nb = 0;
        for (int i = 0; i < a.length; i++) {
            dot += (double) a[i] * b[i];
            na += (double) a[i] * a[i];
            nb += (double) b[i] * b[i];
        }
        return na == 0 || nb == 0 ? 0 : dot / Math.sqrt(na * nb);
    }

    /** Releases the pooled sessions; calls after this fail, and sessions still in use close when they return. */
    @Override
    public void close() {
        List<Worker> toClose;
        synchronized (this) {
            closed = true;
            toClose = new ArrayList<>(idle);
            idle.clear();
        }
        toClose.forEach(Worker::close);
    }

    private void check(int[] tokens, String what) {
        if (tokens.length == 0) {
            throw new IllegalArgumentException(what + "nothing to embed: the text gives no tokens");
        }
        if (tokens.length > model.contextLength()) {
            throw new IllegalArgumentException(what + tokens.length + " tokens exceed the context length of "
                    + model.contextLength() + " (LoadOptions.withContextLength raises it)");
        }
    }

    private float[] finish(float[] v) {
        if (options.normalize()) {
            l2Normalize(v);
        }
        return v;
    }

    /** {@code v / |v|}, the sum of squares in double as llama.cpp's tools do; a zero vector stays zero. */
    private static void l2Normalize(float[] v) {
        double sum = 0;
        for (float x : v) {
            sum += (double) x * x;
        }
        if (sum > 0) {
            float scale = (float) (1.0 / Math.sqrt(sum));
            for (int i = 0; i < v.length; i++) {
                v[i] *= scale;
            }
        }
    }

    private Worker borrow() {
        synchronized (this) {
            if (closed) {
                throw new IllegalStateException("embedder is closed");
            }
            Worker w = idle.pollFirst();
            if (w != null) {
                return w;
            }
        }
        return new Worker();
    }

    private void release(Worker worker) {
        synchronized (this) {
            if (!closed) {
                idle.addFirst(worker);
                return;
            }
        }
        worker.close();
    }

    /** One caller's session and scratch rows; used by one thread at a time. */
    private final class Worker {
        private final float[][] rows = new float[model.options().batchSize()][dimension];
        private Session session;

        /** The session, reset, with room for {@code tokens} positions. */
        Session session(int tokens) {
            if (session == null || session.contextLength() < tokens) {
                close();
                int size = Math.min(model.contextLength(), Math.max(MIN_SESSION_CONTEXT, Integer.highestOneBit(tokens - 1) << 1));
                session = model.newSession(Math.max(size, tokens));
            }
            session.reset();
            return session;
        }

        /** The pooled (not yet normalized) vector of {@code tokens}. */
        float[] pool(int[] tokens) {
            float[] out = new float[dimension];
            if (pooling == Pooling.CLS) {
                // attention is causal: the first token's state does not depend on the tokens after it
                Session s = session(1);
                s.evaluateHidden(tokens, 0, 1, rows);
                System.arraycopy(rows[0], 0, out, 0, dimension);
                return out;
            }
            Session s = session(tokens.length);
            double[] sum = pooling == Pooling.MEAN ? new double[dimension] : null;
            for (int from = 0; from < tokens.length; from += rows.length) {
                int n = Math.min(rows.length, tokens.length - from);
                s.evaluateHidden(tokens, from, n, rows);
                if (sum != null) {
                    for (int r = 0; r < n; r++) {
                        float[] row = rows[r];
                        for (int i = 0; i < dimension; i++) {
                            sum[i] += row[i];
                        }
                    }
                } else if (from + n == tokens.length) {
                    System.arraycopy(rows[n - 1], 0, out, 0, dimension);
                }
            }
            if (sum != null) {
                for (int i = 0; i < dimension; i++) {
                    out[i] = (float) (sum[i] / tokens.length);
                }
            }
            return out;
        }

        void close() {
            if (session != null) {
                session.close();
                session = null;
            }
        }
    }
}
