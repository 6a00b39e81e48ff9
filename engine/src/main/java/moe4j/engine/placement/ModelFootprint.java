package moe4j.engine.placement;

import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import moe4j.engine.ModelConfig;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.cpu.CpuBackend;
import moe4j.kernels.cuda.CudaBackend;

/**
 * What a model needs in memory, tensor by tensor, and the shapes that size its KV cache and activations: all the
 * planner knows about a model. Built from a GGUF file's tensor infos (nothing is read) or from a preset shape and
 * tensor mix, which gives the same byte sizes as the file {@code make-test-model} would write.
 *
 * @param name           for people: the file name or {@code preset:MIX}
 * @param layers         transformer blocks
 * @param embd           hidden size
 * @param qDim           query width
 * @param kvDim          key (and value) width per position
 * @param experts        experts per layer, 0 for a dense model
 * @param expertsUsed    experts each token uses
 * @param expertFfn      FFN width of one expert
 * @param ffn            dense FFN width (0 for an MoE model)
 * @param vocab          vocabulary size
 * @param contextLength  training context length
 * @param tiedEmbeddings true when {@code token_embd} is also the LM head
 * @param tensors        every tensor in file order
 */
public record ModelFootprint(String name, int layers, int embd, int qDim, int kvDim, int experts, int expertsUsed,
                             int expertFfn, int ffn, int vocab, int contextLength, boolean tiedEmbeddings,
                             List<TensorFootprint> tensors) {

    /** The role of a tensor, which decides how often it is read and where the planner puts it. */
    public enum Part {
        /** {@code token_embd}: one row is read per token. */
        TOKEN_EMBEDDING,
        /** Q, K, V, output projections of a layer. */
        ATTENTION,
        /** RMSNorm gains of the attention block ({@code attn_norm}, per-head Q/K norms). */
        NORM,
        /** {@code ffn_norm}, the RMSNorm gain of the feed-forward block. */
        FFN_NORM,
        /** The MoE router {@code ffn_gate_inp}. */
        ROUTER,
        /** A dense FFN (or a shared expert): read whole every token. */
        DENSE_FFN,
        /** Stacked expert matrices {@code ffn_*_exps}: a token reads only its experts' slices. */
        EXPERTS,
        /** {@code output_norm}. */
        OUTPUT_NORM,
        /** The LM head {@code output}. */
        OUTPUT,
        /** Any other global tensor; kept with the LM head. */
        OTHER;

        /**
         * True for the parts of a layer's feed-forward block (FFN norm, router, experts or dense FFN): the engine
         * runs that block on one device, where its experts are, so the planner keeps them together. The other
         * layer parts form the attention block.
         */
        public boolean feedForward() {
            return this == FFN_NORM || this == ROUTER || this == EXPERTS || this == DENSE_FFN;
        }
    }

    /**
     * One tensor.
     *
     * @param layer         its block index, or -1 for a global tensor
     * @param bytes         its size in the file, which a CPU maps
     * @param repackedBytes what a CPU backend that repacks holds for it when bound for products (a Q4_K, Q5_K or
     *                      Q6_K matrix's copy in groups of 16 rows, 5.6%, 4.5% or 1% larger; with 256-bit vectors a
     *                      Q3_K matrix's too, 5.5%;
     *                      {@link PlanRequest#cpuRepack()}), else {@code bytes}
     * @param gpuBytes      what a GPU holds for it ({@link CudaBackend#heldBytes}: a Q3_K matrix's blocks padded to
     *                      16-byte alignment, 2.7% larger for rows of 4096 values)
     */
    public record TensorFootprint(String name, int layer, Part part, long bytes, long repackedBytes, long gpuBytes) {
        public TensorFootprint {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(part, "part");
            if (bytes < 0 || repackedBytes < 0 || gpuBytes < 0) {
                throw new IllegalArgumentException(name + ": negative size " + bytes + " / " + repackedBytes + " / "
                        + gpuBytes);
            }
        }

        /** A tensor that every backend holds as the file has it. */
        public TensorFootprint(String name, int layer, Part part, long bytes) {
            this(name, layer, part, bytes, bytes, bytes);
        }
    }

    private static final Pattern BLOCK = Pattern.compile("blk\\.(\\d+)\\.(.+)");
    private static final Pattern PRESET = Pattern.compile("([^:]+):([^:]+)");

    public ModelFootprint {
        Objects.requireNonNull(name, "name");
        tensors = List.copyOf(tensors);
        if (layers < 1 || embd < 1 || kvDim < 1 || vocab < 1) {
            throw new IllegalArgumentException(name + ": layers, embd, kvDim and vocab must be positive");
        }
        if (experts > 0 && (expertsUsed < 1 || expertsUsed > experts)) {
            throw new IllegalArgumentException(name + ": " + expertsUsed + " experts used of " + experts);
        }
        for (TensorFootprint t : tensors) {
            if (t.layer() >= layers) {
                throw new IllegalArgumentException(name + ": tensor " + t.name() + " is in layer " + t.layer()
                        + " but the model has " + layers + " layers");
            }
        }
    }

    /** The footprint of an opened GGUF model: its hyperparameters and the byte size of every tensor. */
    public static ModelFootprint of(GgufFile file) {
        ModelConfig c = ModelConfig.from(file);
        List<TensorFootprint> tensors = file.tensors().stream()
                .map(t -> classify(t.name(), t.type(), t.dims(), t.byteSize()))
                .toList();
        return new ModelFootprint(String.valueOf(file.paths().getFirst().getFileName()), c.layers(), c.embd(),
                c.qDim(), c.kvDim(), c.experts(), c.expertsUsed(), c.expertFfn(), c.isMoe() ? 0 : c.ffn(), c.vocab(),
                c.contextLength(), c.tiedEmbeddings(), tensors);
    }

    /** The footprint of the file {@code make-test-model} writes for this shape and mix (no file is written). */
    public static ModelFootprint of(String name, ModelShape shape, TensorMix mix) {
        List<TensorFootprint> tensors = TestModelGenerator.plan(shape, mix).stream()
                .map(t -> classify(t.name(), t.type(), t.dims(), t.byteSize()))
                .toList();
        return new ModelFootprint(name, shape.layers(), shape.embd(), shape.qDim(), shape.kvDim(), shape.experts(),
                shape.expertsUsed(), shape.expertFfn(), shape.isMoe() ? 0 : shape.ffn(), shape.vocab(), shape.context(),
                shape.tiedEmbeddings(), tensors);
    }

    /**
     * A preset written {@code PRESET:MIX}, e.g. {@code qwen3-235b-a22b:Q3_K_M} (any case; presets of
     * {@link ModelShape#presets()}, mixes of {@link TensorMix}).
     *
     * @throws IllegalArgumentException naming what is unknown and listing what is known
     */
    public static ModelFootprint preset(String spec) {
        Matcher m = PRESET.matcher(spec.strip());
        if (!m.matches()) {
            throw new IllegalArgumentException("invalid model preset '" + spec + "': expected PRESET:TYPE, e.g."
                    + " qwen3-235b-a22b:Q4_K_M");
        }
        String presetName = m.group(1).strip().toLowerCase(Locale.ROOT);
        ModelShape shape = ModelShape.preset(presetName);
        TensorMix mix;
        try {
            mix = TensorMix.parse(m.group(2));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(e.getMessage() + " in '" + spec + "'", e);
        }
        return of(presetName + ":" + mix.name(), shape, mix);
    }

    /** Tells a tensor's layer and role from its GGUF name; every backend holds it as the file has it. */
    public static TensorFootprint classify(String name, long bytes) {
        return classify(name, bytes, bytes, bytes);
    }

    /** A tensor of {@code type} and {@code dims}, {@code bytes} in the file, as each backend holds it. */
    private static TensorFootprint classify(String name, GgmlType type, long[] dims, long bytes) {
        return classify(name, bytes, CpuBackend.heldBytes(type, dims, bytes), CudaBackend.heldBytes(type, dims, bytes));
    }

    /**
     * Tells a tensor's layer and role from its GGUF name, which a CPU backend that repacks holds in {@code
     * repackedBytes} and a GPU in {@code gpuBytes}.
     */
    public static TensorFootprint classify(String name, long bytes, long repackedBytes, long gpuBytes) {
        Matcher m = BLOCK.matcher(name);
        if (!m.matches()) {
            Part part = switch (name) {
                case "token_embd.weight" -> Part.TOKEN_EMBEDDING;
                case "output_norm.weight" -> Part.OUTPUT_NORM;
                case "output.weight" -> Part.OUTPUT;
                default -> Part.OTHER;
            };
            return new TensorFootprint(name, -1, part, bytes, repackedBytes, gpuBytes);
        }
        String rest = m.group(2);
        Part part;
        if (rest.contains("_exps.")) {
            part = Part.EXPERTS;
        } else if (rest.contains("_norm.")) {
            part = rest.startsWith("ffn_") ? Part.FFN_NORM : Part.NORM;
        } else if (rest.startsWith("ffn_gate_inp.")) {
            part = Part.ROUTER;
        } else if (rest.startsWith("ffn_")) {
            part = Part.DENSE_FFN;
        } else {
            part = Part.ATTENTION;
        }
        return new TensorFootprint(name, Integer.parseInt(m.group(1)), part, bytes, repackedBytes, gpuBytes);
    }

    public boolean isMoe() { return experts > 0; }

    /** Sum of all tensors' bytes: the model's weights. */
    public long totalBytes() {
        return tensors.stream().mapToLong(TensorFootprint::bytes).sum();
    }

    /** The token embedding tensor, which every model has. */
    public TensorFootprint tokenEmbedding() {
        return tensors.stream().filter(t -> t.part() == Part.TOKEN_EMBEDDING).findFirst()
                .orElseThrow(() -> new IllegalStateException(name + " has no token_embd.weight"));
    }

    /**
     * Bytes of the KV cache of one layer for {@code positions} positions: keys and values, {@code kvDim} values
     * each per position ({@code q8_0}: 34 bytes per 32 values).
     */
    public long kvBytesPerLayer(long positions, KvCacheType type) {
        long perVector = switch (type) {
            case F32 -> 4L * kvDim;
            case F16 -> 2L * kvDim;
            case Q8_0 -> (kvDim + 31) / 32 * 34L;
        };
        return Math.multiplyExact(2 * positions, perVector);
    }
}
