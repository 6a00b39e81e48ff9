package moe4j.gguf;

/**
 * The ggml tensor type table: every id a GGUF tensor-info record may carry, with its block
 * geometry. Knowing the geometry of a type is enough to locate and size a tensor; whether moe4j
 * can compute with it is the kernels module's business, so exotic types still open and list.
 *
 * <p>Ids whose type was removed from ggml have {@code blockSize == 0}; the reader rejects them.
 */
public enum GgmlType {
    F32(0, "f32", 1, 4),
    F16(1, "f16", 1, 2),
    Q4_0(2, "q4_0", 32, 18),
    Q4_1(3, "q4_1", 32, 20),
    Q4_2_REMOVED(4, "q4_2", 0, 0),
    Q4_3_REMOVED(5, "q4_3", 0, 0),
    Q5_0(6, "q5_0", 32, 22),
    Q5_1(7, "q5_1", 32, 24),
    Q8_0(8, "q8_0", 32, 34),
    Q8_1(9, "q8_1", 32, 36),
    Q2_K(10, "q2_K", 256, 84),
    Q3_K(11, "q3_K", 256, 110),
    Q4_K(12, "q4_K", 256, 144),
    Q5_K(13, "q5_K", 256, 176),
    Q6_K(14, "q6_K", 256, 210),
    Q8_K(15, "q8_K", 256, 292),
    IQ2_XXS(16, "iq2_xxs", 256, 66),
    IQ2_XS(17, "iq2_xs", 256, 74),
    IQ3_XXS(18, "iq3_xxs", 256, 98),
    IQ1_S(19, "iq1_s", 256, 50),
    IQ4_NL(20, "iq4_nl", 32, 18),
    IQ3_S(21, "iq3_s", 256, 110),
    IQ2_S(22, "iq2_s", 256, 82),
    IQ4_XS(23, "iq4_xs", 256, 136),
    I8(24, "i8", 1, 1),
    I16(25, "i16", 1, 2),
    I32(26, "i32", 1, 4),
    I64(27, "i64", 1, 8),
    F64(28, "f64", 1, 8),
    IQ1_M(29, "iq1_m", 256, 56),
    BF16(30, "bf16", 1, 2),
    Q4_0_4_4_REMOVED(31, "q4_0_4_4", 0, 0),
    Q4_0_4_8_REMOVED(32, "q4_0_4_8", 0, 0),
    Q4_0_8_8_REMOVED(33, "q4_0_8_8", 0, 0),
    TQ1_0(34, "tq1_0", 256, 54),
    TQ2_0(35, "tq2_0", 256, 66),
    IQ4_NL_4_4_REMOVED(36, "iq4_nl_4_4", 0, 0),
    IQ4_NL_4_8_REMOVED(37, "iq4_nl_4_8", 0, 0),
    IQ4_NL_8_8_REMOVED(38, "iq4_nl_8_8", 0, 0),
    MXFP4(39, "mxfp4", 32, 17),
    NVFP4(40, "nvfp4", 64, 36),
    Q1_0(41, "q1_0", 128, 18),
    Q2_0(42, "q2_0", 64, 18);

    private static final GgmlType[] BY_ID = values();

    private final int id;
    private final String ggmlName;
    private final int blockSize;
    private final int blockBytes;

    GgmlType(int id, String ggmlName, int blockSize, int blockBytes) {
        this.id = id;
        this.ggmlName = ggmlName;
        this.blockSize = blockSize;
        this.blockBytes = blockBytes;
    }

    /** The id stored in GGUF tensor-info records. */
    public int id() { return id; }

    /** ggml's own name for the type, e.g. {@code q4_K}. */
    public String ggmlName() { return ggmlName; }

    /** Elements per block (1 for plain scalar types). */
    public int blockSize() { return blockSize; }

    /** Bytes per block. */
    public int blockBytes() { return blockBytes; }

    /** False for ids ggml retired; such tensors cannot be read. */
    public boolean isValid() { return blockSize > 0; }

    /** Storage cost in bits per element, e.g. 4.5 for Q4_K. */
    public double bitsPerWeight() { return isValid() ? 8.0 * blockBytes / blockSize : Double.NaN; }

    /** Bytes that {@code elements} consecutive elements occupy; {@code elements} must be whole blocks. */
    public long bytesFor(long elements) {
        if (!isValid()) {
            throw new IllegalStateException("tensor type " + ggmlName + " (id " + id + ") was removed from ggml");
        }
        if (elements % blockSize != 0) {
            throw new IllegalArgumentException(elements + " elements is not a whole number of " + ggmlName
                    + " blocks of " + blockSize);
        }
        return Math.multiplyExact(elements / blockSize, (long) blockBytes);
    }

    /** The type with this id, or null when the id is outside ggml's table. */
    public static GgmlType byIdOrNull(int id) {
        return id >= 0 && id < BY_ID.length ? BY_ID[id] : null;
    }

    @Override
    public String toString() {
        return name().endsWith("_REMOVED") ? ggmlName : name();
    }
}
