package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;
import static moe4j.kernels.quant.Simd.HALF_B;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q2_K matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), which have no Q2_K
 * row kernel (its decoding path ran at 1.1-1.6 GB/s on two Zen 3 threads): a row per pair of 16-bit lanes, the
 * activations' code pairs in Q3_K's order ({@link Q3_K#PAIRS}, which Q2_K's format takes) broadcast to all 16 rows,
 * each group run as two halves of 8 rows as {@link Q4_KInterleaved#oneTokenHalves} runs Q4_K's. With 512-bit vectors
 * Q2_K keeps its row kernel and is not repacked.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (1408)
 * bytes, 16 x 84 + 4.8%:
 * <ul>
 * <li>{@code d} and {@code dmin} of the 16 rows as floats (bytes 0-63 and 64-127);</li>
 * <li>the scale bytes as the file holds them (scale in the low nibble, minimum in the high), 16-element group
 *     {@code n}'s 16 rows at {@code 128 + 16n};</li>
 * <li>the quants, group {@code n} at {@code 384 + 64n}: one 64-byte vector whose 16-bit lane {@code 2i + h} holds
 *     row {@code i}'s elements {@code 16n + 8h + k} at bits {@code 2k, 2k + 1} ({@code k = 0..7}).</li>
 * </ul>
 * Pair {@code k} of group {@code n} in Q3_K's order joins elements {@code 16n + k} and {@code 16n + 8 + k}: the two
 * 16-bit halves of lane pair {@code 2i, 2i + 1} at bits {@code 2k}, which one 32-bit broadcast gives to every row.
 *
 * <p>A weight is {@code d * scale * q - dmin * min}. Per group each lane sums eight products of a quant (0..3) and a
 * code (at most 3 * 128 each) in 16 bits; the halves are widened and added, times the group's scale, and the minimums
 * times the group's code sum ({@link PreparedActivations#groupSums()}), both in integers: {@code S = sum_n scale_n * (q . code)} and
 * {@code M = sum_n min_n * sum(code)}, then {@code acc = fma(S, d * xd, acc)} and
 * {@code acc = fma(M, dmin * -xd, acc)}, llama.cpp's integer sums and {@link Q4_KInterleaved}'s float steps. Batches
 * take four tokens at a time ({@link #tokensHalves}) with the same sums: a token gets the same bits alone and in a
 * batch.
 */
public final class Q2_KInterleaved {

    private Q2_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 84;
    private static final int FILE_SCALES = 0;
    private static final int FILE_QS = 16;
    private static final int FILE_D = 80;
    static final int DMIN = 64;
    static final int SCALES = 128;
    static final int QUANTS = SCALES + 16 * ROWS;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 16 * 64;

    /** Two bits of each 16-bit lane, in int lanes: the int shift's carry from the upper lane is masked off. */
    private static final IntVector TWO_BITS = IntVector.broadcast(HALF_I, 0x0003_0003);

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /** The quant (0..3) of element {@code e} of the file's block at {@code block}. */
    private static int quant(MemorySegment src, long block, int e) {
        int half = e / 128;
        int k = (e / 32) % 4;
        return src.get(Layouts.BYTE, block + FILE_QS + 32L * half + e % 32) >> (2 * k) & 3;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q2_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        short[] lanes = new short[2 * ROWS];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                long at = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + (16L * g + i) * rowBytes + (long) b * BLOCK_BYTES;
                    dst.set(Layouts.FLOAT_LE, at + 4L * i, Halfs.readFp16(src, block + FILE_D));
                    dst.set(Layouts.FLOAT_LE, at + DMIN + 4L * i, Halfs.readFp16(src, block + FILE_D + 2));
                    for (int n = 0; n < 16; n++) {
                        dst.set(Layouts.BYTE, at + SCALES + 16L * n + i,
                                src.get(Layouts.BYTE, block + FILE_SCALES + n));
                    }
                }
                for (int n = 0; n < 16; n++) {
                    for (int i = 0; i < ROWS; i++) {
                        long block = srcOffset + (16L * g + i) * rowBytes + (long) b * BLOCK_BYTES;
                        for (int h = 0; h < 2; h++) {
                            int lane = 0;
                            for (int k = 0; k < 8; k++) {
                                lane |= quant(src, block, 16 * n + 8 * h + k) << (2 * k);
                            }
                            lanes[2 * i + h] = (short) lane;
                        }
                    }
                    MemorySegment.copy(lanes, 0, dst, Layouts.SHORT_LE, at + QUANTS + 64L * n, lanes.length);
                }
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q2_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q2_K, Q3_K.PAIRS, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
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
     * The one-token product in 256-bit vectors, both halves of a group at once: per block a loop over its 16 groups,
     * each one vector of eight quants a lane (a mask and a shift by two each, in int lanes), its scales and minimums
     * applied at the end of its pass.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] sums = x.groupSums();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int s0 = token * (width / 16);
        int d0 = token * blocks;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                int p = p0 + b * (QK / 2);
                int s = s0 + b * 16;
                IntVector scaled0 = IntVector.zero(HALF_I);
                IntVector scaled1 = IntVector.zero(HALF_I);
                IntVector mins0 = IntVector.zero(HALF_I);
                IntVector mins1 = IntVector.zero(HALF_I);
                for (int n = 0; n < 16; n++) {
                    long q = at + QUANTS + 64L * n;
                    IntVector lanes0 = IntVector.fromMemorySegment(HALF_I, w, q, Simd.LE);
                    IntVector lanes1 = IntVector.fromMemorySegment(HALF_I, w, q + 32, Simd.LE);
                    int pn = p + 8 * n;
                    ShortVector c = IntVector.broadcast(HALF_I, pairs[pn]).reinterpretAsShorts();
                    ShortVector sum0 = lanes0.and(TWO_BITS).reinterpretAsShorts().mul(c);
                    ShortVector sum1 = lanes1.and(TWO_BITS).reinterpretAsShorts().mul(c);
                    c = IntVector.broadcast(HALF_I, pairs[pn + 1]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 2).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 2).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 2]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 4).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 4).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 3]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 6).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 6).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 4]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 8).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 8).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 5]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 10).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 10).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 6]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 12).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 12).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    c = IntVector.broadcast(HALF_I, pairs[pn + 7]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.lanewise(LSHR, 14).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    sum1 = sum1.add(lanes1.lanewise(LSHR, 14).and(TWO_BITS).reinterpretAsShorts().mul(c));
                    long scales = at + SCALES + 16L * n;
                    IntVector bytes0 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                    IntVector bytes1 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales + 8, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                    IntVector halves = sum0.reinterpretAsInts();
                    scaled0 = scaled0.add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                            .mul(bytes0.and(0xF)));
                    halves = sum1.reinterpretAsInts();
                    scaled1 = scaled1.add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                            .mul(bytes1.and(0xF)));
                    int codeSum = sums[s + n];
                    mins0 = mins0.add(bytes0.lanewise(LSHR, 4).mul(codeSum));
                    mins1 = mins1.add(bytes1.lanewise(LSHR, 4).mul(codeSum));
                }
                float scale = xd[d0 + b];
                FloatVector d = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                FloatVector dmin = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN, Simd.LE);
                acc0 = ((FloatVector) scaled0.convertShape(I2F, HALF_F, 0)).fma(d.mul(scale), acc0);
                acc0 = ((FloatVector) mins0.convertShape(I2F, HALF_F, 0)).fma(dmin.mul(-scale), acc0);
                d = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                dmin = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN + 32, Simd.LE);
                acc1 = ((FloatVector) scaled1.convertShape(I2F, HALF_F, 0)).fma(d.mul(scale), acc1);
                acc1 = ((FloatVector) mins1.convertShape(I2F, HALF_F, 0)).fma(dmin.mul(-scale), acc1);
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
    }

    /** This layout's quants (0..3) as {@link #oneTokenHalves} takes them out, at Q6_K's tile's places. */
    static void decodeHalves(MemorySegment w, long at, short[] values, int base) {
        for (int n = 0; n < 16; n++) {
            for (int h = 0; h < 2; h++) {
                IntVector lanes = IntVector.fromMemorySegment(HALF_I, w, at + QUANTS + 64L * n + 32L * h, Simd.LE);
                for (int u = 0; u < 8; u++) {
                    lanes.lanewise(LSHR, 2 * u).and(TWO_BITS).reinterpretAsShorts()
                            .intoArray(values, base + valuesAt(n, h, u));
                }
            }
        }
    }

    /** Where {@link #decodeHalves} puts pair {@code u} of group {@code n}, half {@code h}: Q6_K's tile's places. */
    private static int valuesAt(int n, int h, int u) {
        return Q6_KInterleaved256.valuesAt(n, h, u);
    }

    /** Values of a group-block, as {@link #decodeHalves} takes them out. */
    private static final int BLOCK_VALUES = 16 * 2 * 8 * 16;
    /** Super-blocks whose quants {@link #tokensHalves} holds as 16-bit lanes at a time: 64 KiB, within a core's L2. */
    private static final int CHUNK_BLOCKS = 8;
    /** A chunk of a group's quants, for {@link #tokensHalves}: one array a thread. */
    private static final ThreadLocal<short[]> VALUES = ThreadLocal.withInitial(() -> new short[CHUNK_BLOCKS * BLOCK_VALUES]);
    /** The integer block sums ({@code S}, then {@code M}) of {@link #tokensHalves}'s four tokens: one array a thread. */
    private static final ThreadLocal<int[]> TILE_SUMS = ThreadLocal.withInitial(() -> new int[2 * 4 * ROWS]);
    /** The running sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<float[]> TILE_ACCUMULATORS = ThreadLocal.withInitial(() -> new float[4 * ROWS]);

    /**
     * A batch in 256-bit vectors: a chunk of each group's super-blocks' quants taken out once into 16-bit lanes
     * ({@link #decodeHalves}), then four tokens at a time taken through the chunk, their code pairs multiplied with the
     * quants, the block sums {@code S} and {@code M} kept in a thread's array and the running sums in another, as
     * {@link Q6_KInterleaved256#tokensHalves} runs Q6_K's. The last one to three tokens take {@link #oneTokenHalves}.
     * Each token's integer sums and float steps are the one-token kernel's, in the same order: the same bits.
     */
    static void tokensHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] sums = x.groupSums();
        float[] xd = x.codeScales();
        short[] values = VALUES.get();
        int[] blockSums = TILE_SUMS.get();
        float[] acc = TILE_ACCUMULATORS.get();
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            // with fewer than four tokens no tile runs: no group-block to take out
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    decodeHalves(w, group + (long) b * GROUP_BLOCK_BYTES, values, (b - from) * BLOCK_VALUES);
                }
                for (int t = 0; t < tiled; t += 4) {
                    Q4_KInterleaved.startRunningSums(out, rowOut + t * outStride, outStride, from > 0, acc);
                    for (int b = from; b < to; b++) {
                        long at = group + (long) b * GROUP_BLOCK_BYTES;
                        int base = (b - from) * BLOCK_VALUES;
                        int tokenA = firstToken + t;
                        int pA = tokenA * (width / 2) + b * (QK / 2);
                        int pB = pA + width / 2;
                        int pC = pB + width / 2;
                        int pD = pC + width / 2;
                        int sA = tokenA * (width / 16) + b * 16;
                        Arrays.fill(blockSums, 0);
                        for (int n = 0; n < 16; n++) {
                            ShortVector sumA0 = ShortVector.zero(HALF_S);
                            ShortVector sumA1 = sumA0;
                            ShortVector sumB0 = sumA0;
                            ShortVector sumB1 = sumA0;
                            ShortVector sumC0 = sumA0;
                            ShortVector sumC1 = sumA0;
                            ShortVector sumD0 = sumA0;
                            ShortVector sumD1 = sumA0;
                            for (int u = 0; u < 8; u++) {
                                ShortVector v0 = ShortVector.fromArray(HALF_S, values, base + valuesAt(n, 0, u));
                                ShortVector v1 = ShortVector.fromArray(HALF_S, values, base + valuesAt(n, 1, u));
                                ShortVector c;
                                c = IntVector.broadcast(HALF_I, pairs[pA + u]).reinterpretAsShorts();
                                sumA0 = sumA0.add(v0.mul(c));
                                sumA1 = sumA1.add(v1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pB + u]).reinterpretAsShorts();
                                sumB0 = sumB0.add(v0.mul(c));
                                sumB1 = sumB1.add(v1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pC + u]).reinterpretAsShorts();
                                sumC0 = sumC0.add(v0.mul(c));
                                sumC1 = sumC1.add(v1.mul(c));
                                c = IntVector.broadcast(HALF_I, pairs[pD + u]).reinterpretAsShorts();
                                sumD0 = sumD0.add(v0.mul(c));
                                sumD1 = sumD1.add(v1.mul(c));
                            }
                            pA += 8;
                            pB += 8;
                            pC += 8;
                            pD += 8;
                            long scales = at + SCALES + 16L * n;
                            IntVector bytes0 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales, Simd.LE)
                                    .convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                            IntVector bytes1 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales + 8, Simd.LE)
                                    .convertShape(ZERO_EXTEND_B2I, HALF_I, 0);
                            IntVector scale0 = bytes0.and(0xF);
                            IntVector scale1 = bytes1.and(0xF);
                            IntVector min0 = bytes0.lanewise(LSHR, 4);
                            IntVector min1 = bytes1.lanewise(LSHR, 4);
                            int codeSum;
                            IntVector halves;
                            codeSum = sums[sA + n];
                            halves = sumA0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 0).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(blockSums, 0);
                            halves = sumA1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 8).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(blockSums, 8);
                            IntVector.fromArray(HALF_I, blockSums, 64).add(min0.mul(codeSum)).intoArray(blockSums, 64);
                            IntVector.fromArray(HALF_I, blockSums, 72).add(min1.mul(codeSum)).intoArray(blockSums, 72);
                            codeSum = sums[sA + width / 16 + n];
                            halves = sumB0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 16).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(blockSums, 16);
                            halves = sumB1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 24).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(blockSums, 24);
                            IntVector.fromArray(HALF_I, blockSums, 80).add(min0.mul(codeSum)).intoArray(blockSums, 80);
                            IntVector.fromArray(HALF_I, blockSums, 88).add(min1.mul(codeSum)).intoArray(blockSums, 88);
                            codeSum = sums[sA + 2 * (width / 16) + n];
                            halves = sumC0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 32).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(blockSums, 32);
                            halves = sumC1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 40).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(blockSums, 40);
                            IntVector.fromArray(HALF_I, blockSums, 96).add(min0.mul(codeSum)).intoArray(blockSums, 96);
                            IntVector.fromArray(HALF_I, blockSums, 104).add(min1.mul(codeSum)).intoArray(blockSums, 104);
                            codeSum = sums[sA + 3 * (width / 16) + n];
                            halves = sumD0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 48).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(blockSums, 48);
                            halves = sumD1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, blockSums, 56).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(blockSums, 56);
                            IntVector.fromArray(HALF_I, blockSums, 112).add(min0.mul(codeSum)).intoArray(blockSums, 112);
                            IntVector.fromArray(HALF_I, blockSums, 120).add(min1.mul(codeSum)).intoArray(blockSums, 120);
                        }
                        FloatVector d0 = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                        FloatVector d1 = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                        FloatVector dmin0 = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN, Simd.LE);
                        FloatVector dmin1 = FloatVector.fromMemorySegment(HALF_F, w, at + DMIN + 32, Simd.LE);
                        for (int k = 0; k < 4; k++) {
                            float scale = xd[(tokenA + k) * blocks + b];
                            FloatVector a = FloatVector.fromArray(HALF_F, acc, 16 * k);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, blockSums, 16 * k)
                                    .convertShape(I2F, HALF_F, 0)).fma(d0.mul(scale), a);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, blockSums, 64 + 16 * k)
                                    .convertShape(I2F, HALF_F, 0)).fma(dmin0.mul(-scale), a);
                            a.intoArray(acc, 16 * k);
                            a = FloatVector.fromArray(HALF_F, acc, 16 * k + 8);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, blockSums, 16 * k + 8)
                                    .convertShape(I2F, HALF_F, 0)).fma(d1.mul(scale), a);
                            a = ((FloatVector) IntVector.fromArray(HALF_I, blockSums, 72 + 16 * k)
                                    .convertShape(I2F, HALF_F, 0)).fma(dmin1.mul(-scale), a);
                            a.intoArray(acc, 16 * k + 8);
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
