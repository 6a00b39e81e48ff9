package moe4j.kernels;

import moe4j.gguf.GgmlType;

/**
 * A weight tensor bound to a {@link Backend}. A matrix has {@link #rows()} output rows of
 * {@link #rowLength()} inputs; an expert stack holds {@link #experts()} such matrices back to back
 * (GGUF shape {@code [rowLength, rows, experts]}); a vector (norm gain) has one row.
 */
public interface Weight {

    /** Tensor name in the model file, for messages. */
    String name();

    GgmlType type();

    /** Inputs per row (GGUF {@code ne[0]}). */
    int rowLength();

    /** Rows of one matrix (GGUF {@code ne[1]}). */
    int rows();

    /** Number of stacked matrices (GGUF {@code ne[2]}); 1 for plain matrices and vectors. */
    int experts();
}
