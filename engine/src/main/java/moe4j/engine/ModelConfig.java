package moe4j.engine;

import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufValueType;
import moe4j.kernels.Rope;

/**
 * The hyperparameters of a transformer language model, read from GGUF metadata
 * ({@code {arch}.*} keys) and the shapes of its tensors.
 *
 * @param architecture   {@code general.architecture}, e.g. {@code qwen3moe}
 * @param name           {@code general.name}, or the empty string
 * @param layers         transformer blocks
 * @param embd           hidden size
 * @param heads          query heads
 * @param kvHeads        key/value heads
 * @param headDim        query/key size per head ({@code attention.key_length})
 * @param valueDim       value size per head ({@code attention.value_length})
 * @param ropeDims       rotated dimensions per head
 * @param ffn            dense FFN size (for MoE models only informational)
 * @param experts        experts per layer (0 for dense models)
 * @param expertsUsed    experts used per token (0 for dense models)
 * @param expertFfn      FFN size of one expert (0 for dense models)
 * @param vocab          vocabulary size (rows of {@code token_embd.weight})
 * @param contextLength  training context length
 * @param ropeBase       RoPE frequency base
 * @param ropeScaling    RoPE context scaling
 * @param rmsEps         RMSNorm epsilon
 * @param tiedEmbeddings true when the file has no {@code output.weight}: the LM head is {@code token_embd}
 */
