package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorSpecies;

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
 * So fifteen of a lane's sixteen values are a mask and a shift by three (in int lanes, by a constant; C2 moves a
 * 16-bit shift's count in anew each time), where the file's split of two low bits and a third took two shifts, two
 * masks and an or: about 4 instructions a 16-lane product instead of 7.
 * On a Zen 3 (JMH {@code MatVecBenchmark}, rows of 2048, three alternations) one thread went from 3.7-4.4 to 6.2-7.0
 * GB/s in cache, two from memory from 5.1-6.6 to 10.4-12.4 (bench/CPU-NOTES.md).
 *
 * <p>A weight is {@code d * scale * (q - 4)}. The kernel multiplies {@code q} by
 * the codes in 16-bit lanes on top of {@code -4} times the window's code sums (Q6_K's {@code -32} times, shifted right
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

    private static final VectorSpecies<Short> HALF_S = ShortVector.SPECIES_256;
    private static final VectorSpecies<Integer> HALF_I = IntVector.SPECIES_256;
    private static final VectorSpecies<Float> HALF_F = FloatVector.SPECIES_256;
    private static final VectorSpecies<Byte> HALF_B = ByteVector.SPECIES_64;
    private static final ShortVector THREE_BITS = ShortVector.broadcast(HALF_S, (short) 7);
    /** A value of each 16-bit lane, in int lanes: the int shift's carry from the upper lane is masked off. */
    private static final IntVector VALUE = IntVector.broadcast(HALF_I, 0x0007_0007);
    private static final IntVector LOW_BIT = IntVector.broadcast(HALF_I, 0x0001_0001);

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
    static void decodeHalves(MemorySegment w, long at, short[] values) {
        for (int j = 0; j < 8; j++) {
            for (int h = 0; h < 2; h++) {
                ShortVector spread = ShortVector.zero(HALF_S);
                for (int m = 0; m < 3; m++) {
                    ShortVector lanes = ShortVector.fromMemorySegment(HALF_S, w,
                            at + QUANTS + (long) SUB_BLOCK_BYTES * j + 64L * m + 32L * h, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        int p = 5 * m + r;
                        lanes.lanewise(LSHR, 3 * r).and(THREE_BITS)
                                .intoArray(values, Q6_KInterleaved256.valuesAt(2 * j + p / 8, h, p % 8));
                    }
                    spread = spread.or(lanes.lanewise(LSHR, 15).lanewise(LSHL, m));
                }
                spread.intoArray(values, Q6_KInterleaved256.valuesAt(2 * j + 1, h, 7));
            }
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once, reading one line ahead per group-block
     * ({@link ReadAhead#touchLine}). A lane's five values go by in a loop of five, one for each vector: written out, C2
     * scheduled all 32 products of a sub-block first and kept them on the stack, some 200 spill stores and loads a
     * sub-block; as one loop over the three vectors, it kept that loop and spilled their lanes (Zen 3, JMH one thread
     * in cache 7.2-7.6 GB/s, a loop a vector 8.2-8.5).
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        float[] xd = x.codeScales();
        // per 16-element group, -32 times the code sums of its halves (PairTile#packCodes); -4 times after a shift
        int[] start = x.tileSums();
        int p0 = token * (width / 2);
        int d0 = token * blocks;
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
                    int pj = p0 + b * (QK / 2) + 16 * j;
                    // groups 2j (pairs 0-7) and 2j + 1 (8-15) of each half
                    ShortVector lo0 = IntVector.broadcast(HALF_I, start[o + 2 * j]).reinterpretAsShorts()
                            .lanewise(ASHR, 3);
                    ShortVector lo1 = lo0;
                    ShortVector hi0 = IntVector.broadcast(HALF_I, start[o + 2 * j + 1]).reinterpretAsShorts()
                            .lanewise(ASHR, 3);
                    ShortVector hi1 = hi0;
                    // a vector at a time, its five values in a loop small enough for C2 to write out (over all three
                    // vectors at once it stayed a loop, their lanes spilled to the stack); pairs 0-7 are group 2j's
                    IntVector lanes0 = IntVector.fromMemorySegment(HALF_I, w, q, Simd.LE);
                    IntVector lanes1 = IntVector.fromMemorySegment(HALF_I, w, q + 32, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        ShortVector c = IntVector.broadcast(HALF_I, pairs[pj + r]).reinterpretAsShorts();
                        lo0 = lo0.add(lanes0.and(VALUE).reinterpretAsShorts().mul(c));
                        lo1 = lo1.add(lanes1.and(VALUE).reinterpretAsShorts().mul(c));
                        lanes0 = lanes0.lanewise(LSHR, 3);
                        lanes1 = lanes1.lanewise(LSHR, 3);
                    }
                    // pair 15: the lanes' bits 15, where five shifts by three left them
                    IntVector spread0 = lanes0.and(LOW_BIT);
                    IntVector spread1 = lanes1.and(LOW_BIT);
                    lanes0 = IntVector.fromMemorySegment(HALF_I, w, q + 64, Simd.LE);
                    lanes1 = IntVector.fromMemorySegment(HALF_I, w, q + 96, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        ShortVector c = IntVector.broadcast(HALF_I, pairs[pj + 5 + r]).reinterpretAsShorts();
                        ShortVector product0 = lanes0.and(VALUE).reinterpretAsShorts().mul(c);
                        ShortVector product1 = lanes1.and(VALUE).reinterpretAsShorts().mul(c);
                        if (r < 3) {
                            lo0 = lo0.add(product0);
                            lo1 = lo1.add(product1);
                        } else {
                            hi0 = hi0.add(product0);
                            hi1 = hi1.add(product1);
                        }
                        lanes0 = lanes0.lanewise(LSHR, 3);
                        lanes1 = lanes1.lanewise(LSHR, 3);
                    }
                    spread0 = spread0.or(lanes0.and(LOW_BIT).lanewise(LSHL, 1));
                    spread1 = spread1.or(lanes1.and(LOW_BIT).lanewise(LSHL, 1));
                    lanes0 = IntVector.fromMemorySegment(HALF_I, w, q + 128, Simd.LE);
                    lanes1 = IntVector.fromMemorySegment(HALF_I, w, q + 160, Simd.LE);
                    for (int r = 0; r < 5; r++) {
                        ShortVector c = IntVector.broadcast(HALF_I, pairs[pj + 10 + r]).reinterpretAsShorts();
                        hi0 = hi0.add(lanes0.and(VALUE).reinterpretAsShorts().mul(c));
                        hi1 = hi1.add(lanes1.and(VALUE).reinterpretAsShorts().mul(c));
                        lanes0 = lanes0.lanewise(LSHR, 3);
                        lanes1 = lanes1.lanewise(LSHR, 3);
                    }
                    spread0 = spread0.or(lanes0.and(LOW_BIT).lanewise(LSHL, 2));
                    spread1 = spread1.or(lanes1.and(LOW_BIT).lanewise(LSHL, 2));
                    ShortVector c = IntVector.broadcast(HALF_I, pairs[pj + 15]).reinterpretAsShorts();
                    hi0 = hi0.add(spread0.reinterpretAsShorts().mul(c));
                    hi1 = hi1.add(spread1.reinterpretAsShorts().mul(c));
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
}
