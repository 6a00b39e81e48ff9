package moe4j.kernels.cpu;

import moe4j.kernels.Activations;

/** Heap activations: row {@code i} is {@code data[i*width .. (i+1)*width)}. */
final class CpuActivations implements Activations {

    final float[] data;
    private final int capacity;
    private final int width;

    CpuActivations(int capacity, int width) {
        if (capacity <= 0 || width <= 0) {
            throw new IllegalArgumentException("activation buffer needs positive rows and width, got "
                    + capacity + " x " + width);
        }
        long size = (long) capacity * width;
        if (size > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("activation buffer of " + capacity + " x " + width
                    + " floats exceeds the 2^31 element limit of one CPU buffer; use a smaller batch");
        }
        this.capacity = capacity;
        this.width = width;
        this.data = new float[(int) size];
    }

    @Override
    public int capacity() { return capacity; }

    @Override
    public int width() { return width; }

    @Override
    public String toString() {
        return "cpu activations " + capacity + " x " + width;
    }
}
