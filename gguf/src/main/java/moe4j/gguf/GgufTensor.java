package moe4j.gguf;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * One tensor of a GGUF file: its info record plus a read-only view of its bytes in the mapped file.
 *
 * @param name       tensor name, e.g. {@code blk.0.attn_q.weight}
 * @param type       ggml storage type
 * @param shape      dimensions in ggml order ({@code shape[0]} is the contiguous row length); always 4 long, missing dims are 1
 * @param nDims      number of dimensions recorded in the file (1..4)
 * @param file       the file (or split part) that holds the data
 * @param fileOffset absolute byte offset of the data in {@code file}
 * @param data       view of exactly {@link #byteSize()} bytes; no copy
 */
public record GgufTensor(String name, GgmlType type, long[] shape, int nDims, Path file, long fileOffset,
                         MemorySegment data) {

    public long elementCount() { return shape[0] * shape[1] * shape[2] * shape[3]; }

    public long byteSize() { return data.byteSize(); }

    /** Elements per row ({@code shape[0]}). */
    public long rowLength() { return shape[0]; }

    /** Number of rows: the product of all dimensions but the first. */
    public long rowCount() { return shape[1] * shape[2] * shape[3]; }

    /** Bytes per row. */
    public long rowBytes() { return type.bytesFor(shape[0]); }

    /** Dimensions as the file records them, e.g. {@code [2048, 768, 128]}. */
    public long[] dims() { return java.util.Arrays.copyOf(shape, nDims); }
}
