package moe4j.kernels.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import moe4j.gguf.GgmlType;

/**
 * The fused F16 and BF16 kernels convert each weight in vector registers; random weights never reach the
 * infinities, NaNs and subnormals, so this puts every 16-bit pattern through the one-token row kernel, in
 * calls of many rows and of one, one pattern per row, with a one-hot activation row picking it out.
 */
class HalfPrecisionDotTest {

    private static final int WIDTH = 16;
    private static final int PATTERNS = 1 << 16;
    private static final int PER_LANE = PATTERNS / WIDTH;

    @org.junit.jupiter.api.Test
    void f16DequantizesEveryPatternAsFloat16ToFloat() {
        // the vector conversion for whole vectors (the KV cache reads through it), the scalar one for the tail
        int count = PATTERNS + 5;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(2L * count + 2);
            for (int i = 0; i < count; i++) {
                data.set(Layouts.SHORT_LE, 2 + 2L * i, (short) i);
            }
            float[] out = new float[count + 3];
            QuantFormats.of(GgmlType.F16).dequantize(data, 2, out, 3, count);
            for (int i = 0; i < count; i++) {
                float expected = Float.float16ToFloat((short) i);
                String bits = Integer.toHexString(i & 0xFFFF);
                assertEquals(Float.floatToRawIntBits(expected), Float.floatToRawIntBits(out[3 + i]), () -> "fp16 bits " + bits);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"F16", "BF16"})
    void everyPatternConvertsExactlyInTheRowKernelAndTheSingleRowPath(GgmlType type) {
        QuantFormat format = QuantFormats.of(type);
        long rowBytes = WIDTH * 2L;
        PreparedActivations oneHot = new PreparedActivations();
        oneHot.reserve(format.activationRounding(), WIDTH, WIDTH);
        float[] x = new float[WIDTH];
        for (int lane = 0; lane < WIDTH; lane++) {
            x[lane] = 1;
            oneHot.prepareRow(x, 0, lane);
            x[lane] = 0;
        }
        try (Arena arena = Arena.ofConfined()) {
            // row lane*PER_LANE + j holds pattern j*WIDTH + lane at that lane and zeros elsewhere
            MemorySegment data = arena.allocate(PATTERNS * rowBytes);
            for (int lane = 0; lane < WIDTH; lane++) {
                for (int j = 0; j < PER_LANE; j++) {
                    long row = (long) (lane * PER_LANE + j) * rowBytes;
                    data.set(Layouts.SHORT_LE, row + 2L * lane, (short) (j * WIDTH + lane));
                }
            }
            float[] rows = new float[PATTERNS];
            float[] single = new float[1];
            for (int lane = 0; lane < WIDTH; lane++) {
                format.dotPreparedRows(data, (long) lane * PER_LANE * rowBytes, rowBytes, PER_LANE, oneHot, lane, 1, rows,
                        lane * PER_LANE, 1);
                for (int j = 0; j < PER_LANE; j++) {
                    int r = lane * PER_LANE + j;
                    short pattern = (short) (j * WIDTH + lane);
                    float expected = type == GgmlType.F16 ? Float.float16ToFloat(pattern) : Halfs.bf16ToFloat(pattern);
                    String what = type + " pattern 0x" + Integer.toHexString(pattern & 0xFFFF);
                    // w*1 + 0: exact, except that -0 comes out +0, which a zero tolerance accepts
                    assertEquals(expected, rows[r], 0f, what + " through the row kernel");
                    format.dotPrepared(data, r * rowBytes, oneHot, lane, 1, single, 0, 1);
                    assertEquals(Float.floatToRawIntBits(single[0]), Float.floatToRawIntBits(rows[r]),
                            what + ": row kernel " + rows[r] + ", single row " + single[0]);
                }
            }
        }
    }
}
