package moe4j.kernels.cpu;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.HugePages;
import moe4j.kernels.Weight;
import moe4j.kernels.quant.PreparedActivations;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.kernels.quant.QuantFormat;
import moe4j.kernels.quant.QuantFormats;

/**
 * A weight tensor read in place from the mapped file; rows are decoded on demand into the worker's
 * scratch. Single-row tensors (norm gains) are small and read constantly, so they are decoded once.
 */
final class CpuWeight implements Weight {

    private final String name;
    private final QuantFormat format;
    /** What products with this weight need of their activation rows, found once here rather than every product. */
    private final CpuActivations.Preparation preparation;
    private final MemorySegment data;
    private final int rowLength;
    private final int rows;
    private final int experts;
    private final long rowBytes;
    private final float[] decoded;
    /** The rows repacked in groups ({@link InterleavedRows}), which every product then reads; null when not. */
    private final MemorySegment groups;

    /** {@code tensor} read in place. */
    CpuWeight(GgufTensor tensor) {
        this(tensor, null, null);
    }

    /**
     * {@code tensor}, its rows repacked in groups of 16 into memory of {@code arena} ({@link InterleavedRows}) by
     * {@code pool}'s workers where its type and shape allow (with a null {@code pool}, never): products read that copy,
     * lookups of single rows ({@link #decodeRow}) still the mapped file.
     */
    CpuWeight(GgufTensor tensor, WorkerPool pool, Arena arena) {
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
        groups = pool != null && InterleavedRows.fits(format.type(), rows, rowLength)
                ? repack(pool, arena) : null;
        this.preparation = CpuActivations.Preparation.of(format, groups != null);
    }

    /** The repacked rows, or null where the memory for them cannot be had (then they are read in place). */
    private MemorySegment repack(WorkerPool pool, Arena arena) {
        long matrixBytes = InterleavedRows.bytes(format.type(), rows, rowLength);
        MemorySegment packed;
        try {
            packed = HugePages.allocateOrPlain(Math.multiplyExact(matrixBytes, experts), arena);
        } catch (OutOfMemoryError e) {  // native memory refused: the JVM itself is fine
            return null;
        }
        // the pages faulted in by all workers first, then filled (12-layer Q4_K_M file, 3.4 GB on 2 threads of the
        // Intel VM, one run each: 4.8 and 5.7 s of repacking with the faults inside, 0.9 s of faults + 2.2 s after)
        long pages = (packed.byteSize() + HugePages.PAGE - 1) / HugePages.PAGE;
        pool.parallelFor(Math.toIntExact(pages), 1, (from, to, worker) -> {
            for (long page = from; page < to; page++) {
                packed.set(ValueLayout.JAVA_BYTE, page * HugePages.PAGE, (byte) 0);
            }
        });
        int groupsPerMatrix = rows / InterleavedRows.ROWS;
        pool.parallelFor(experts * groupsPerMatrix, 1, (from, to, worker) -> {
            for (int i = from; i < to; ) {
                int e = i / groupsPerMatrix;
                int end = Math.min(to, (e + 1) * groupsPerMatrix);
                InterleavedRows.repack(format.type(), data, (long) e * rows * rowBytes, rowBytes, rowLength, i - e * groupsPerMatrix,
                        end - e * groupsPerMatrix, packed, e * matrixBytes);
                i = end;
            }
        });
        return packed;
    }

    /** Bytes of the repacked copy of the rows; 0 when they are read in place. */
    long repackedBytes() {
        return groups != null ? groups.byteSize() : 0;
    }

    /** Rows per work unit of a product must be a multiple of this. */
    int rowGranule() {
        return groups != null ? InterleavedRows.ROWS : 1;
    }

    /**
     * Decodes row {@code row} of matrix {@code expert} into {@code dst[dstOffset ..]}: a token's embedding, one row a
     * step, too rarely for C2 to compile vector code, so in scalar loops that allocate nothing
     * ({@link QuantFormat#dequantizeScalar}).
     */
    void decodeRow(int expert, int row, float[] dst, int dstOffset) {
        long offset = ((long) expert * rows + row) * rowBytes;
        format.dequantizeScalar(data, offset, dst, dstOffset, rowLength);
    }

    /** How activations multiplied with this weight are rounded ({@link #dotPreparedRows}). */
    QuantFormat format() {
        return format;
    }

    /** How activation rows are prepared for this weight's products. */
    CpuActivations.Preparation preparation() {
        return preparation;
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
        if (groups != null) {
            if (row % InterleavedRows.ROWS != 0 || n % InterleavedRows.ROWS != 0) {
                throw new IllegalArgumentException("rows " + row + " .. " + (row + n - 1) + " of " + name
                        + " are not whole groups of " + InterleavedRows.ROWS);
            }
            InterleavedRows.dot(format.type(), groups, expert * InterleavedRows.bytes(format.type(), rows, rowLength),
                    row / InterleavedRows.ROWS, (row + n) / InterleavedRows.ROWS, x, firstRow, tokens, out, outOffset,
                    outStride);
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
