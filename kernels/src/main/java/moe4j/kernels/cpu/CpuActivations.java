package moe4j.kernels.cpu;

import java.util.HashMap;
import java.util.Map;

import moe4j.gguf.GgmlType;
import moe4j.kernels.Activations;
import moe4j.kernels.quant.ActivationRounding;
import moe4j.kernels.quant.LaneOrder;
import moe4j.kernels.quant.PreparedActivations;
import moe4j.kernels.quant.QuantFormat;

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

    /**
     * What weights of one type need of the rows: their rounding, their kernel's lane order, where that kernel reads
     * telescoped pairs the type (null elsewhere), and whether their batches read the codes as floats (repacked Q8_0
     * and IQ4_XS rows: {@link PreparedActivations#readsFloatCodes}).
     */
    record Preparation(ActivationRounding rounding, LaneOrder order, GgmlType stepped, boolean floatCodes) {
        static Preparation of(QuantFormat format, boolean repackedRows) {
            return new Preparation(format.activationRounding(), format.laneOrder(), PreparedActivations.stepped(format),
                    PreparedActivations.readsFloatCodes(format, repackedRows));
        }
    }

    /** Rounded copies of the rows for matrix products, one per preparation in use; reused between products. */
    private final Map<Preparation, PreparedActivations> prepared = new HashMap<>();

    /** This buffer's prepared-rows scratch for {@code preparation}; its contents are whatever was last prepared. */
    PreparedActivations prepared(Preparation preparation) {
        return prepared.computeIfAbsent(preparation, r -> new PreparedActivations());
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
