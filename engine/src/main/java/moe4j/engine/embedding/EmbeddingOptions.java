package moe4j.engine.embedding;

import java.util.Objects;
import java.util.Optional;

/**
 * How an {@link Embedder} embeds texts.
 *
 * @param pooling   the pooling to use; empty: the one the model declares ({@link Pooling#declaredBy})
 * @param normalize scale each vector to unit L2 length, as llama.cpp's embedding tools and server do
 *                  by default (a zero vector stays zero)
 * @param prefix    text put before every input, e.g. a task instruction for queries
 *                  ({@link #withInstruction}); empty for none
 */
public record EmbeddingOptions(Optional<Pooling> pooling, boolean normalize, String prefix) {

    public EmbeddingOptions {
        Objects.requireNonNull(pooling, "pooling");
        Objects.requireNonNull(prefix, "prefix");
    }

    /** The model's pooling, L2-normalized, no prefix. */
    public static EmbeddingOptions defaults() {
        return new EmbeddingOptions(Optional.empty(), true, "");
    }

    public EmbeddingOptions withPooling(Pooling pooling) {
        return new EmbeddingOptions(Optional.of(pooling), normalize, prefix);
    }

    public EmbeddingOptions withNormalize(boolean normalize) {
        return new EmbeddingOptions(pooling, normalize, prefix);
    }

    public EmbeddingOptions withPrefix(String prefix) {
        return new EmbeddingOptions(pooling, normalize, prefix);
    }

    /**
     * The Qwen3-Embedding query format: {@code "Instruct: " + task + "\nQuery:"} before each text. Documents
     * are embedded without it.
     */
    public EmbeddingOptions withInstruction(String task) {
        Objects.requireNonNull(task, "task");
        return withPrefix("Instruct: " + task + "\nQuery:");
    }
}
