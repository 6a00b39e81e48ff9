package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/** 32 int8 quants times one fp16 scale: {@code y = q * d}. */
public final class Q8_0 extends BlockFormat {

    static final Q8_0 INSTANCE = new Q8_0();

    private static final int QK = 32;
    /**
     * Blocks per inner loop of {@link #dotRows} (see {@link Simd#ROW_SPAN}): half the usual span, as 2048 values of Q8_0
     * are 2176 bytes. One thread, rows of 4096 starting at 0, 64, 128 and 192 bytes modulo 256: loops of 64 blocks
     * 13.3-19.8 GB/s, of 32 blocks 18.9-21.8, of 16 blocks 16.5-17.5, whole rows 13.1-19.3.
     */
    private static final int SPAN = Simd.ROW_SPAN / 2 / QK;
    private static final int BYTES = 34;

    private Q8_0() { super(GgmlType.Q8_0, 0); }

    /**
     * The activations' 8-bit codes in natural order, two to an int as 16-bit fields: what {@link #dotRowsShorts}
     * multiplies 16 at a time. Only where the vectors are 256 bits; the 512-bit row kernel reads the floats.
     */
    static final LaneOrder SHORTS = LaneOrder.naturalShorts("Q8_0 shorts", ActivationRounding.Q8_0);

    @Override
    public LaneOrder laneOrder() { return Simd.HALVES ? SHORTS : LaneOrder.NATURAL; }

