package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static moe4j.kernels.quant.Simd.HALF_B;
import static moe4j.kernels.quant.Simd.HALF_F;
import static moe4j.kernels.quant.Simd.HALF_I;
import static moe4j.kernels.quant.Simd.HALF_S;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q3_K matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), which have no Q3_K
 * row kernel: a row per pair of 16-bit lanes, the activations' code pairs in Q3_K's order ({@link Q3_K#PAIRS}, packed
 * as Q6_K's) broadcast to all 16 rows, each group run as two halves of 8 rows as {@link Q4_KInterleaved#oneTokenHalves}
 * runs Q4_K's. With 512-bit vectors Q3_K keeps its row kernel and tiles, and is not repacked.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (1856)
 * bytes, 16 x 110 + 5.5%:
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the signed scales (-32..31), 16-element group {@code g}'s 16 rows at {@code 64 + 16g};</li>
 * <li>the quants, sub-block {@code j} (32 elements) at {@code 320 + 192j}: three 64-byte vectors {@code m = 0, 1, 2}.
 *     Pair {@code p} (0..15) of sub-block {@code j} joins elements {@code a = 32j + 16(p/8) + p%8} and {@code a + 8}
 *     ({@link Q6_KInterleaved#element}), so pairs 0-7 are group {@code 2j} and 8-15 group {@code 2j + 1}. 16-bit lane
 *     {@code 2i + h} of vector {@code m} holds the three bits ({@code q}, 0..7) of row {@code i}'s element of pair
 *     {@code 5m + r} ({@code a}, or {@code a + 8} for {@code h = 1}) at bits {@code 3r .. 3r+2}, {@code r = 0..4},
 *     and bit {@code m} of pair 15's at bit 15.</li>
 * </ul>
 * So a value is a field of three bits, where the file's split of two low bits and a third took two shifts, two masks
 * and an or. On a Zen 3 (JMH {@code MatVecBenchmark}, rows of 2048, three alternations) taking each value out with a
 * shift and a mask took one thread from 3.7-4.4 to 6.2-7.0 GB/s in cache, two from memory from 5.1-6.6 to 10.4-12.4;
 * multiplying the lanes whole with telescoped pairs ({@link #oneTokenHalves}) took the one thread to 8.6-9.1
 * (bench/CPU-NOTES.md).
 *
 * <p>A weight is {@code d * scale * (q - 4)}. The kernel multiplies {@code q} by
 * the codes in 16-bit lanes (exact modulo 2^16) on top of {@code -4} times the window's code sums (Q6_K's {@code -32} times, shifted right
 * by three), so each half's sum of eight products is {@code sum (q - 4) * code}, at most {@code 8 * 4 * 127} in
 * magnitude; the halves are widened and added, times the group's scale, and the block's integer sum goes to float
 * once, {@code acc = fma(S, d * xd, acc)}: llama.cpp's integer sums, and one float step a block.
 */
public final class Q3_KInterleaved {

    private Q3_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 110;
    private static final int FILE_HMASK = 0;
    private static final int FILE_QS = 32;
    private static final int FILE_SCALES = 96;
    private static final int FILE_D = 108;
    /** The head Q6_K's 256-bit layout has too ({@link Q6_KInterleaved256#repackGroups}). */
    static final int SCALES = Q6_KInterleaved256.SCALES;
    static final int QUANTS = Q6_KInterleaved256.QUANTS;
    /** A sub-block's three vectors of five values (and a bit of the sixteenth) a lane. */
    static final int SUB_BLOCK_BYTES = 3 * 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 8 * SUB_BLOCK_BYTES;

    private static final ShortVector THREE_BITS = ShortVector.broadcast(HALF_S, (short) 7);
    /** A value of each 16-bit lane, in int lanes: the int shift's carry from the upper lane is masked off. */

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q3_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        byte[] hmask = new byte[32];
        byte[] qs = new byte[64];
        int[] q = new int[16];
        Q6_KInterleaved256.repackGroups(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset, BLOCK_BYTES,
                GROUP_BLOCK_BYTES, (block, row, scales, quants) -> {
                    for (int s = 0; s < 16; s++) {
                        scales[16 * s + row] = (byte) KQuantScales.q3Scale(src, block + FILE_SCALES, s);
                    }
                    MemorySegment.copy(src, Layouts.BYTE, block + FILE_HMASK, hmask, 0, 32);
                    MemorySegment.copy(src, Layouts.BYTE, block + FILE_QS, qs, 0, 64);
                    for (int j = 0; j < 8; j++) {
                        for (int h = 0; h < 2; h++) {
                            for (int p = 0; p < 16; p++) {
                                int e = Q6_KInterleaved.element(j, p, h);
                                int half = e / 128;
                                int shift = 2 * ((e / 32) % 4);
                                int l = e % 32;
                                int low = (qs[32 * half + l] >>> shift) & 3;
                                int third = (hmask[l] >>> (4 * half + (e / 32) % 4)) & 1;
                                q[p] = low | third << 2;
                            }
                            for (int m = 0; m < 3; m++) {
                                int lane = (q[15] >>> m & 1) << 15;
                                for (int r = 0; r < 5; r++) {
                                    lane |= q[5 * m + r] << (3 * r);
                                }
                                quants[SUB_BLOCK_BYTES / 2 * j + 32 * m + 2 * row + h] = (short) lane;
                            }
                        }
                    }
                    return Halfs.readFp16(src, block + FILE_D);
                });
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q3_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q3_K, Q3_K.PAIRS, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
                firstToken, tokens);
        dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
    }

    /** {@link #dot} unchecked: the only product of this layout, in 256-bit vectors. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens > 1) {
            Q6_KInterleaved256.tokensHalves(Q3_KInterleaved::decodeHalves, 3, GROUP_BLOCK_BYTES,
                    Q3_KInterleaved::oneTokenHalves, w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset,
                    outStride);
        } else {
            oneTokenHalves(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
        }
    }

    /** This layout's quants (0..7) for {@link Q6_KInterleaved256#tokensHalves}, as {@link #oneTokenHalves} takes them out. */
    static void decodeHalves(MemorySegment w, long at, short[] values, int base) {
        for (int j = 0; j < 8; j++) {
            for (int h = 0; h < 2; h++) {
                ShortVector spread = ShortVector.zero(HALF_S);
                for (int m = 0; m < 3; m++) {
                    ShortVector lanes = ShortVector.fromMemorySegment(HALF_S, w,
                            at + QUANTS + (long) SUB_BLOCK_BYTES * j + 64L * m + 32L * h, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        int p = 5 * m + r;
                        lanes.lanewise(LSHR, 3 * r).and(THREE_BITS)
                                .intoArray(values, base + Q6_KInterleaved256.valuesAt(2 * j + p / 8, h, p % 8));
                    }
                    spread = spread.or(lanes.lanewise(LSHR, 15).lanewise(LSHL, m));
                }
                spread.intoArray(values, base + Q6_KInterleaved256.valuesAt(2 * j + 1, h, 7));
            }
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once, reading one line ahead per group-block
     * ({@link ReadAhead#touchLine}). Each vector's lanes are multiplied whole and shifted right by three bits at a
     * time with {@link #steps}' telescoped pairs, as {@link Q4_KInterleaved#oneTokenHalves} takes Q4_K's nibbles, no
     * masks. A lane's fields straddle the sub-block's two 16-element groups, whose sums are apart (each has its own
     * scale): where a group's fields end, one more product with the lane shifted to the next field cancels the
     * fields above from that group's sum (a step of {@code -8} times the last pair), and the next group's chain
     * starts from the same shifted lane. Twenty multiplies a sub-block for its sixteen values.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        InterleavedRows.requireSteps(GgmlType.Q3_K, x);
        int width = x.width();
        int blocks = width / QK;
        int[] steps = x.stepPairs();
        float[] xd = x.codeScales();
        // per 16-element group, -32 times the code sums of its halves (PairTile#packCodes); -4 times after a shift
        int[] start = x.tileSums();
        int d0 = token * blocks;
        int three = Simd.opaque(3);
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                int o = token * (width / 16) + b * 16;
                IntVector scaled0 = IntVector.zero(HALF_I);
                IntVector scaled1 = IntVector.zero(HALF_I);
                for (int j = 0; j < 8; j++) {
                    long q = at + QUANTS + (long) SUB_BLOCK_BYTES * j;
                    int sj = STEPS * (o + 2 * j);
                    // groups 2j (pairs 0-7) and 2j + 1 (8-15) of each half
                    ShortVector lo0 = IntVector.broadcast(HALF_I, start[o + 2 * j]).reinterpretAsShorts()
                            .lanewise(ASHR, 3);
                    ShortVector lo1 = lo0;
                    ShortVector hi0 = IntVector.broadcast(HALF_I, start[o + 2 * j + 1]).reinterpretAsShorts()
                            .lanewise(ASHR, 3);
                    ShortVector hi1 = hi0;
                    // pairs 0-4 (loops of constant length, which C2 writes out: the method written out was too
                    // large for C1, and without C1's profile C2 never compiled it), bit 0 of pair 15
                    ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                    ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                    ShortVector c;
                    for (int r = 0; r < 5; r++) {
                        c = IntVector.broadcast(HALF_I, steps[sj + r]).reinterpretAsShorts();
                        lo0 = lo0.add(lanes0.mul(c));
                        lo1 = lo1.add(lanes1.mul(c));
                        lanes0 = lanes0.lanewise(LSHR, three);
                        lanes1 = lanes1.lanewise(LSHR, three);
                    }
                    c = IntVector.broadcast(HALF_I, steps[sj + 5]).reinterpretAsShorts();
                    lo0 = lo0.add(lanes0.mul(c));
                    lo1 = lo1.add(lanes1.mul(c));
                    c = IntVector.broadcast(HALF_I, steps[sj + 6]).reinterpretAsShorts();
                    hi0 = hi0.add(lanes0.mul(c));
                    hi1 = hi1.add(lanes1.mul(c));
                    // pairs 5-7, then 8 and 9, bit 1 of pair 15
                    lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q + 64, Simd.LE);
                    lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 96, Simd.LE);
                    for (int r = 0; r < 3; r++) {
                        c = IntVector.broadcast(HALF_I, steps[sj + 7 + r]).reinterpretAsShorts();
                        lo0 = lo0.add(lanes0.mul(c));
                        lo1 = lo1.add(lanes1.mul(c));
                        lanes0 = lanes0.lanewise(LSHR, three);
                        lanes1 = lanes1.lanewise(LSHR, three);
                    }
                    c = IntVector.broadcast(HALF_I, steps[sj + 10]).reinterpretAsShorts();
                    lo0 = lo0.add(lanes0.mul(c));
                    lo1 = lo1.add(lanes1.mul(c));
                    for (int r = 0; r < 3; r++) {
                        c = IntVector.broadcast(HALF_I, steps[sj + 11 + r]).reinterpretAsShorts();
                        hi0 = hi0.add(lanes0.mul(c));
                        hi1 = hi1.add(lanes1.mul(c));
                        lanes0 = lanes0.lanewise(LSHR, three);
                        lanes1 = lanes1.lanewise(LSHR, three);
                    }
                    // pairs 10-14, bit 2 of pair 15
                    lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q + 128, Simd.LE);
                    lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 160, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        c = IntVector.broadcast(HALF_I, steps[sj + 14 + r]).reinterpretAsShorts();
                        hi0 = hi0.add(lanes0.mul(c));
                        hi1 = hi1.add(lanes1.mul(c));
                        lanes0 = lanes0.lanewise(LSHR, three);
                        lanes1 = lanes1.lanewise(LSHR, three);
                    }
                    c = IntVector.broadcast(HALF_I, steps[sj + 19]).reinterpretAsShorts();
                    hi0 = hi0.add(lanes0.mul(c));
                    hi1 = hi1.add(lanes1.mul(c));
                    IntVector halvesLo0 = lo0.reinterpretAsInts();
                    scaled0 = scaled0.add(halvesLo0.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halvesLo0.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, at + SCALES + 16L * (2 * j), Simd.LE)
                            .convertShape(B2I, HALF_I, 0)));
                    IntVector halvesLo1 = lo1.reinterpretAsInts();
                    scaled1 = scaled1.add(halvesLo1.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halvesLo1.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, at + SCALES + 16L * (2 * j) + 8, Simd.LE)
                            .convertShape(B2I, HALF_I, 0)));
                    IntVector halvesHi0 = hi0.reinterpretAsInts();
                    scaled0 = scaled0.add(halvesHi0.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halvesHi0.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, at + SCALES + 16L * (2 * j + 1), Simd.LE)
                            .convertShape(B2I, HALF_I, 0)));
                    IntVector halvesHi1 = hi1.reinterpretAsInts();
                    scaled1 = scaled1.add(halvesHi1.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halvesHi1.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, at + SCALES + 16L * (2 * j + 1) + 8, Simd.LE)
                            .convertShape(B2I, HALF_I, 0)));
                }
                FloatVector d = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                acc0 = ((FloatVector) scaled0.convertShape(I2F, HALF_F, 0)).fma(d.mul(xd[d0 + b]), acc0);
                d = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                acc1 = ((FloatVector) scaled1.convertShape(I2F, HALF_F, 0)).fma(d.mul(xd[d0 + b]), acc1);
            }
            acc0.intoArray(out, outOffset + ROWS * (g - fromGroup));
            acc1.intoArray(out, outOffset + ROWS * (g - fromGroup) + 8);
        }
        ReadAhead.keep(sink);
    }

    /** Telescoped pairs per 16 elements ({@link #steps}): twenty a sub-block. */
    static final int STEPS = 10;

    /**
     * Row pairs {@code from .. from+count-1} of {@code pairs} (in Q3_K's order, {@code from} at a block's start) as
     * {@link #oneTokenHalves} multiplies them: for each sub-block (pairs {@code P0 .. P15}), twenty from
     * {@code STEPS * from / 8}, in the kernel's order. A field's step is its pair less 8 times the pair of the field
     * below it in the same chain ({@link PairTile#step}); a group's chain ends with {@code -8} times its last pair
     * (cancelling the fields above), the next group's starts from its first pair; bit {@code m} of pair 15 is worth
     * {@code 2^m}.
     */
    static void steps(int[] pairs, int from, int count, int[] steps) {
        for (int u = from, to = STEPS * from / 8; u < from + count; u += 16, to += 2 * STEPS) {
            int p15 = pairs[u + 15];
            // the first vector: pairs 0-4 of group 2j, then bit 0 of pair 15 (group 2j + 1)
            steps[to] = pairs[u];
            for (int r = 1; r < 5; r++) {
                steps[to + r] = PairTile.step(pairs[u + r], pairs[u + r - 1], 3);
            }
            steps[to + 5] = PairTile.step(0, pairs[u + 4], 3);
            steps[to + 6] = p15;
            // the second: pairs 5-7 of group 2j; pairs 8 and 9, bit 1 of pair 15 (group 2j + 1)
            steps[to + 7] = pairs[u + 5];
            steps[to + 8] = PairTile.step(pairs[u + 6], pairs[u + 5], 3);
            steps[to + 9] = PairTile.step(pairs[u + 7], pairs[u + 6], 3);
            steps[to + 10] = PairTile.step(0, pairs[u + 7], 3);
            steps[to + 11] = pairs[u + 8];
            steps[to + 12] = PairTile.step(pairs[u + 9], pairs[u + 8], 3);
            steps[to + 13] = PairTile.step(PairTile.times(p15, 2), pairs[u + 9], 3);
            // the third: pairs 10-14, bit 2 of pair 15 (group 2j + 1)
            steps[to + 14] = pairs[u + 10];
            for (int r = 1; r < 5; r++) {
                steps[to + 14 + r] = PairTile.step(pairs[u + 10 + r], pairs[u + 9 + r], 3);
            }
            steps[to + 19] = PairTile.step(PairTile.times(p15, 4), pairs[u + 14], 3);
        }
    }
}
