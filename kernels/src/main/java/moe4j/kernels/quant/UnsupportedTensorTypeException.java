package moe4j.kernels.quant;

import moe4j.gguf.GgmlType;

/** A tensor uses a ggml type that moe4j cannot compute with (yet). */
public class UnsupportedTensorTypeException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final GgmlType type;

    public UnsupportedTensorTypeException(GgmlType type, String message) {
        super(message);
        this.type = type;
    }

    /** The offending type. */
    public GgmlType type() { return type; }
}
