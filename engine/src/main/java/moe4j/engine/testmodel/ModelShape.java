package moe4j.engine.testmodel;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.SequencedMap;

/**
 * The hyperparameters of a Qwen3 ({@code qwen3}, dense) or Qwen3-MoE ({@code qwen3moe}) model: everything the
 * test-model generator needs to lay out a complete GGUF file.
 *
 * @param arch           {@code qwen3} or {@code qwen3moe}
 * @param layers         transformer blocks ({@code block_count})
 * @param embd           hidden size ({@code embedding_length})
 * @param heads          query heads
 * @param kvHeads        key/value heads (GQA); divides {@code heads}
 * @param headDim        per-head size of Q, K and V ({@code key_length} = {@code value_length})
 * @param experts        routed experts per layer (0 for {@code qwen3})
 * @param expertsUsed    experts used per token (0 for {@code qwen3})
 * @param expertFfn      FFN size of one expert (0 for {@code qwen3})
 * @param ffn            dense FFN size ({@code feed_forward_length}; for MoE models only metadata)
 * @param vocab          vocabulary size, at least {@link #MIN_VOCAB}
 * @param context        training context length
 * @param ropeBase       RoPE frequency base
 * @param rmsEps         RMSNorm epsilon
 * @param tiedEmbeddings true when there is no {@code output.weight} and the LM head is {@code token_embd}
 */
public record ModelShape(String arch, int layers, int embd, int heads, int kvHeads, int headDim, int experts,
                         int expertsUsed, int expertFfn, int ffn, int vocab, int context, float ropeBase,
                         float rmsEps, boolean tiedEmbeddings) {

    public static final String QWEN3 = "qwen3";
    public static final String QWEN3MOE = "qwen3moe";

    /** The 256 byte symbols plus the three control tokens every generated vocabulary carries. */
    public static final int MIN_VOCAB = 256 + 3;

    public ModelShape {
        Objects.requireNonNull(arch, "arch");
        if (!arch.equals(QWEN3) && !arch.equals(QWEN3MOE)) {
            throw new IllegalArgumentException("unsupported architecture '" + arch + "' (expected qwen3 or qwen3moe)");
        }
        requirePositive("layers", layers);
        requirePositive("embd", embd);
        requirePositive("heads", heads);
        requirePositive("kvHeads", kvHeads);
        requirePositive("headDim", headDim);
        requirePositive("context", context);
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("heads (" + heads + ") must be a multiple of kvHeads (" + kvHeads + ")");
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("headDim (" + headDim + ") must be even: RoPE rotates pairs");
        }
        if (vocab < MIN_VOCAB) {
            throw new IllegalArgumentException("vocab (" + vocab + ") must be at least " + MIN_VOCAB
                    + ": 256 byte tokens and 3 control tokens");
        }
        if (arch.equals(QWEN3MOE)) {
            requirePositive("experts", experts);
            requirePositive("expertFfn", expertFfn);
            if (expertsUsed < 1 || expertsUsed > experts) {
                throw new IllegalArgumentException("expertsUsed (" + expertsUsed + ") must be in 1.." + experts);
            }
            if (ffn < 0) {
                throw new IllegalArgumentException("ffn must not be negative, got " + ffn);
            }
        } else {
            requirePositive("ffn", ffn);
            if (experts != 0 || expertsUsed != 0 || expertFfn != 0) {
                throw new IllegalArgumentException("a qwen3 (dense) model has no experts; experts, expertsUsed and"
                        + " expertFfn must be 0");
            }
        }
        if (!(ropeBase > 0) || !(rmsEps > 0)) {
            throw new IllegalArgumentException("ropeBase and rmsEps must be positive");
        }
    }

    private static void requirePositive(String name, int value) {
        if (value <= 0) {
            throw new IllegalArgumentException(name + " must be positive, got " + value);
        }
    }

    /** Tiny MoE model shaped like the conformance fixtures {@code tiny-qwen3moe-*.gguf}. */
    public static ModelShape tiny() {
        return new ModelShape(QWEN3MOE, 2, 256, 4, 2, 64, 4, 2, 256, 768, 515, 4096, 1e6f, 1e-6f, false);
    }

    /** Tiny dense model shaped like the fixtures {@code tiny-qwen3-tied-*.gguf} (tied embeddings, 1 KV head). */
    public static ModelShape tinyDense() {
        return new ModelShape(QWEN3, 2, 256, 4, 1, 64, 0, 0, 0, 512, 515, 4096, 1e6f, 1e-6f, true);
    }

    /** Qwen3-30B-A3B: 48 layers, 128 experts (8 used). */
    public static ModelShape qwen3_30b_a3b() {
        return new ModelShape(QWEN3MOE, 48, 2048, 32, 4, 128, 128, 8, 768, 6144, 151936, 40960, 1e6f, 1e-6f, false);
    }

    /** Qwen3-235B-A22B: 94 layers, 128 experts (8 used). */
    public static ModelShape qwen3_235b_a22b() {
        return new ModelShape(QWEN3MOE, 94, 4096, 64, 4, 128, 128, 8, 1536, 12288, 151936, 40960, 1e6f, 1e-6f,
                false);
    }

    /** Qwen3-0.6B: dense, 28 layers, tied embeddings. */
    public static ModelShape qwen3_0_6b() {
        return new ModelShape(QWEN3, 28, 1024, 16, 8, 128, 0, 0, 0, 3072, 151936, 40960, 1e6f, 1e-6f, true);
    }

    /** Presets by the names the command line uses, in display order. */
    public static SequencedMap<String, ModelShape> presets() {
        SequencedMap<String, ModelShape> p = new LinkedHashMap<>();
        p.put("tiny", tiny());
        p.put("tiny-dense", tinyDense());
        p.put("qwen3-30b-a3b", qwen3_30b_a3b());
        p.put("qwen3-235b-a22b", qwen3_235b_a22b());
        p.put("qwen3-0.6b", qwen3_0_6b());
        return p;
    }

    /** @throws IllegalArgumentException naming the known presets when {@code name} is not one */
    public static ModelShape preset(String name) {
        Map<String, ModelShape> p = presets();
        ModelShape s = p.get(name);
        if (s == null) {
            throw new IllegalArgumentException("unknown preset '" + name + "' (known: " + String.join(", ", p.keySet()) + ")");
        }
        return s;
    }

    public ModelShape withLayers(int n) {
        return new ModelShape(arch, n, embd, heads, kvHeads, headDim, experts, expertsUsed, expertFfn, ffn, vocab,
                context, ropeBase, rmsEps, tiedEmbeddings);
    }

    public boolean isMoe() { return arch.equals(QWEN3MOE); }

    /** Rows of the query projection: {@code heads * headDim} (may differ from {@code embd}). */
    public int qDim() { return heads * headDim; }

    /** Rows of each of the key and value projections: {@code kvHeads * headDim}. */
    public int kvDim() { return kvHeads * headDim; }
}
