package moe4j.kernels.quant;

import java.util.Collections;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;

/** The registry of tensor types moe4j can compute with. */
public final class QuantFormats {

    private QuantFormats() {}

    private static final Map<GgmlType, QuantFormat> FORMATS = new EnumMap<>(GgmlType.class);

    static {
        for (QuantFormat f : new QuantFormat[] {
                F32.INSTANCE, F16.INSTANCE, BF16.INSTANCE,
                Q4_0.INSTANCE, Q4_1.INSTANCE, Q5_0.INSTANCE, Q5_1.INSTANCE, Q8_0.INSTANCE,
                Q2_K.INSTANCE, Q3_K.INSTANCE, Q4_K.INSTANCE, Q5_K.INSTANCE, Q6_K.INSTANCE,
                IQ4_NL.INSTANCE, IQ4_XS.INSTANCE}) {
            FORMATS.put(f.type(), f);
        }
    }

    private static final Set<GgmlType> SUPPORTED = Collections.unmodifiableSet(FORMATS.keySet());

    private static final String SUPPORTED_NAMES = FORMATS.keySet().stream()
            .map(GgmlType::ggmlName).collect(Collectors.joining(", "));

    /**
     * The format for {@code type}.
     *
     * @throws UnsupportedTensorTypeException when moe4j cannot compute with {@code type}
     */
    public static QuantFormat of(GgmlType type) {
        QuantFormat format = FORMATS.get(type);
        if (format == null) {
            throw new UnsupportedTensorTypeException(type, "tensor type " + type.ggmlName() + " (id " + type.id()
                    + ") is not supported yet (supported: " + SUPPORTED_NAMES + ")");
        }
        return format;
    }

    /**
     * Whether this JVM and CPU run the fused kernels, which are written for 512-bit vectors (the Vector API's preferred
     * species has 16 float lanes: AVX-512). Otherwise every type takes the generic decode-then-dot path, several times
     * slower, except the repacked types where the vectors are 256 bits ({@link InterleavedRows#available()}) and the
     * decoding of {@link #rowKernelTypesOf256BitVectors()} and the prompts of {@link #promptTileTypes()}.
     */
    public static boolean fusedKernels() {
        return Simd.FUSED;
    }

    /**
     * The types whose decoding has a row kernel of its own where the vectors are 256 bits (AVX2), in words and in ggml
     * id order, e.g. {@code "F32, Q4_0, Q8_0, IQ4_XS and BF16"}.
     */
    public static String rowKernelTypesOf256BitVectors() {
        return inWords(FORMATS.values().stream()
                .filter(f -> f instanceof BlockFormat block && block.hasHalvesRowKernel())
                .map(f -> f.type().name()).toList());
    }

    /**
     * The types whose prompt batches take the float tiles ({@link ScaledDot}) on this machine, rows decoded once for
     * every token: those that decode super-blocks for them and are not repacked here ({@link InterleavedRows#types()},
     * integer tiles), in words and in ggml id order, e.g. {@code "F16 and BF16"} where the vectors are 256
     * bits; empty where the vectors are narrower.
     */
    public static String promptTileTypes() {
        if (!Simd.FUSED && !Simd.HALVES) {
            return "";
        }
        return inWords(FORMATS.values().stream()
                .filter(f -> f instanceof BlockFormat block && block.decodesScaled()
                        && !InterleavedRows.fits(f.type(), InterleavedRows.ROWS, ScaledDot.QK))
                .map(f -> f.type().name()).toList());
    }

    private static String inWords(List<String> names) {
        int last = names.size() - 1;
        return last < 1 ? String.join("", names)
                : String.join(", ", names.subList(0, last)) + " and " + names.get(last);
    }

    /** Bits of the Vector API's preferred vectors here: 512 with AVX-512, 256 with AVX2 alone. */
    public static int vectorBits() {
        return Simd.F.vectorBitSize();
    }

    public static boolean isSupported(GgmlType type) {
        return FORMATS.containsKey(type);
    }

    /** All supported types, in ggml id order. */
    public static Set<GgmlType> supported() {
        return SUPPORTED;
    }

    /**
     * Dequantizes row {@code row} of {@code tensor} (a row is {@code shape[0]} elements) into
     * {@code dst[0 .. rowLength)}.
     *
     * @throws UnsupportedTensorTypeException naming the tensor when its type is not supported
     * @throws IndexOutOfBoundsException      when the row does not exist
     * @throws IllegalArgumentException       when {@code dst} is shorter than a row
     */
    public static void dequantizeRow(GgufTensor tensor, long row, float[] dst) {
        QuantFormat format;
        try {
            format = of(tensor.type());
        } catch (UnsupportedTensorTypeException e) {
            throw new UnsupportedTensorTypeException(tensor.type(), "tensor " + tensor.name() + ": " + e.getMessage());
        }
        long rows = tensor.rowCount();
        if (row < 0 || row >= rows) {
            throw new IndexOutOfBoundsException("row " + row + " of tensor " + tensor.name() + " does not exist (it has "
                    + rows + " rows)");
        }
        long rowLength = tensor.rowLength();
        if (rowLength > dst.length) {
            throw new IllegalArgumentException("tensor " + tensor.name() + " has rows of " + rowLength
                    + " elements but the destination holds only " + dst.length);
        }
        long rowBytes = tensor.rowBytes();
        format.dequantize(tensor.data(), row * rowBytes, dst, 0, (int) rowLength);
    }
}
