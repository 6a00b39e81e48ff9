package moe4j.engine.model;

import java.util.Collections;
import java.util.List;
import java.util.Objects;

import moe4j.kernels.Backend;

/**
 * Which backend runs each part of a graph: all the graph learns of a placement. A layer's attention block (its
 * attention norm, projections and KV cache) runs on one backend and its feed-forward block (its FFN norm, router and
 * experts) on one, possibly another; the token embedding and the head (final norm, LM head) each on one. Indices
 * refer to {@link #backends()}.
 *
 * @param backends  the backends, each once
 * @param embedding the backend of the token embedding lookup
 * @param head      the backend of the final norm and the LM head
 * @param attention per layer, the backend of its attention block
 * @param ffn       per layer, the backend of its feed-forward block
 * @param stageBatch batches of at least this many tokens run a feed-forward block that lies on another backend than
 *                   its layer's attention on the attention's backend, its weights staged there
 *                   ({@link Backend#stage}); 0 never
 */
public record BackendAssignment(List<Backend> backends, int embedding, int head, List<Integer> attention,
                                List<Integer> ffn, int stageBatch) {

    public BackendAssignment {
        backends = List.copyOf(backends);
        attention = List.copyOf(attention);
        ffn = List.copyOf(ffn);
        if (stageBatch < 0 || stageBatch == 1) {
            throw new IllegalArgumentException("stageBatch must be 0 (never) or at least 2 (a single token is computed"
                    + " where its experts lie), got " + stageBatch);
        }
        if (backends.isEmpty()) {
            throw new IllegalArgumentException("no backend");
        }
        if (backends.stream().distinct().count() != backends.size()) {
            throw new IllegalArgumentException("a backend is listed twice");
        }
        if (attention.size() != ffn.size()) {
            throw new IllegalArgumentException(attention.size() + " attention blocks but " + ffn.size()
                    + " feed-forward blocks");
        }
        Objects.checkIndex(embedding, backends.size());
        Objects.checkIndex(head, backends.size());
        for (List<Integer> blocks : List.of(attention, ffn)) {
            for (int b : blocks) {
                Objects.checkIndex(b, backends.size());
            }
        }
    }

    /** Everything on {@code backend}. */
    public static BackendAssignment single(Backend backend, int layers) {
        List<Integer> zeros = Collections.nCopies(layers, 0);
        return new BackendAssignment(List.of(backend), 0, 0, zeros, zeros, 0);
    }
}
