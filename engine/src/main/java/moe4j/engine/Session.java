package moe4j.engine;

import java.util.Objects;

import moe4j.engine.model.ModelGraph;
import moe4j.engine.model.Workspace;
import moe4j.kernels.KvCache;

/**
 * One sequence being evaluated: its KV cache, working memory and current position. Tokens passed to
 * {@code evaluate} are appended after those already evaluated. Not thread-safe: use one session per
 * thread (sessions of one model may run concurrently).
 */
public final class Session implements AutoCloseable {

    private final ModelGraph graph;
    private final KvCache cache;
    private final Workspace workspace;
    private final int vocab;
    private final int hiddenSize;
    private final float[][] lastRow = new float[1][];
    private int position;
    private boolean closed;

    Session(ModelGraph graph, KvCache cache, Workspace workspace) {
        this.graph = graph;
        this.cache = cache;
        this.workspace = workspace;
        this.vocab = graph.config().vocab();
        this.hiddenSize = graph.config().embd();
    }

    /** Length of each logits vector. */
    public int vocabularySize() { return vocab; }

    /** Length of each hidden-state vector of {@link #evaluateHidden}: the model's embedding size. */
    public int hiddenSize() { return hiddenSize; }

    /** Tokens evaluated so far (the position the next token takes). */
    public int position() { return position; }

    public int contextLength() { return cache.contextLength(); }

    /** Positions still free. */
    public int remaining() { return cache.contextLength() - position; }

    /** Evaluates {@code tokens} and returns the logits after the last one (a new array of vocab size). */
    public float[] evaluate(int[] tokens) {
        float[] logits = new float[vocab];
        evaluate(tokens, 0, tokens.length, logits);
        return logits;
    }

    /**
     * Evaluates {@code tokens[offset .. offset+length)} and writes the logits after the last one into
     * {@code logits} (length at least vocab). Allocates nothing: the decode loop's form.
     */
    public void evaluate(int[] tokens, int offset, int length, float[] logits) {
        Objects.checkFromIndexSize(offset, length, tokens.length);
        if (logits.length < vocab) {
            throw new IllegalArgumentException("logits array of " + logits.length + " is shorter than the vocabulary " + vocab);
        }
        lastRow[0] = logits;
        run(tokens, offset, length, offset + length - 1, lastRow, true);
    }

    /** Evaluates {@code tokens} and returns the logits after each of them ({@code [tokens.length][vocab]}). */
    public float[][] evaluateAll(int[] tokens) {
        float[][] all = new float[tokens.length][vocab];
        run(tokens, 0, tokens.length, 0, all, true);
        return all;
    }

    /**
     * Evaluates {@code tokens[offset .. offset+length)} and writes the hidden state after each of them,
     * the output of the final norm before the LM head (what embedding models pool), into
     * {@code hidden[0 .. length)} (each at least {@link #hiddenSize()} long). No logits are computed.
     */
    public void evaluateHidden(int[] tokens, int offset, int length, float[][] hidden) {
        Objects.checkFromIndexSize(offset, length, tokens.length);
        if (hidden.length < length) {
            throw new IllegalArgumentException("room for " + hidden.length + " hidden states, " + length + " tokens given");
        }
        for (int i = 0; i < length; i++) {
            if (hidden[i].length < hiddenSize) {
                throw new IllegalArgumentException("hidden-state array " + i + " of " + hidden[i].length
                        + " is shorter than the hidden size " + hiddenSize);
            }
        }
        run(tokens, offset, length, offset, hidden, false);
    }

    /**
     * Runs the batches; token {@code i >= firstOutput} gets its logits ({@code logits}) or final-norm
     * hidden state in {@code out[i - firstOutput]}.
     */
    private void run(int[] tokens, int offset, int length, int firstOutput, float[][] out, boolean logits) {
        if (closed) {
            throw new IllegalStateException("session is closed");
        }
        if (length <= 0) {
            throw new IllegalArgumentException("nothing to evaluate: no tokens given");
        }
        if (length > remaining()) {
            throw new ContextOverflowException(length, position, cache.contextLength());
        }
        for (int i = offset; i < offset + length; i++) {
            if (tokens[i] < 0 || tokens[i] >= vocab) {
                throw new IllegalArgumentException("token id " + tokens[i] + " at index " + i
                        + " is outside the vocabulary of " + vocab);
            }
        }
        int capacity = workspace.capacity();
        for (int start = offset; start < offset + length; start += capacity) {
            int n = Math.min(capacity, offset + length - start);
            int firstInBatch = Math.max(0, firstOutput - start);
            int outIndex = Math.max(0, start - firstOutput);
            if (logits) {
                graph.forward(tokens, start, n, position, cache, workspace, Math.min(firstInBatch, n), out, outIndex);
            } else {
                graph.forwardHidden(tokens, start, n, position, cache, workspace, Math.min(firstInBatch, n), out,
                        outIndex);
            }
            position += n;
        }
    }

    /** Forgets everything evaluated; the next token takes position 0. */
    public void reset() {
        position = 0;
    }

    /**
     * Drops the positions from {@code newPosition} on, keeping the cached prefix (e.g. to re-evaluate a
     * different continuation of a shared prompt).
     */
    public void truncate(int newPosition) {
        if (newPosition < 0 || newPosition > position) {
            throw new IllegalArgumentException("cannot truncate to position " + newPosition + " of " + position);
        }
        position = newPosition;
    }

    /** Releases the KV cache and the working memory. */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            cache.close();
            workspace.close();
        }
    }
}