    @Override
    void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks, boolean vectors) {
        for (int b = 0; b < blocks; b++) {
            long block = srcOffset + (long) b * BYTES;
            int out = dstOffset + b * QK;
            float d = Halfs.readFp16(src, block);
            int j = 0;
            if (vectors && Simd.BYTE_LANES) {
                for (; j < QK; j += Simd.L) {
                    ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2 + j, Simd.LE)
                            .convertShape(B2I, Simd.I, 0)).convert(I2F, 0)).mul(d).intoArray(dst, out + j);
                }
            }
            for (; j < QK; j++) {
                dst[out + j] = i8(src, block + 2 + j) * d;
            }
        }
    }

    /** Fused dot product. Block {@code b} is groups {@code 2b, 2b+1}; see {@link Q4_K#dotBlocks}. */
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
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 18, Simd.LE).convertShape(B2I, Simd.I, 0);
            FloatVector w0 = ((FloatVector) q0.convert(I2F, 0)).mul(d);
            FloatVector w1 = ((FloatVector) q1.convert(I2F, 0)).mul(d);
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

    /** Eight blocks: each block's two groups of 16 widened, converted and scaled. */
    @Override
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        MemorySegment w = s.w;
        long e = s.at[slot];
        long gb = s.groupBytes;
        for (int b = 0; b < ScaledDot.QK / QK; b++) {
            long at = block + (long) b * BYTES;
            float d = Halfs.readFp16(src, at);
            IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 2, Simd.LE).convertShape(B2I, Simd.I, 0);
            IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, at + 18, Simd.LE).convertShape(B2I, Simd.I, 0);
            ((FloatVector) q0.convert(I2F, 0)).mul(d).intoMemorySegment(w, e + 2L * b * gb, ScaledDot.NATIVE);
            ((FloatVector) q1.convert(I2F, 0)).mul(d).intoMemorySegment(w, e + (2L * b + 1) * gb, ScaledDot.NATIVE);
        }
    }

    @Override
    boolean hasRowKernel() { return true; }

    @Override
    boolean hasHalvesRowKernel() { return true; }

    /**
     * {@link #dotBlocks}' loop (same operations, same order) for each row in turn, in loops of {@link #SPAN} blocks.
     * C2 drops its activation bounds checks, so what a row kernel saves here is the
     * per-row calls and argument checks of {@code dotPrepared}, which dominate short rows. Measured (one thread,
     * Zen 5): one 32-byte load per block split in registers was 2-10% slower than the two 16-byte loads, which
     * widen to int lanes straight from memory while the upper half of a wider load needs a byte permute and a
     * blend first; {@link DecodedDot#combine} inlines here, and summing through an array and a scalar helper
     * instead made 128-element rows 2x slower. With 256-bit vectors (AVX2) it sums in the order {@link DecodedDot#dot}
     * sums in at that width, with {@link #dequantizeBlocks}' decoding: the same bits as that path, without its pass
     * through a scratch buffer (Zen 3, JMH {@code matVecOneThread} in cache 4.9-5.3 -> 9.2-9.5 GB/s, two threads from
     * memory 8.9-9.0 -> 16.6-17.8).
     */
    @Override
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        if (!Simd.FUSED && x.laneOrder() == SHORTS) {
            dotRowsShorts(src, srcOffset, rowBytes, rows, x, token, out, outOffset);
            return;
        }
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
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    float d = Halfs.readFp16(src, block);
                    int e = xRow + QK * b;
                    if (Simd.FUSED) {
                        IntVector q0 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE).convertShape(B2I, Simd.I, 0);
                        IntVector q1 = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 18, Simd.LE).convertShape(B2I, Simd.I, 0);
                        FloatVector w0 = ((FloatVector) q0.convert(I2F, 0)).mul(d);
                        FloatVector w1 = ((FloatVector) q1.convert(I2F, 0)).mul(d);
                        FloatVector n0 = w0.fma(FloatVector.fromArray(Simd.F, xv, e), a0);
                        FloatVector n1 = w1.fma(FloatVector.fromArray(Simd.F, xv, e + 16), a1);
                        a0 = a2;
                        a1 = a3;
                        a2 = n0;
                        a3 = n1;
                    } else {
                        // 8 lanes (AVX2): the block's four groups to the four accumulators, DecodedDot's order there
                        a0 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 2, Simd.LE)
                                .convertShape(B2I, Simd.I, 0)).convert(I2F, 0)).mul(d)
                                .fma(FloatVector.fromArray(Simd.F, xv, e), a0);
                        a1 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 10, Simd.LE)
                                .convertShape(B2I, Simd.I, 0)).convert(I2F, 0)).mul(d)
                                .fma(FloatVector.fromArray(Simd.F, xv, e + 8), a1);
                        a2 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 18, Simd.LE)
                                .convertShape(B2I, Simd.I, 0)).convert(I2F, 0)).mul(d)
                                .fma(FloatVector.fromArray(Simd.F, xv, e + 16), a2);
                        a3 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(Simd.B, src, block + 26, Simd.LE)
                                .convertShape(B2I, Simd.I, 0)).convert(I2F, 0)).mul(d)
                                .fma(FloatVector.fromArray(Simd.F, xv, e + 24), a3);
                    }
                }
            }
            out[outOffset + r] = DecodedDot.combine(a0, a1, a2, a3);
        }
    }

    /**
     * {@link #dotRows} with 256-bit vectors on the activations' codes ({@link #SHORTS}), as llama.cpp multiplies Q8_0:
     * a block's two halves of 16 quants widened to 16-bit lanes, each times its 16 codes, the two products of a lane
     * added (at most {@code 2 * 128 * 127}, within 16 bits), the lanes' pairs added in 32 bits, so that int lane
     * {@code j} holds the exact sum of elements {@code 2j, 2j+1, 2j+16, 2j+17}; converted and multiplied by
     * {@code d * xd} into one accumulator (four in turn, rotated, spilled), folded as {@link Simd#sum}. Where the float kernel
     * converted and scaled each quant, this converts a sum of four: 13 vector instructions a block instead of 16, and
     * two loads of weights instead of four.
     */
    private static void dotRowsShorts(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.codePairs();
        float[] xd = x.codeScales();
        int pRow = token * width / 2;
        int dRow = token * blocks;
        for (int r = 0; r < rows; r++) {
            long row = srcOffset + r * rowBytes;
            FloatVector acc = FloatVector.zero(HALF_F);
            for (int b0 = 0; b0 < blocks; b0 += SPAN) {
                for (int b = b0, bEnd = Math.min(blocks, b0 + SPAN); b < bEnd; b++) {
                    long block = row + (long) b * BYTES;
                    float dx = Halfs.readFp16(src, block) * xd[dRow + b];
                    int p = pRow + b * (QK / 2);
                    ShortVector low = (ShortVector) ByteVector.fromMemorySegment(Simd.HALF_SB, src, block + 2, Simd.LE)
                            .convertShape(B2S, HALF_S, 0);
                    ShortVector high = (ShortVector) ByteVector.fromMemorySegment(Simd.HALF_SB, src, block + 18, Simd.LE)
                            .convertShape(B2S, HALF_S, 0);
                    IntVector lanes = low.mul(IntVector.fromArray(HALF_I, pairs, p).reinterpretAsShorts())
                            .add(high.mul(IntVector.fromArray(HALF_I, pairs, p + 8).reinterpretAsShorts()))
                            .reinterpretAsInts();
                    FloatVector sum = (FloatVector) lanes.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(lanes.lanewise(ASHR, 16)).convertShape(I2F, HALF_F, 0);
                    acc = sum.fma(FloatVector.broadcast(HALF_F, dx), acc);
                }
            }
            // Simd.sum written out (a call would box the vector)
            FloatVector v = acc.add(acc.rearrange(Simd.FOLD_4));
            v = v.add(v.rearrange(Simd.FOLD_2));
            out[outOffset + r] = v.add(v.rearrange(Simd.FOLD_1)).lane(0);
        }
    }

    @Override
    public boolean canQuantize() { return true; }

    /** ggml's quantize_row_q8_0_ref: d = amax/127, quants rounded half away from zero with the unrounded 1/d. */
    @Override
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        for (int b = 0; b < blocks; b++) {
            int in = srcOffset + b * QK;
            long block = dstOffset + (long) b * BYTES;
            float amax = 0;
            for (int j = 0; j < QK; j++) {
                amax = Math.max(amax, Math.abs(src[in + j]));
            }
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            Halfs.writeFp16(dst, block, d);
            for (int j = 0; j < QK; j++) {
                dst.set(Layouts.BYTE, block + 2 + j, (byte) (int) QuantMath.roundHalfAway(src[in + j] * id));
            }
        }
    }
}
