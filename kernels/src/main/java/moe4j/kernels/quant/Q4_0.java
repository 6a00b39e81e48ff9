package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

import moe4j.gguf.GgmlType;

/** 32 4-bit quants (offset 8) times one fp16 scale: {@code y = (q - 8) * d}. */
public final class Q4_0 extends BlockFormat {

    static final Q4_0 INSTANCE = new Q4_0();

    private static final int QK = 32;
    private static final int BYTES = 18;

    private Q4_0() { super(GgmlType.Q4_0, 0); }

    // vector constants rather than scalar operands, which C2 re-broadcast from memory in every iteration of
    // the row kernel's inner loop
    private static final IntVector LOW_NIBBLE = IntVector.broadcast(Simd.I, 0xF);
    private static final IntVector OFFSET = IntVector.broadcast(Simd.I, 8);

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            for (int j = 0; j < QK / 2; j++) {
                int q = u8(src, block + 2 + j);
                dst[out + j] = ((q & 0xF) - 8) * d;
                dst[out + j + QK / 2] = ((q >>> 4) - 8) * d;
            }
        }
    }

    /**
     * Fused dot product. Block {@code b} is groups {@code 2b, 2b+1}; see {@link Q4_K#dotBlocks}. The bytes are
     * zero-extended so that the high nibble is one logical shift with no mask.
     */
    @Override
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        FloatVector a0 = FloatVector.zero(Simd.F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int b = 0; b < count / QK; b++) {
            long block = srcOffset + (long) b * BYTES;
            float d = Halfs.readFp16(src, block);
            int e = xOffset + QK * b;
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d);
            FloatVector w1 = ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d);
            FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, x, e), a0);
            FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, x, e + 16), a1);
            a0 = a2;
            a1 = a3;
            a2 = n0;
            a3 = n1;
        }
        return DecodedDot.combine(a0, a1, a2, a3);
    }

    @Override
    boolean decodesScaled() { return true; }

    /** Eight blocks: low nibbles are group {@code 2b}, high nibbles group {@code 2b+1}, each {@code (q - 8) * d}. */
    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        MemorySegment w = s.w;
        long e = s.at[slot];
        long gb = s.groupBytes;
        for (int b = 0; b < ScaledDot.QK / QK; b++) {
            long at = block + (long) b * BYTES;
            float d = Halfs.readFp16(src, at);
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 2, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
            ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d).intoMemorySegment(w, e + 2L * b * gb, ScaledDot.NATIVE);
            ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d)
                    .intoMemorySegment(w, e + (2L * b + 1) * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    /**
     * {@link #dotBlocks}' loop (same operations, same order) for each row in turn. Blocks of 18 bytes give no
     * wider load that lines up with the 16 quant bytes, and the loop is bound by its vector arithmetic; as for
     * {@link Q8_0#dotRows}, the gain is the per-row calls and checks and the inlined combine.
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        float[] xv = x.values();
        int xRow = token * width;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector a0 = FloatVector.zero(Simd.F);
            FloatVector a1 = a0;
            FloatVector a2 = a0;
            FloatVector a3 = a0;
            for (int b = 0; b < blocks; b++) {
                long block = row + (long) b * BYTES;
                float d = Halfs.readFp16(src, block);
                int e = xRow + QK * b;
                IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(ZERO_EXTEND_B2I, Simd.I, 0);
                FloatVector w0 = ((FloatVector) q.and(LOW_NIBBLE).sub(OFFSET).convert(I2F, 0)).mul(d);
                FloatVector w1 = ((FloatVector) q.lanewise(LSHR, Simd.SHIFT_4).sub(OFFSET).convert(I2F, 0)).mul(d);
                FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, xv, e), a0);
                FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, xv, e + 16), a1);
                a0 = a2;
                a1 = a3;
                a2 = n0;
                a3 = n1;
            }
            out[outOffset + r] = DecodedDot.combine(a0, a1, a2, a3);
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /**
     * ggml's quantize_row_q4_0_ref: the signed value of largest magnitude maps to level 0 (d = max/-8);
     * levels are truncations of {@code x/d + 8.5}, capped at 15.
     */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            int in = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float amax = 0;
            float max = 0;
            for (int j = 0; j < QK; j++) {
                float v = src[in + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            Halfs.writeFp16(dst, block, d);
            for (int j = 0; j < QK / 2; j++) {
                int lo = Math.min(15, (byte) (int) (src[in + j] * id + 8.5f));
                int hi = Math.min(15, (byte) (int) (src[in + j + QK / 2] * id + 8.5f));
                dst.set(Layouts.BYTE, block + 2 + j, (byte) (lo | (hi << 4)));
            }
        }
    }
}
