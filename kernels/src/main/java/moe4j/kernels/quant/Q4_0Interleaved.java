package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q4_0 matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), each group run as
 * two halves of 8 rows as {@link Q4_KInterleaved#oneTokenHalves} runs Q4_K's; with 512-bit vectors Q4_0 keeps its row
 * kernel. A block's quants take Q4_K's sub-block layout, and the kernel Q4_K's telescoped pairs.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (320)
 * bytes, 16 x 18 + 11% (the scales as floats):
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the quants at {@code 64}: four 64-byte vectors of 32 16-bit lanes; lane {@code 2i + h} of vector {@code w} holds
 *     row {@code i}'s elements {@code 16h + 4w + k} at bits {@code 4k}, {@code k = 0..3}: so lane {@code 2i} meets
 *     element {@code p = 4w + k} and lane {@code 2i + 1} element {@code 16 + p}, the two halves of the activations'
 *     pair {@code p} of the block ({@link PreparedActivations#tilePairs()}).</li>
 * </ul>
 *
 * <p>A weight is {@code d * (q - 8)}. A lane's sixteen products go to one 16-bit sum, to which {@code -8} times the
 * lane's code sum is added ({@link #steps}' last int a block): its true value {@code sum (q - 8) x}, at most
 * {@code 16 * 8 * 127} in magnitude, fits, so it is exact modulo 2^16. The halves are widened and added, and
 * {@code acc = fma(S, d * xd, acc)} a block, as llama.cpp's {@code ggml_vec_dot_q4_0_q8_0} sums.
 */
public final class Q4_0Interleaved {

    private Q4_0Interleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 32;
    private static final int BLOCK_BYTES = 18;
    static final int QUANTS = 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 4 * 64;
    /** Telescoped pairs and the start of the sums per block ({@link #steps}). */
    static final int STEPS = 17;
    private static final int START = 16;


    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q4_0 rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/32) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        short[] quants = new short[4 * 32];
        byte[] file = new byte[BLOCK_BYTES];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * BLOCK_BYTES;
                    MemorySegment.copy(src, Layouts.BYTE, block, file, 0, BLOCK_BYTES);
                    d[i] = Halfs.readFp16(src, block);
                    for (int w = 0; w < 4; w++) {
                        int low = 0;
                        int high = 0;
                        for (int k = 0; k < 4; k++) {
                            // byte t: element t in its low nibble, t + 16 in its high one
                            int t = file[2 + 4 * w + k] & 0xFF;
                            low |= (t & 0xF) << (4 * k);
                            high |= (t >>> 4) << (4 * k);
                        }
                        quants[32 * w + 2 * i] = (short) low;
                        quants[32 * w + 2 * i + 1] = (short) high;
                    }
                }
                long out = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(quants, 0, dst, Layouts.SHORT_LE, out + QUANTS, quants.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q4_0.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q4_0, Q4_0.PAIRS, QK, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
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

    /** Blocks whose nibbles {@link #tokensHalves} holds as 16-bit lanes at a time: 64 KiB, within a core's L2. */
    private static final int CHUNK_BLOCKS = 64;
    /** A chunk of a group's blocks' nibbles as 16-bit lanes, for {@link #tokensHalves}: one array a thread. */
    private static final ThreadLocal<short[]> NIBBLES = ThreadLocal.withInitial(() -> new short[CHUNK_BLOCKS * 2 * 16 * 16]);
    private static final ShortVector NIBBLE = ShortVector.broadcast(HALF_S, (short) 0xF);

    /**
     * A batch, as {@link Q4_KInterleaved#tokensHalves} runs Q4_K's: a chunk of each group's blocks' nibbles taken out
     * once into 16-bit lanes of a thread's array, then four tokens at a time taken through the chunk, their code pairs
     * multiplied with the nibbles, each token's 16-bit sums starting at its {@code -8} offsets, each block's float step
     * into eight running sums kept in registers (written to {@code out} once a chunk); the last one to three tokens take
     * {@link #oneTokenHalves}. Each token's sums and float steps are {@link #oneTokenHalves}', in the same order: the
     * same bits. With the blocks innermost {@code out} is not read and written every block, and the range checks of
     * the pairs, the step scales and {@code out} leave the loop (as {@link Q8_0Interleaved#tokensHalves}).
     */
    static void tokensHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        InterleavedRows.requireSteps(GgmlType.Q4_0, x);
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] steps = x.stepPairs();
        float[] xd = x.codeScales();
        short[] nibbles = NIBBLES.get();
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            // with fewer than four tokens no tile runs: no group-block to take out
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    long at = group + (long) b * GROUP_BLOCK_BYTES;
                    for (int h = 0; h < 2; h++) {
                        for (int v = 0; v < 4; v++) {
                            ShortVector lanes = ShortVector.fromMemorySegment(HALF_S, w, at + QUANTS + 64L * v + 32L * h,
                                    Simd.LE);
                            int u = 512 * (b - from) + 16 * (16 * h + 4 * v);
                            lanes.and(NIBBLE).intoArray(nibbles, u);
                            lanes.lanewise(LSHR, 4).and(NIBBLE).intoArray(nibbles, u + 16);
                            lanes.lanewise(LSHR, 8).and(NIBBLE).intoArray(nibbles, u + 32);
                            lanes.lanewise(LSHR, 12).intoArray(nibbles, u + 48);
                        }
                    }
                }
                for (int t = 0; t < tiled; t += 4) {
                    int tokenA = firstToken + t;
                    int o = rowOut + t * outStride;
                    FloatVector accA0 = FloatVector.zero(HALF_F);
                    FloatVector accA1 = accA0;
                    FloatVector accB0 = accA0;
                    FloatVector accB1 = accA0;
                    FloatVector accC0 = accA0;
                    FloatVector accC1 = accA0;
                    FloatVector accD0 = accA0;
                    FloatVector accD1 = accA0;
                    if (from > 0) {
                        accA0 = FloatVector.fromArray(HALF_F, out, o);
                        accA1 = FloatVector.fromArray(HALF_F, out, o + 8);
                        accB0 = FloatVector.fromArray(HALF_F, out, o + outStride);
                        accB1 = FloatVector.fromArray(HALF_F, out, o + outStride + 8);
                        accC0 = FloatVector.fromArray(HALF_F, out, o + 2 * outStride);
                        accC1 = FloatVector.fromArray(HALF_F, out, o + 2 * outStride + 8);
                        accD0 = FloatVector.fromArray(HALF_F, out, o + 3 * outStride);
                        accD1 = FloatVector.fromArray(HALF_F, out, o + 3 * outStride + 8);
                    }
                    for (int b = from; b < to; b++) {
                        int pA = tokenA * (width / 2) + b * 16;
                        int pB = pA + width / 2;
                        int pC = pB + width / 2;
                        int pD = pC + width / 2;
                        int sA = STEPS * (tokenA * blocks + b) + START;
                        int n = 512 * (b - from);
                        ShortVector sumA0 = IntVector.broadcast(HALF_I, steps[sA]).reinterpretAsShorts();
                        ShortVector sumA1 = sumA0;
                        ShortVector sumB0 = IntVector.broadcast(HALF_I, steps[sA + STEPS * blocks]).reinterpretAsShorts();
                        ShortVector sumB1 = sumB0;
                        ShortVector sumC0 = IntVector.broadcast(HALF_I, steps[sA + 2 * STEPS * blocks])
                                .reinterpretAsShorts();
                        ShortVector sumC1 = sumC0;
                        ShortVector sumD0 = IntVector.broadcast(HALF_I, steps[sA + 3 * STEPS * blocks])
                                .reinterpretAsShorts();
                        ShortVector sumD1 = sumD0;
                        for (int u = 0; u < 16; u++) {
                            ShortVector n0 = ShortVector.fromArray(HALF_S, nibbles, n + 16 * u);
                            ShortVector n1 = ShortVector.fromArray(HALF_S, nibbles, n + 16 * (16 + u));
                            ShortVector c;
                            c = IntVector.broadcast(HALF_I, pairs[pA + u]).reinterpretAsShorts();
                            sumA0 = sumA0.add(n0.mul(c));
                            sumA1 = sumA1.add(n1.mul(c));
                            c = IntVector.broadcast(HALF_I, pairs[pB + u]).reinterpretAsShorts();
                            sumB0 = sumB0.add(n0.mul(c));
                            sumB1 = sumB1.add(n1.mul(c));
                            c = IntVector.broadcast(HALF_I, pairs[pC + u]).reinterpretAsShorts();
                            sumC0 = sumC0.add(n0.mul(c));
                            sumC1 = sumC1.add(n1.mul(c));
                            c = IntVector.broadcast(HALF_I, pairs[pD + u]).reinterpretAsShorts();
                            sumD0 = sumD0.add(n0.mul(c));
                            sumD1 = sumD1.add(n1.mul(c));
                        }
                        // each token's block sums widened, then its float step (written out: a helper taking the
                        // vectors would box them)
                        long at = group + (long) b * GROUP_BLOCK_BYTES;
                        FloatVector d0 = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                        FloatVector d1 = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                        IntVector halves;
                        float scale = xd[tokenA * blocks + b];
                        halves = sumA0.reinterpretAsInts();
                        accA0 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d0.mul(scale), accA0);
                        halves = sumA1.reinterpretAsInts();
                        accA1 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d1.mul(scale), accA1);
                        scale = xd[(tokenA + 1) * blocks + b];
                        halves = sumB0.reinterpretAsInts();
                        accB0 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d0.mul(scale), accB0);
                        halves = sumB1.reinterpretAsInts();
                        accB1 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d1.mul(scale), accB1);
                        scale = xd[(tokenA + 2) * blocks + b];
                        halves = sumC0.reinterpretAsInts();
                        accC0 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d0.mul(scale), accC0);
                        halves = sumC1.reinterpretAsInts();
                        accC1 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d1.mul(scale), accC1);
                        scale = xd[(tokenA + 3) * blocks + b];
                        halves = sumD0.reinterpretAsInts();
                        accD0 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d0.mul(scale), accD0);
                        halves = sumD1.reinterpretAsInts();
                        accD1 = ((FloatVector) halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                                .convertShape(I2F, HALF_F, 0)).fma(d1.mul(scale), accD1);
                    }
                    accA0.intoArray(out, o);
                    accA1.intoArray(out, o + 8);
                    accB0.intoArray(out, o + outStride);
                    accB1.intoArray(out, o + outStride + 8);
                    accC0.intoArray(out, o + 2 * outStride);
                    accC1.intoArray(out, o + 2 * outStride + 8);
                    accD0.intoArray(out, o + 3 * outStride);
                    accD1.intoArray(out, o + 3 * outStride + 8);
                }
            }
            for (int t = tiled; t < tokens; t++) {
                oneTokenHalves(w, offset, g, g + 1, x, firstToken + t, out, rowOut + t * outStride);
            }
        }
    }

    /**
     * Row pairs {@code from .. from+count-1} of {@code pairs} (in Q4_0's tile order, {@code from} at a block's start)
     * as {@link #oneTokenHalves} multiplies them: per block {@link #STEPS} ints from {@code STEPS * from / 16}, its
     * sixteen pairs telescoped as {@link Q4_KInterleaved#steps} telescopes them, then {@code -8} times the code sum of
     * each half.
     */
    static void steps(int[] pairs, int from, int count, int[] steps) {
        for (int u = from, to = STEPS * from / 16; u < from + count; u += 16, to += STEPS) {
            Q4_KInterleaved.steps(pairs, u, 16, steps, to);
            steps[to + START] = PairTile.halfSums(pairs, u, 16, -8);
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once, one loop over a row's vectors with each
     * block's float step after its fourth; batches take {@link #tokensHalves}.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        InterleavedRows.requireSteps(GgmlType.Q4_0, x);
        int width = x.width();
        int blocks = width / QK;
        int[] steps = x.stepPairs();
        float[] xd = x.codeScales();
        int d0 = token * blocks;
        int four = Simd.opaque(4);
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            ShortVector sum0 = ShortVector.zero(HALF_S);
            ShortVector sum1 = sum0;
            // one loop over the row's vectors, a block's float step after its fourth: a loop of four a block, C2 set
            // up its range checks anew each block
            for (int j = 0; j < 4 * blocks; j++) {
                int b = j >>> 2;
                int v = j & 3;
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                long q = at + QUANTS + 64L * v;
                int sv = STEPS * (d0 + b) + 4 * v;
                ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                ShortVector c = IntVector.broadcast(HALF_I, steps[sv]).reinterpretAsShorts();
                sum0 = sum0.add(lanes0.mul(c));
                sum1 = sum1.add(lanes1.mul(c));
                lanes0 = lanes0.lanewise(LSHR, four);
                lanes1 = lanes1.lanewise(LSHR, four);
                c = IntVector.broadcast(HALF_I, steps[sv + 1]).reinterpretAsShorts();
                sum0 = sum0.add(lanes0.mul(c));
                sum1 = sum1.add(lanes1.mul(c));
                lanes0 = lanes0.lanewise(LSHR, four);
                lanes1 = lanes1.lanewise(LSHR, four);
                c = IntVector.broadcast(HALF_I, steps[sv + 2]).reinterpretAsShorts();
                sum0 = sum0.add(lanes0.mul(c));
                sum1 = sum1.add(lanes1.mul(c));
                lanes0 = lanes0.lanewise(LSHR, four);
                lanes1 = lanes1.lanewise(LSHR, four);
                c = IntVector.broadcast(HALF_I, steps[sv + 3]).reinterpretAsShorts();
                sum0 = sum0.add(lanes0.mul(c));
                sum1 = sum1.add(lanes1.mul(c));
                if (v == 3) {
                    float scale = xd[d0 + b];
                    // the -8 offsets added last: the same 16-bit sums as added first, modulo 2^16
                    ShortVector start = IntVector.broadcast(HALF_I, steps[STEPS * (d0 + b) + START]).reinterpretAsShorts();
                    IntVector halves = sum0.add(start).reinterpretAsInts();
                    IntVector dot = halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16));
                    acc0 = ((FloatVector) dot.convertShape(I2F, HALF_F, 0))
                            .fma(FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE).mul(scale), acc0);
                    halves = sum1.add(start).reinterpretAsInts();
                    dot = halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16));
                    acc1 = ((FloatVector) dot.convertShape(I2F, HALF_F, 0))
                            .fma(FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE).mul(scale), acc1);
                    sum0 = ShortVector.zero(HALF_S);
                    sum1 = sum0;
                }
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
    }
}
