package moe4j.kernels.cpu;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Weight;
import moe4j.kernels.quant.PreparedActivations;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * A weight tensor read in place from the mapped file; rows are decoded on demand into the worker's
 * scratch. Single-row tensors (norm gains) are small and read constantly, so they are decoded once.
 */
final class CpuWeight implements Weight {

    private final String name;
    private final QuantFormat format;
    private final MemorySegment data;
    private final int rowLength;
    private final int rows;
    private final int experts;
    private final long rowBytes;
    private final float[] decoded;

    CpuWeight(GgufTensor tensor) {
        this.name = tensor.name();
        this.format = QuantFormats.of(tensor.type());
        long[] shape = tensor.shape();
        if (shape[3] != 1) {
            throw new IllegalArgumentException("tensor " + name + " has 4 dimensions " + Arrays.toString(shape)
                    + "; the CPU backend handles at most 3");
        }
        if (shape[0] > Integer.MAX_VALUE || shape[1] > Integer.MAX_VALUE || shape[2] > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("tensor " + name + " dimension too large: " + Arrays.toString(shape));
        }
        this.rowLength = (int) shape[0];
        this.rows = (int) shape[1];
        this.experts = (int) shape[2];
        if (rowLength % format.blockSize() != 0) {
            throw new IllegalArgumentException("tensor " + name + " row length " + rowLength
                    + " is not a multiple of the " + tensor.type() + " block size " + format.blockSize());
        }
        this.rowBytes = tensor.rowBytes();
        long expected = Math.multiplyExact(rowBytes, Math.multiplyExact((long) rows, experts));
        if (tensor.data().byteSize() < expected) {
            throw new IllegalArgumentException("tensor " + name + " holds " + tensor.data().byteSize()
                    + " bytes, its shape needs " + expected);
        }
        this.data = tensor.data();
        if ((long) rows * experts == 1) {
            decoded = new float[rowLength];
            format.dequantize(data, 0, decoded, 0, rowLength);
        } else {
            decoded = null;
        }
    }

    /** Decodes row {@code row} of matrix {@code expert} into {@code dst[dstOffset ..]}. */
    void decodeRow(int expert, int row, float[] dst, int dstOffset) {
        long offset = ((long) expert * rows + row) * rowBytes;
        format.dequantize(data, offset, dst, dstOffset, rowLength);
    }

    /** How activations multiplied with this weight are rounded ({@link #dotPreparedRows}). */
    QuantFormat format() {
        return format;
    }

    /**
     * Dot products of rows {@code row .. row + n - 1} of matrix {@code expert} with prepared activation rows
     * {@code firstRow .. firstRow + tokens - 1}: row {@code row + r} times token {@code t} goes to
     * {@code out[outOffset + r + t*outStride]}.
     */
    void dotPreparedRows(int expert, int row, int n, PreparedActivations x, int firstRow, int tokens, float[] out,
                         int outOffset, int outStride) {
        if (tokens == 0) {
            return;
        }
        long offset = ((long) expert * rows + row) * rowBytes;
        format.dotPreparedRows(data, offset, rowBytes, n, x, firstRow, tokens, out, outOffset, outStride);
    }

    /** The values of a single-row tensor. */
    float[] vector() {
        if (decoded == null) {
            throw new IllegalArgumentException("tensor " + name + " is a matrix, not a vector");
        }
        return decoded;
    }

    @Override
    public String name() { return name; }

    @Override
    public GgmlType type() { return format.type(); }

    @Override
    public int rowLength() { return rowLength; }

    @Override
    public int rows() { return rows; }

    /** Bytes of one row in its storage format. */
    long rowBytes() { return rowBytes; }

    @Override
    public int experts() { return experts; }

    @Override
    public String toString() {
        return name + " " + format.type() + " [" + rowLength + ", " + rows + ", " + experts + "]";
    }
}
