package moe4j.kernels.cuda;

import jcuda.driver.CUdeviceptr;
import moe4j.gguf.GgmlType;
import moe4j.kernels.Weight;

/**
 * A weight tensor in device memory. Matrices and expert stacks keep the file's blocks ({@code format} is
 * the tensor's type), Q3_K's (and Q6_K's, as an experiment) padded to 16-byte alignment ({@code padded}); single-row
 * tensors (norm gains) are decoded once on the host and held as f32 ({@code format} F32), since they are read as plain
 * vectors.
 *
 * @param format       layout of {@code data}
 * @param padded       whether {@code data}'s blocks lie 16-byte aligned apart instead of the file's block size (Q3_K
 *                     112 bytes instead of 110, Q6_K 224 instead of 210; see {@code CudaBackend.padded}), so that
 *                     the kernels for that layout must read it
 * @param rowBytes     bytes of one row of {@code data}
 * @param expertStride bytes from one stacked matrix to the next
 */
record CudaWeight(String name, GgmlType type, int rowLength, int rows, int experts, CUdeviceptr data,
                  GgmlType format, boolean padded, long rowBytes, long expertStride) implements Weight {

    boolean isVector() {
        return (long) rows * experts == 1;
    }

    @Override
    public String toString() {
        return name + " " + type + " [" + rowLength + ", " + rows + ", " + experts + "] on the GPU";
    }
}
