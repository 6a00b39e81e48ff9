package moe4j.engine.testmodel;

import moe4j.gguf.GgmlType;

/**
 * A file type ({@code general.file_type}) and the per-tensor storage types it implies, following the rules of
 * llama.cpp's converter (float mixes) and {@code llama-quantize} (quantized mixes): norms and the MoE router
 * stay F32, the LM head gets Q6_K, and the K-quant "_M" mixes give some layers' {@code attn_v} and
 * {@code ffn_down} more bits. A tensor whose rows are not a whole number of blocks falls back to a type whose
 * blocks fit, as {@code llama-quantize} does.
 */
public enum TensorMix {
    F32(0, GgmlType.F32),
    F16(1, GgmlType.F16),
    BF16(32, GgmlType.BF16),
    Q8_0(7, GgmlType.Q8_0),
    Q6_K(18, GgmlType.Q6_K),
    Q5_K_M(17, GgmlType.Q5_K),
    Q5_1(9, GgmlType.Q5_1),
    Q5_0(8, GgmlType.Q5_0),
    Q4_K_M(15, GgmlType.Q4_K),
    Q4_1(3, GgmlType.Q4_1),
    Q4_0(2, GgmlType.Q4_0),
    IQ4_XS(30, GgmlType.IQ4_XS),
    IQ4_NL(25, GgmlType.IQ4_NL),
    Q3_K_M(12, GgmlType.Q3_K),
    Q2_K(10, GgmlType.Q2_K);

    private static final int QK_K = 256;

    private final int fileType;
    private final GgmlType defaultType;

    TensorMix(int fileType, GgmlType defaultType) {
        this.fileType = fileType;
        this.defaultType = defaultType;
    }

    /**
     * The mix named {@code name}, in any case.
     *
     * @throws IllegalArgumentException naming the known mixes when there is none of that name
     */
    public static TensorMix parse(String name) {
        for (TensorMix t : values()) {
            if (t.name().equalsIgnoreCase(name.strip())) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown tensor type '" + name.strip() + "' (known: "
                + String.join(", ", java.util.Arrays.stream(values()).map(Enum::name).toList()) + ")");
    }

    /** The {@code general.file_type} (llama_ftype) value naming this mix. */
    public int fileType() { return fileType; }

    /** The type most weight matrices get. */
    public GgmlType defaultType() { return defaultType; }

    /** False for the float mixes F32, F16 and BF16, which llama.cpp's converter writes without quantizing. */
    public boolean isQuantized() {
        return defaultType != GgmlType.F32 && defaultType != GgmlType.F16 && defaultType != GgmlType.BF16;
    }

    /**
     * The storage type of one tensor of a model with the given shape.
     *
     * @param name  GGUF tensor name, e.g. {@code blk.3.ffn_down_exps.weight}
     * @param dims  its dimensions in ggml order ({@code dims[0]} is the row length)
     */
    public GgmlType typeFor(String name, long[] dims, ModelShape shape) {
        if (dims.length < 2 || !name.endsWith("weight") || name.contains("_norm.weight")
                || name.contains("ffn_gate_inp.weight")) {
            return GgmlType.F32;
        }
        if (!isQuantized()) {
            return defaultType;
        }
        return fitToRow(quantizedType(name, dims[0], shape), dims[0]);
    }

    /** {@code llama_tensor_get_type}'s choice for the mixes listed here, before the row-size fallback. */
    private GgmlType quantizedType(String name, long rowLength, ModelShape shape) {
        int layer = layerOf(name);
        int n = shape.layers();
        boolean eightExperts = shape.experts() == 8;
        boolean kM = this == Q4_K_M || this == Q5_K_M;
        if (name.equals("output.weight") || (shape.tiedEmbeddings() && name.equals("token_embd.weight"))) {
            if (rowLength % QK_K != 0) {
                return GgmlType.Q8_0;
            }
            return defaultType == GgmlType.Q8_0 ? GgmlType.Q8_0 : GgmlType.Q6_K;
        }
        if (name.contains("attn_v.weight")) {
            if (eightExperts) {
                return GgmlType.Q8_0;
            }
            int gqa = shape.heads() / shape.kvHeads();
            return switch (this) {
                case Q2_K -> gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
                case Q3_K_M -> layer < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
                case IQ4_NL, IQ4_XS -> gqa >= 4 ? GgmlType.Q5_K : defaultType;
                default -> kM && useMoreBits(layer, n) ? GgmlType.Q6_K : defaultType;
            };
        }
        if (name.contains("attn_k.weight")) {
            return eightExperts ? GgmlType.Q8_0 : defaultType;
        }
        if (name.contains("ffn_down")) {
            return switch (this) {
                case Q2_K -> GgmlType.Q3_K;
                case Q3_K_M -> layer < n / 16 ? GgmlType.Q5_K : GgmlType.Q4_K;
                default -> kM && useMoreBits(layer, n) ? GgmlType.Q6_K : defaultType;
            };
        }
        if (name.contains("attn_output.weight")) {
            if (eightExperts) {
                return switch (this) {
                    case Q2_K, Q3_K_M, Q4_K_M, IQ4_NL, IQ4_XS -> GgmlType.Q5_K;
                    default -> defaultType;
                };
            }
            return switch (this) {
                case Q2_K -> GgmlType.Q3_K;
                case Q3_K_M -> GgmlType.Q4_K;
                default -> defaultType;
            };
        }
        return defaultType;
    }

    /** {@code llama-quantize}'s layers that get more bits: the first and last eighth and every third between. */
    static boolean useMoreBits(int layer, int layers) {
        return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
    }

    /** The layer index in {@code blk.N.*}, or -1 for a global tensor. */
    private static int layerOf(String name) {
        if (!name.startsWith("blk.")) {
            return -1;
        }
        int end = name.indexOf('.', 4);
        return Integer.parseInt(name, 4, end, 10);
    }

    /** {@code llama-quantize}'s fallback when rows of {@code rowLength} elements do not fill whole blocks. */
    private static GgmlType fitToRow(GgmlType type, long rowLength) {
        if (rowLength % type.blockSize() == 0) {
            return type;
        }
        GgmlType fallback = switch (type) {
            case Q2_K, Q3_K -> GgmlType.Q4_0;
            case Q4_K -> GgmlType.Q5_0;
            case Q5_K -> GgmlType.Q5_1;
            case Q6_K -> GgmlType.Q8_0;
            case IQ4_XS -> GgmlType.IQ4_NL;
            default -> GgmlType.F16;
        };
        return rowLength % fallback.blockSize() == 0 ? fallback : GgmlType.F16;
    }
}
