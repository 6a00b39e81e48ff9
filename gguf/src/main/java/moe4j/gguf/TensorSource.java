package moe4j.gguf;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Produces one tensor's bytes for {@link GgufWriter}, straight into the output file's mapped data region, so
 * a model larger than the heap can be written. The target is exactly the tensor's byte size and initially
 * reads as zeros.
 */
@FunctionalInterface
public interface TensorSource {

    void fill(MemorySegment target) throws IOException;

    /** Copies {@code source}, which must be exactly the tensor's size (checked when filling). */
    static TensorSource copyOf(MemorySegment source) {
        return target -> {
            if (source.byteSize() != target.byteSize()) {
                throw new IllegalArgumentException("tensor source holds " + source.byteSize() + " bytes but the tensor needs "
                        + target.byteSize());
            }
            target.copyFrom(source);
        };
    }

    static TensorSource ofBytes(byte[] bytes) {
        return copyOf(MemorySegment.ofArray(bytes));
    }

    /** Little-endian F32 values, for F32 tensors. */
    static TensorSource ofFloats(float... values) {
        return target -> {
            if (target.byteSize() != 4L * values.length) {
                throw new IllegalArgumentException(values.length + " floats (" + 4L * values.length
                        + " bytes) for a tensor of " + target.byteSize() + " bytes");
            }
            MemorySegment.copy(values, 0, target, ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0,
                    values.length);
        };
    }
}
