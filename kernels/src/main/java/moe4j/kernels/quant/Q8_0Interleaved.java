package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;
import static moe4j.kernels.quant.Simd.HALF_SB;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q8_0 matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), so that one load of
 * quants serves eight rows: the row kernel ({@link Q8_0#dotRows}) spends more instructions on a block's address, bounds
 * checks and the fold of its lanes than on its products. With 512-bit vectors Q8_0 keeps its row kernel.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (576) bytes,
 * 16 x 34 + 6% (the scales as floats):
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the quants at {@code 64}: for each pair {@code k} of the block's elements ({@code 2k, 2k + 1}), 32 bytes: row
 *     {@code i}'s two quants at bytes {@code 2i, 2i + 1}.</li>
 * </ul>
 *
 * <p>The activations are {@link Q8_0#SHORTS}: int {@code k} of a block holds the codes of elements {@code 2k} and
 * {@code 2k + 1} as 16-bit fields. Sixteen quant bytes widened to 16-bit lanes (eight rows' pair {@code k}) times that
 * int broadcast leave each product in its own lane; two pairs' products added (at most {@code 2 * 128 * 127} in
 * magnitude) fit a lane, and with {@code 2^15} added to the lower field of each int it is {@code l + 2^15}, in
 * {@code [256, 65280]}, within 16 unsigned bits: read as an int, the lane is {@code v = 65536 h + l + 2^15}, with {@code h = v >> 16} (the upper
 * field, signed). So a row's sum of both fields over the block's eight steps is
 * {@code sum v - 65535 sum (v >> 16) - 8 * 2^15}: two int sums (modulo 2^32, exact as the block's true sum, at most
 * {@code 32 * 128 * 127}, fits). Converted, times {@code d * xd}, into the row's accumulator:
 * {@code acc = fma(S, d * xd, acc)} a block, as llama.cpp's {@code ggml_vec_dot_q8_0_q8_0} sums, every token alike
 * whether alone or in a batch.
 */
public final class Q8_0Interleaved {

    private Q8_0Interleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 32;
    private static final int BLOCK_BYTES = 34;
    static final int QUANTS = 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + QK * ROWS;
    /** {@code 2^15} in the lower field of each int: a lane's lower sum made nonnegative, so it does not borrow. */
    static final ShortVector BIAS = IntVector.broadcast(HALF_I, 1 << 15).reinterpretAsShorts();
    /** Where a block's {@code sum v} starts: less its eight steps' biases. */
    static final int START = -8 << 15;
    /** Steps a block: two pairs of elements each. */
    private static final int STEPS = QK / 4;

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q8_0 rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/32) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        byte[] quants = new byte[QK * ROWS];
        byte[] file = new byte[BLOCK_BYTES];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * BLOCK_BYTES;
                    MemorySegment.copy(src, Layouts.BYTE, block, file, 0, BLOCK_BYTES);
                    d[i] = Halfs.readFp16(src, block);
                    for (int k = 0; k < QK / 2; k++) {
                        quants[2 * ROWS * k + 2 * i] = file[2 + 2 * k];
                        quants[2 * ROWS * k + 2 * i + 1] = file[3 + 2 * k];
                    }
                }
                long out = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(quants, 0, dst, Layouts.BYTE, out + QUANTS, quants.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q8_0 with 256-bit vectors ({@link Q8_0#SHORTS}).
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q8_0, Q8_0.SHORTS, QK, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
                firstToken, tokens);
        dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
    }

    /** {@link #dot} unchecked: the only product of this layout, in 256-bit vectors. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens > 1) {
            tokensHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
        } else {
            oneTokenHalves(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
        }
    }

    /**
     * The one-token product: per block both halves of the group, two pairs a step, each half's sums {@code sum v} and
     * {@code sum (v >> 16)} in two int vectors; then the block's float step.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.codePairs();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int d0 = token * blocks;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            IntVector sum0 = IntVector.broadcast(HALF_I, START);
            IntVector sum1 = sum0;
            IntVector high0 = IntVector.zero(HALF_I);
            IntVector high1 = high0;
            // one loop over the row's steps, four a pass, a block's float step after its eighth: a loop of eight steps a
            // block ran 1.4x slower (C2 set up its range checks each block), eight written out never left C1, one a
            // pass took as many scalar instructions as vector ones (one, two, four a pass: 16.5, 21, 22.7 GB/s in cache)
            for (int j = 0; j < blocks * STEPS; j += 4) {
                int b = j / STEPS;
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                long q = at + QUANTS + 4L * ROWS * (j % STEPS);
                int p = p0 + 2 * j;
                ShortVector c;
                ShortVector cNext;
                IntVector v;
                c = IntVector.broadcast(HALF_I, pairs[p]).reinterpretAsShorts();
                cNext = IntVector.broadcast(HALF_I, pairs[p + 1]).reinterpretAsShorts();
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q, Simd.LE).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 32, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 16, Simd.LE).convertShape(B2S, HALF_S, 0))
                        .mul(c).add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 48, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 2]).reinterpretAsShorts();
                cNext = IntVector.broadcast(HALF_I, pairs[p + 3]).reinterpretAsShorts();
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 64, Simd.LE).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 96, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 80, Simd.LE).convertShape(B2S, HALF_S, 0))
                        .mul(c).add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 112, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 4]).reinterpretAsShorts();
                cNext = IntVector.broadcast(HALF_I, pairs[p + 5]).reinterpretAsShorts();
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 128, Simd.LE).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 160, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 144, Simd.LE).convertShape(B2S, HALF_S, 0))
                        .mul(c).add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 176, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 6]).reinterpretAsShorts();
                cNext = IntVector.broadcast(HALF_I, pairs[p + 7]).reinterpretAsShorts();
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 192, Simd.LE).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 224, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                v = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 208, Simd.LE).convertShape(B2S, HALF_S, 0))
                        .mul(c).add(((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w, q + 240, Simd.LE)
                                .convertShape(B2S, HALF_S, 0)).mul(cNext))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                if (j % STEPS == STEPS - 4) {
                    float scale = xd[d0 + b];
                    IntVector dot0 = sum0.add(high0).sub(high0.lanewise(LSHL, 16));
                    IntVector dot1 = sum1.add(high1).sub(high1.lanewise(LSHL, 16));
                    acc0 = ((FloatVector) dot0.convertShape(I2F, HALF_F, 0))
                            .fma(FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE).mul(scale), acc0);
                    acc1 = ((FloatVector) dot1.convertShape(I2F, HALF_F, 0))
                            .fma(FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE).mul(scale), acc1);
                    sum0 = IntVector.broadcast(HALF_I, START);
                    sum1 = sum0;
                    high0 = IntVector.zero(HALF_I);
                    high1 = high0;
                }
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
    }

    /** Blocks whose quants {@link #tokensHalves} holds as floats at a time: 128 KiB, within a core's L2. */
    private static final int CHUNK_BLOCKS = 64;
    /** A chunk of a group's blocks' quants as floats, block by block, element by element (16 rows each): one a thread. */
    private static final ThreadLocal<float[]> DECODED = ThreadLocal.withInitial(() -> new float[CHUNK_BLOCKS * QK * ROWS]);

    /**
     * A batch: a chunk of each group's blocks converted to floats once (element by element, a row a lane), then four
     * tokens at a time multiplied through the chunk with their codes as floats ({@link PreparedActivations#floatCodes()}),
     * both halves of the group, each block's sums times its step into eight running sums kept in registers (written to
     * {@code out} between chunks); the last one to three tokens take {@link #oneTokenHalves}. The products are integers of at most
     * {@code 128 * 127} and a block's sums at most {@code 32 * 128 * 127}, below 2^24, so every float sum is exact: the
     * block sum is {@link #oneTokenHalves}' integer one in any order, and the float steps after it the same, in the same
     * order, so each (row, token) gets the same bits alone or in a batch. Floats multiply eight products an instruction
     * where the 16-bit lanes take about four instructions for eight, widening included. With the blocks innermost the
     * range checks of the codes, the step scales and {@code out} leave the loop (blocks outside the tokens: 49.9-53.2 ->
     * 62.2-63.1 GFLOP/s on the Zen 3 VM, JMH {@code MatMulBenchmark -p tokens=32 -p threads=1}). The running sums stay
     * in registers, not in a thread's array as the K-quants' tiles keep theirs
     * ({@link Q4_KInterleaved#startRunningSums}): a block's step comes every 32 values here, every 256 there, and through
     * the array this tile ran 51-58 against 61-64 GFLOP/s, the Q8_0 file's pp512 76-79 against 82 tok/s.
     */
    static void tokensHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        int width = x.width();
        int blocks = width / QK;
        float[] codes = x.floatCodes();
        float[] xd = x.codeScales();
        float[] quants = DECODED.get();
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    long at = group + (long) b * GROUP_BLOCK_BYTES;
                    int base = (b - from) * QK * ROWS;
                    for (int k = 0; k < QK / 2; k++) {
                        for (int h = 0; h < 2; h++) {
                            // int lane i: row i's quant 2k in the lower field, 2k + 1 in the upper, each sign-extended
                            IntVector pair = ((ShortVector) ByteVector.fromMemorySegment(HALF_SB, w,
                                    at + QUANTS + 2L * ROWS * k + ROWS * h, Simd.LE).convertShape(B2S, HALF_S, 0))
                                    .reinterpretAsInts();
                            ((FloatVector) pair.lanewise(LSHL, 16).lanewise(ASHR, 16).convert(I2F, 0))
                                    .intoArray(quants, base + 2 * ROWS * k + 8 * h);
                            ((FloatVector) pair.lanewise(ASHR, 16).convert(I2F, 0))
                                    .intoArray(quants, base + 2 * ROWS * k + ROWS + 8 * h);
                        }
                    }
                }
                for (int t = 0; t < tiled; t += 4) {
                    int token = firstToken + t;
                    int o = rowOut + t * outStride;
                    FloatVector sA0 = FloatVector.zero(HALF_F);
                    FloatVector sA1 = sA0;
                    FloatVector sB0 = sA0;
                    FloatVector sB1 = sA0;
                    FloatVector sC0 = sA0;
                    FloatVector sC1 = sA0;
                    FloatVector sD0 = sA0;
                    FloatVector sD1 = sA0;
                    if (from > 0) {
                        sA0 = FloatVector.fromArray(HALF_F, out, o);
                        sA1 = FloatVector.fromArray(HALF_F, out, o + 8);
                        sB0 = FloatVector.fromArray(HALF_F, out, o + outStride);
                        sB1 = FloatVector.fromArray(HALF_F, out, o + outStride + 8);
                        sC0 = FloatVector.fromArray(HALF_F, out, o + 2 * outStride);
                        sC1 = FloatVector.fromArray(HALF_F, out, o + 2 * outStride + 8);
                        sD0 = FloatVector.fromArray(HALF_F, out, o + 3 * outStride);
                        sD1 = FloatVector.fromArray(HALF_F, out, o + 3 * outStride + 8);
                    }
                    for (int b = from; b < to; b++) {
                        int cA = token * width + b * QK;
                        int q = (b - from) * QK * ROWS;
                        FloatVector a0 = FloatVector.zero(HALF_F);
                        FloatVector a1 = a0;
                        FloatVector b0 = a0;
                        FloatVector b1 = a0;
                        FloatVector c0 = a0;
                        FloatVector c1 = a0;
                        FloatVector e0 = a0;
                        FloatVector e1 = a0;
                        for (int e = 0; e < QK; e++) {
                            FloatVector low = FloatVector.fromArray(HALF_F, quants, q + ROWS * e);
                            FloatVector high = FloatVector.fromArray(HALF_F, quants, q + ROWS * e + 8);
                            FloatVector c = FloatVector.broadcast(HALF_F, codes[cA + e]);
                            a0 = low.fma(c, a0);
                            a1 = high.fma(c, a1);
                            c = FloatVector.broadcast(HALF_F, codes[cA + width + e]);
                            b0 = low.fma(c, b0);
                            b1 = high.fma(c, b1);
                            c = FloatVector.broadcast(HALF_F, codes[cA + 2 * width + e]);
                            c0 = low.fma(c, c0);
                            c1 = high.fma(c, c1);
                            c = FloatVector.broadcast(HALF_F, codes[cA + 3 * width + e]);
                            e0 = low.fma(c, e0);
                            e1 = high.fma(c, e1);
                        }
                        long at = group + (long) b * GROUP_BLOCK_BYTES;
                        FloatVector d0 = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                        FloatVector d1 = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                        float scale = xd[token * blocks + b];
                        sA0 = a0.fma(d0.mul(scale), sA0);
                        sA1 = a1.fma(d1.mul(scale), sA1);
                        scale = xd[(token + 1) * blocks + b];
                        sB0 = b0.fma(d0.mul(scale), sB0);
                        sB1 = b1.fma(d1.mul(scale), sB1);
                        scale = xd[(token + 2) * blocks + b];
                        sC0 = c0.fma(d0.mul(scale), sC0);
                        sC1 = c1.fma(d1.mul(scale), sC1);
                        scale = xd[(token + 3) * blocks + b];
                        sD0 = e0.fma(d0.mul(scale), sD0);
                        sD1 = e1.fma(d1.mul(scale), sD1);
                    }
                    sA0.intoArray(out, o);
                    sA1.intoArray(out, o + 8);
                    sB0.intoArray(out, o + outStride);
                    sB1.intoArray(out, o + outStride + 8);
                    sC0.intoArray(out, o + 2 * outStride);
                    sC1.intoArray(out, o + 2 * outStride + 8);
                    sD0.intoArray(out, o + 3 * outStride);
                    sD1.intoArray(out, o + 3 * outStride + 8);
                }
            }
            for (int t = tiled; t < tokens; t++) {
                oneTokenHalves(w, offset, g, g + 1, x, firstToken + t, out, rowOut + t * outStride);
            }
        }
    }
}