public record ModelConfig(String architecture, String name, int layers, int embd, int heads, int kvHeads,
                          int headDim, int valueDim, int ropeDims, int ffn, int experts, int expertsUsed,
                          int expertFfn, int vocab, int contextLength, float ropeBase, RopeScaling ropeScaling,
                          float rmsEps, boolean tiedEmbeddings) {

    /** Query width: {@code heads * headDim}. */
    public int qDim() { return heads * headDim; }

    /** Key/value width: {@code kvHeads * headDim}. */
    public int kvDim() { return kvHeads * headDim; }

    public boolean isMoe() { return experts > 0; }

    /**
     * Reads the configuration of {@code file}. Missing required keys throw
     * {@link moe4j.gguf.GgufMetadataException} naming the key; variants moe4j does not implement throw
     * {@link UnsupportedModelException}.
     */
    public static ModelConfig from(GgufFile file) {
        GgufMetadata md = file.metadata();
        String arch = md.getString("general.architecture");
        Keys k = new Keys(md, arch, file.paths().getFirst().toString());

        int layers = k.required("block_count");
        if (layers < 1 || layers > 512) {
            throw k.invalid("block_count", layers + " layers is outside 1..512");
        }
        int embd = k.required("embedding_length");
        int heads = k.perLayer("attention.head_count", layers, 0);
        if (embd <= 0 || heads <= 0) {
            throw k.invalid(heads <= 0 ? "attention.head_count" : "embedding_length",
                    "embedding_length " + embd + " and attention.head_count " + heads + " must be positive");
        }
        int kvHeads = k.perLayer("attention.head_count_kv", layers, heads);
        if (kvHeads <= 0 || heads % kvHeads != 0) {
            throw k.invalid("attention.head_count_kv", kvHeads + " key/value heads do not divide " + heads + " query heads");
        }
        int headDim = k.optional("attention.key_length", embd / heads);
        int valueDim = k.optional("attention.value_length", embd / heads);
        if (headDim <= 0 || valueDim != headDim) {
            throw k.invalid("attention.value_length", "key length " + headDim + " and value length " + valueDim
                    + " must be equal and positive");
        }
        int ropeDims = k.optional("rope.dimension_count", headDim);
        if (ropeDims != headDim) {
            throw new UnsupportedModelException(k.key("rope.dimension_count") + " = " + ropeDims
                    + ": partial rotary embeddings (head size " + headDim + ") are not supported (in " + k.source + ")");
        }
        if (!md.getBoolean(k.key("attention.causal"), true)) {
            throw new UnsupportedModelException(k.key("attention.causal") + " = false: non-causal attention is not"
                    + " supported (in " + k.source + ")");
        }
        int ffn = k.perLayer("feed_forward_length", layers, 0);
        int experts = k.optional("expert_count", 0);
        int expertsUsed = k.perLayer("expert_used_count", layers, 0);
        int expertFfn = 0;
        if (experts > 0) {
            if (expertsUsed < 1 || expertsUsed > experts) {
                throw k.invalid("expert_used_count", expertsUsed + " experts per token is outside 1.." + experts);
            }
            expertFfn = k.perLayer("expert_feed_forward_length", layers, ffn / expertsUsed);
            if (expertFfn <= 0) {
                throw k.invalid("expert_feed_forward_length", "expert FFN size " + expertFfn + " must be positive");
            }
        } else {
            expertsUsed = 0;
        }
        int contextLength = k.required("context_length");
        if (contextLength <= 0) {
            throw k.invalid("context_length", contextLength + " must be positive");
        }
        float rmsEps = md.getFloat(k.key("attention.layer_norm_rms_epsilon"));
        float ropeBase = md.getFloat(k.key("rope.freq_base"), 10000f);
        RopeScaling scaling = readScaling(md, k, contextLength);

        rejectUnsupportedTensors(file);
        GgufTensor embedding = file.tensor("token_embd.weight");
        if (embedding.shape()[0] != embd || embedding.shape()[1] > Integer.MAX_VALUE) {
            throw new UnsupportedModelException("tensor token_embd.weight has shape "
                    + java.util.Arrays.toString(embedding.dims()) + ", expected [" + embd + ", n_vocab] (in " + k.source + ")");
        }
        int vocab = (int) embedding.shape()[1];
        boolean tied = file.findTensor("output.weight").isEmpty();
        return new ModelConfig(arch, md.getString("general.name", ""), layers, embd, heads, kvHeads, headDim,
                valueDim, ropeDims, ffn, experts, expertsUsed, expertFfn, vocab, contextLength, ropeBase, scaling,
                rmsEps, tied);
    }

    private static RopeScaling readScaling(GgufMetadata md, Keys k, int contextLength) {
        RopeScaling.Type type = RopeScaling.Type.parse(md.getString(k.key("rope.scaling.type"), "linear"),
                k.key("rope.scaling.type"));
        float factor = md.getFloat(k.key("rope.scaling.factor"), md.getFloat(k.key("rope.scale_linear"), 0f));
        if (factor == 0f) {
            factor = 1f;
        }
        if (!(factor > 0) || Float.isInfinite(factor)) {
            throw k.invalid("rope.scaling.factor", factor + " must be a positive finite number");
        }
        int original = k.optional("rope.scaling.original_context_length", contextLength);
        float attnFactor = md.getFloat(k.key("rope.scaling.attn_factor"), 1f);
        if (type == RopeScaling.Type.NONE || factor == 1f) {
            return RopeScaling.NONE;
        }
        return new RopeScaling(type, factor, original, attnFactor);
    }

    /** Variants the graphs do not implement: fused QKV projections, biases and per-tensor output scales. */
    private static void rejectUnsupportedTensors(GgufFile file) {
        for (GgufTensor t : file.tensors()) {
            String n = t.name();
            String why = null;
            if (n.endsWith(".attn_qkv.weight")) {
                why = "fused QKV projections are not supported";
            } else if (n.endsWith(".bias")) {
                why = "bias tensors are not supported";
            } else if (n.endsWith(".scale")) {
                why = "per-tensor output scales are not supported";
            }
            if (why != null) {
                throw new UnsupportedModelException("tensor " + n + ": " + why + " (in " + file.paths().getFirst() + ")");
            }
        }
    }

    /** RoPE as the kernels evaluate it, including YaRN's derived parameters as llama.cpp computes them. */
    public Rope rope(Rope.Style style) {
        if (ropeScaling.isIdentity()) {
            return Rope.plain(ropeDims, style, ropeBase);
        }
        float freqScale = 1f / ropeScaling.factor();
        if (ropeScaling.type() == RopeScaling.Type.LINEAR) {
            return new Rope(ropeDims, style, ropeBase, freqScale, 0f, 1f, 32f, 1f, contextLength);
        }
        // llama.cpp stores mscale(F) as the YaRN attention factor and divides it out again because the
        // kernel multiplies it back in; the net magnitude is the file's attn_factor times mscale(F).
        float mscale = ropeScaling.factor() > 1 ? 1f + 0.1f * (float) Math.log(ropeScaling.factor()) : 1f;
        float attn = ropeScaling.attnFactor() * mscale * (1f / mscale);
        return new Rope(ropeDims, style, ropeBase, freqScale, 1f, attn, 32f, 1f, ropeScaling.originalContext());
    }

    /** Reads {@code {arch}.*} keys with llama.cpp's defaults and per-layer array rules. */
    private static final class Keys {
        private final GgufMetadata md;
        private final String prefix;
        private final String source;

        Keys(GgufMetadata md, String arch, String source) {
            this.md = md;
            this.prefix = arch + ".";
            this.source = source;
        }

        String key(String suffix) {
            return prefix + suffix;
        }

        int required(String suffix) {
            return md.getInt(key(suffix));
        }

        int optional(String suffix, int dflt) {
            return md.getInt(key(suffix), dflt);
        }

        /** A scalar, or an array of one value per layer; layers that differ are not supported. */
        int perLayer(String suffix, int layers, int dflt) {
            String key = key(suffix);
            if (!md.contains(key)) {
                return dflt;
            }
            if (md.type(key) != GgufValueType.ARRAY) {
                return md.getInt(key);
            }
            int[] values = md.getIntArray(key);
            if (values.length != layers) {
                throw invalid(suffix, "array of " + values.length + " values, expected one per layer (" + layers + ")");
            }
            for (int v : values) {
                if (v != values[0]) {
                    throw new UnsupportedModelException(key + ": layers with different values are not supported (in "
                            + source + ")");
                }
            }
            return values[0];
        }

        UnsupportedModelException invalid(String suffix, String why) {
            return new UnsupportedModelException(key(suffix) + ": " + why + " (in " + source + ")");
        }
    }
}
