package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.B2S;
import static jdk.incubator.vector.VectorOperators.F2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static moe4j.kernels.quant.Simd.HALF_B;
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
 * IQ4_XS matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), as Q8_0's are
 * ({@link Q8_0Interleaved}): one load of quant bytes serves eight rows, where the row kernel ({@link IQ4_XS#dotRows})
 * spent as much on each row's block set-up as on its products. With 512-bit vectors IQ4_XS keeps its row kernel.
 *
 * <p>Layout: for each group of 16 rows, its super-blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES}
 * (2240) bytes, 16 x 136 + 3%:
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>at {@link #SCALES}, each sub-block's scales {@code ls - 32} as signed bytes, 16 rows a sub-block;</li>
 * <li>at {@link #QUANTS}, each sub-block's quant bytes (256), each half of the group (128), then for each pair
 *     {@code m} (0..7) 16 bytes: row {@code i}'s bytes {@code 2m, 2m + 1} of the sub-block at {@code 2i, 2i + 1}. The
 *     file's byte {@code t} of a sub-block holds element {@code t} in its low nibble and {@code t + 16} in its high one,
 *     so the low nibbles are the elements of pair {@code m}, the high ones those of pair {@code m + 8}.</li>
 * </ul>
 *
 * <p>One token: the nibbles looked up in the 16 levels as bytes (one {@code vpshufb} each), widened to 16-bit lanes,
 * times the activations' code pairs ({@link IQ4_XS#NATURAL_SHORTS}), two products a lane (at most
 * {@code 2 * 127 * 127}), summed as {@link Q8_0Interleaved} sums them: {@code 2^15} added to each int's lower field,
 * {@code sum v - 65535 sum (v >> 16)} the sub-block's exact sum, times its scale, added over the super-block in int
 * lanes; then {@code acc = fma(sumi, d * xd, acc)} a super-block, the sums llama.cpp's {@code ggml_vec_dot_iq4_xs_q8_K}
 * forms. Batches multiply the levels and codes as floats: a sub-block's products and sums are integers below 2^24, so
 * exact, and the same integer sums follow: the same bits alone or batched.
 */
public final class IQ4_XSInterleaved {

    private IQ4_XSInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int SUB = 32;
    private static final int BLOCK_BYTES = 136;
    static final int SCALES = 64;
    static final int QUANTS = SCALES + QK / SUB * ROWS;
    /** Bytes of one super-block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + QK / 2 * ROWS;
    private static final ByteVector LEVELS = IQ4_XS.LEVEL_BYTES;
    /** {@link Q8_0Interleaved}'s: a sub-block is eight steps too. */
    private static final ShortVector BIAS = Q8_0Interleaved.BIAS;
    private static final int START = Q8_0Interleaved.START;

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of IQ4_XS rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        byte[] scales = new byte[QK / SUB * ROWS];
        byte[] quants = new byte[QK / 2 * ROWS];
        byte[] file = new byte[BLOCK_BYTES];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * BLOCK_BYTES;
                    MemorySegment.copy(src, Layouts.BYTE, block, file, 0, BLOCK_BYTES);
                    d[i] = Halfs.readFp16(src, block);
                    int scalesH = (file[2] & 0xFF) | (file[3] & 0xFF) << 8;
                    for (int j = 0; j < QK / SUB; j++) {
                        int ls = ((file[4 + j / 2] & 0xFF) >>> (4 * (j % 2)) & 0xF) | ((scalesH >>> (2 * j)) & 3) << 4;
                        scales[ROWS * j + i] = (byte) (ls - 32);
                        for (int t = 0; t < 16; t++) {
                            quants[256 * j + 128 * (i / 8) + 16 * (t / 2) + 2 * (i % 8) + t % 2] = file[8 + 16 * j + t];
                        }
                    }
                }
                long out = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(scales, 0, dst, Layouts.BYTE, out + SCALES, scales.length);
                MemorySegment.copy(quants, 0, dst, Layouts.BYTE, out + QUANTS, quants.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for IQ4_XS with 256-bit vectors.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.IQ4_XS, IQ4_XS.NATURAL_SHORTS, QK, GROUP_BLOCK_BYTES, w, offset, fromGroup,
                toGroup, x, firstToken, tokens);
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
     * The one-token product: one loop over a row's steps (a pair {@code m} of a sub-block, both halves of the group), a
     * sub-block's sum times its scales after its eighth step and a super-block's float step after its last; loops
     * nested a block cost C2's range-check set-up each time ({@link Q8_0Interleaved#oneTokenHalves}).
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.codePairs();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int d0 = token * blocks;
        int four = Simd.opaque(4);
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            IntVector sumi0 = IntVector.zero(HALF_I);
            IntVector sumi1 = sumi0;
            IntVector sum0 = IntVector.broadcast(HALF_I, START);
            IntVector sum1 = sum0;
            IntVector high0 = IntVector.zero(HALF_I);
            IntVector high1 = high0;
            // one loop over a row's half sub-blocks (four pairs, both halves of the group, written out), a sub-block's
            // sum times its scales after its second and a super-block's float step after its last: loops nested a
            // block cost C2's range-check set-up each time (as Q8_0Interleaved's did), and one pair a pass took as many
            // scalar instructions as vector ones
            for (int j = 0; j < blocks * 16; j++) {
                int b = j >>> 4;
                int sub = (j >>> 1) & 7;
                int m = (j & 1) * 4;
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                long q = at + QUANTS + 256L * sub + 16 * m;
                int p = p0 + 128 * b + 16 * sub + m;
                ShortVector c;
                ShortVector cHigh;
                ByteVector bytes;
                IntVector v;
                c = IntVector.broadcast(HALF_I, pairs[p]).reinterpretAsShorts();
                cHigh = IntVector.broadcast(HALF_I, pairs[p + 8]).reinterpretAsShorts();
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 128, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 1]).reinterpretAsShorts();
                cHigh = IntVector.broadcast(HALF_I, pairs[p + 9]).reinterpretAsShorts();
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 16, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 144, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 2]).reinterpretAsShorts();
                cHigh = IntVector.broadcast(HALF_I, pairs[p + 10]).reinterpretAsShorts();
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 32, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 160, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                c = IntVector.broadcast(HALF_I, pairs[p + 3]).reinterpretAsShorts();
                cHigh = IntVector.broadcast(HALF_I, pairs[p + 11]).reinterpretAsShorts();
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 48, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum0 = sum0.add(v);
                high0 = high0.add(v.lanewise(ASHR, 16));
                bytes = ByteVector.fromMemorySegment(HALF_SB, w, q + 176, Simd.LE);
                v = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(c)
                        .add(((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).mul(cHigh))
                        .add(BIAS).reinterpretAsInts();
                sum1 = sum1.add(v);
                high1 = high1.add(v.lanewise(ASHR, 16));
                if (m == 4) {
                    long scales = at + SCALES + (long) ROWS * sub;
                    sumi0 = sumi0.add(sum0.add(high0).sub(high0.lanewise(LSHL, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, scales, Simd.LE).convertShape(B2I, HALF_I, 0)));
                    sumi1 = sumi1.add(sum1.add(high1).sub(high1.lanewise(LSHL, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, scales + 8, Simd.LE).convertShape(B2I, HALF_I, 0)));
                    sum0 = IntVector.broadcast(HALF_I, START);
                    sum1 = sum0;
                    high0 = IntVector.zero(HALF_I);
                    high1 = high0;
                    if (sub == 7) {
                        float scale = xd[d0 + b];
                        acc0 = ((FloatVector) sumi0.convertShape(I2F, HALF_F, 0))
                                .fma(FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE).mul(scale), acc0);
                        acc1 = ((FloatVector) sumi1.convertShape(I2F, HALF_F, 0))
                                .fma(FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE).mul(scale), acc1);
                        sumi0 = IntVector.zero(HALF_I);
                        sumi1 = sumi0;
                    }
                }
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
    }

    /** Super-blocks whose levels {@link #tokensHalves} holds as floats at a time: 32 KiB. */
    private static final int CHUNK_BLOCKS = 2;
    /** A chunk of a group's super-blocks' levels as floats, element by element (16 rows each): one array a thread. */
    private static final ThreadLocal<float[]> DECODED = ThreadLocal.withInitial(() -> new float[CHUNK_BLOCKS * QK * ROWS]);
    /** The running sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<float[]> TILE_ACCUMULATORS = ThreadLocal.withInitial(() -> new float[4 * ROWS]);
    /** Four tokens' super-block sums, 16 rows each: one array a thread. */
    private static final ThreadLocal<int[]> TILE_SUMS = ThreadLocal.withInitial(() -> new int[4 * ROWS]);

    /**
     * A batch: a chunk of each group's super-blocks' levels converted to floats once (element by element, a row a
     * lane), then four tokens at a time taken through the chunk: each sub-block's products summed as floats with the
     * codes as floats ({@link PreparedActivations#floatCodes()}), exact (integers below 2^24), truncated to ints, times
     * the sub-block's scales and added in a thread's array; after the super-block each token's float step goes into its
     * running sums in another, copied to {@code out} once a chunk (as {@link Q4_KInterleaved#tokensHalves}). The last
     * one to three tokens take {@link #oneTokenHalves}: the same integer sums and float steps in the same order, the
     * same bits. Chunks of eight super-blocks (128 KiB of levels) with the running sums in registers ran slower than
     * the super-blocks outermost (the 12-layer IQ4_XS file's pp512 57-61 -> 33-55 tok/s); chunks of two (32 KiB) with
     * them in an array, 61-67 -> 61-71 (five alternations, three faster).
     */
    static void tokensHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        int width = x.width();
        int blocks = width / QK;
        float[] codes = x.floatCodes();
        float[] xd = x.codeScales();
        float[] levels = DECODED.get();
        int[] sums = TILE_SUMS.get();
        float[] acc = TILE_ACCUMULATORS.get();
        int four = Simd.opaque(4);
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    long at = group + (long) b * GROUP_BLOCK_BYTES;
                    for (int s = 0; s < QK / 2 * ROWS / 16; s++) {
                        // s: sub-block s >>> 4, half (s >>> 3) & 1, pair (s & 7); each 16 bytes, four elements of 8 rows
                        int sub = s >>> 4;
                        int h = (s >>> 3) & 1;
                        int m = s & 7;
                        ByteVector bytes = ByteVector.fromMemorySegment(HALF_SB, w, at + QUANTS + 16L * s, Simd.LE);
                        IntVector low = ((ShortVector) bytes.and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0))
                                .reinterpretAsInts();
                        IntVector high = ((ShortVector) bytes.reinterpretAsShorts().lanewise(LSHR, four).reinterpretAsBytes()
                                .and((byte) 0xF).selectFrom(LEVELS).convertShape(B2S, HALF_S, 0)).reinterpretAsInts();
                        int e = (b - from) * QK * ROWS + ROWS * (SUB * sub + 2 * m) + 8 * h;
                        ((FloatVector) low.lanewise(LSHL, 16).lanewise(ASHR, 16).convert(I2F, 0)).intoArray(levels, e);
                        ((FloatVector) low.lanewise(ASHR, 16).convert(I2F, 0)).intoArray(levels, e + ROWS);
                        ((FloatVector) high.lanewise(LSHL, 16).lanewise(ASHR, 16).convert(I2F, 0))
                                .intoArray(levels, e + 16 * ROWS);
                        ((FloatVector) high.lanewise(ASHR, 16).convert(I2F, 0)).intoArray(levels, e + 17 * ROWS);
                    }
                }
                for (int t = 0; t < tiled; t += 4) {
                    Q4_KInterleaved.startRunningSums(out, rowOut + t * outStride, outStride, from > 0, acc);
                    for (int b = from; b < to; b++) {
                        long at = group + (long) b * GROUP_BLOCK_BYTES;
                        int base = (b - from) * QK * ROWS;
                        int token = firstToken + t;
                        java.util.Arrays.fill(sums, 0);
                        for (int sub = 0; sub < QK / SUB; sub++) {
                            int cA = token * width + b * QK + SUB * sub;
                            FloatVector a0 = FloatVector.zero(HALF_F);
                            FloatVector a1 = a0;
                            FloatVector b0 = a0;
                            FloatVector b1 = a0;
                            FloatVector c0 = a0;
                            FloatVector c1 = a0;
                            FloatVector e0 = a0;
                            FloatVector e1 = a0;
                            for (int e = 0; e < SUB; e++) {
                                int l = base + ROWS * (SUB * sub + e);
                                FloatVector low = FloatVector.fromArray(HALF_F, levels, l);
                                FloatVector high = FloatVector.fromArray(HALF_F, levels, l + 8);
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
                            // written out: a helper taking the vectors would box them
                            IntVector ls0 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + ROWS * sub,
                                    Simd.LE).convertShape(B2I, HALF_I, 0);
                            IntVector ls1 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + ROWS * sub + 8,
                                    Simd.LE).convertShape(B2I, HALF_I, 0);
                            ((IntVector) a0.convert(F2I, 0)).mul(ls0).add(IntVector.fromArray(HALF_I, sums, 0)).intoArray(sums, 0);
                            ((IntVector) a1.convert(F2I, 0)).mul(ls1).add(IntVector.fromArray(HALF_I, sums, 8)).intoArray(sums, 8);
                            ((IntVector) b0.convert(F2I, 0)).mul(ls0).add(IntVector.fromArray(HALF_I, sums, 16)).intoArray(sums, 16);
                            ((IntVector) b1.convert(F2I, 0)).mul(ls1).add(IntVector.fromArray(HALF_I, sums, 24)).intoArray(sums, 24);
                            ((IntVector) c0.convert(F2I, 0)).mul(ls0).add(IntVector.fromArray(HALF_I, sums, 32)).intoArray(sums, 32);
                            ((IntVector) c1.convert(F2I, 0)).mul(ls1).add(IntVector.fromArray(HALF_I, sums, 40)).intoArray(sums, 40);
                            ((IntVector) e0.convert(F2I, 0)).mul(ls0).add(IntVector.fromArray(HALF_I, sums, 48)).intoArray(sums, 48);
                            ((IntVector) e1.convert(F2I, 0)).mul(ls1).add(IntVector.fromArray(HALF_I, sums, 56)).intoArray(sums, 56);
                        }
                        FloatVector d0 = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                        FloatVector d1 = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                        for (int k = 0; k < 4; k++) {
                            float scale = xd[(token + k) * blocks + b];
                            ((FloatVector) IntVector.fromArray(HALF_I, sums, 16 * k).convert(I2F, 0))
                                    .fma(d0.mul(scale), FloatVector.fromArray(HALF_F, acc, 16 * k)).intoArray(acc, 16 * k);
                            ((FloatVector) IntVector.fromArray(HALF_I, sums, 16 * k + 8).convert(I2F, 0))
                                    .fma(d1.mul(scale), FloatVector.fromArray(HALF_F, acc, 16 * k + 8))
                                    .intoArray(acc, 16 * k + 8);
                        }
                    }
                    Q4_KInterleaved.endRunningSums(acc, out, rowOut + t * outStride, outStride);
                }
            }
            for (int t = tiled; t < tokens; t++) {
                oneTokenHalves(w, offset, g, g + 1, x, firstToken + t, out, rowOut + t * outStride);
            }
        }
    }
}
