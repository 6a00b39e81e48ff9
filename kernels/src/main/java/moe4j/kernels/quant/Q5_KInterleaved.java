package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.I2F;
import static jdk.incubator.vector.VectorOperators.LSHL;
import static jdk.incubator.vector.VectorOperators.LSHR;
import static jdk.incubator.vector.VectorOperators.NE;
import static jdk.incubator.vector.VectorOperators.ZERO_EXTEND_B2I;

import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorSpecies;

import moe4j.gguf.GgmlType;

/**
 * Q5_K matrices repacked at load time in groups of 16 rows as {@link Q4_KInterleaved} repacks Q4_K: the same
 * {@code d}, {@code dmin}, scales, minimums and nibbles, and after each sub-block's four nibble vectors a fifth, its
 * fifth bits: bit {@code p} of 16-bit lane {@code 2i + h} is that of row {@code i}'s element {@code 32j + 16h + p},
 * the element whose nibble is nibble {@code p % 4} of vector {@code p / 4}. 2944 bytes for 16 x 176, +4.5%. This layout
 * is for 512-bit vectors; with 256-bit ones Q5_K takes {@link Q5_KInterleaved256}'s.
 *
 * <p>The one-token kernel joins each nibble and its bit ({@code (nibble) | (bits >> (p - 4)) & 16}, quants 0..31) and
 * multiplies in 16 bits by the broadcast code pairs as Q4_K's does; a product is at most 31 * 128, so a lane sums
 * eight of them (two nibble vectors) before the lane pairs are widened, twice a sub-block. The integer sums and the
 * float steps per super-block are Q4_K's, and so are {@link PairTile}'s for Q5_K, which reads the groups as they lie
 * ({@link PairTile#dotGroupsQ5}): a token gets the same bits alone and in a batch. Intel Xeon VM, JMH
 * {@code MatVecBenchmark}, rows of 2048, GB/s of the file's bytes, a row at a time -> interleaved: one thread in L2
 * 7.2 -> 12.2, out of cache 5.6 -> 6.6; two threads in L2 13.1 -> 18.5, out of cache 10.4 -> 14.5.
 */
public final class Q5_KInterleaved {

    private Q5_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    static final int BLOCK_BYTES = 176;
    /** Where a Q5_K block's nibbles start; its fifth bits are the 32 bytes before them. */
    static final int NIBBLES = 48;
    private static final int HIGH_BITS_OF_BLOCK = 16;
    static final int DMIN = Q4_KInterleaved.DMIN;
    static final int SCALES = Q4_KInterleaved.SCALES;
    static final int MINS = Q4_KInterleaved.MINS;
    static final int QUANTS = Q4_KInterleaved.QUANTS;
    /** A sub-block's four nibble vectors and its vector of fifth bits. */
    static final int SUB_BLOCK_BYTES = 5 * 64;
    static final int FIFTH_BITS = 4 * 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 8 * SUB_BLOCK_BYTES;

    private static final VectorSpecies<Short> S = ShortVector.SPECIES_512;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    private static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    private static final ShortVector NIBBLE = ShortVector.broadcast(S, (short) 0xF);
    private static final ShortVector FIFTH = ShortVector.broadcast(S, (short) 0x10);
    private static final IntVector SHIFT_16 = IntVector.broadcast(I, 16);

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q5_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        Q4_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset, true);
    }

    /**
     * Row {@code row}'s fifth bits of the block at {@code block} into {@code quants}, the group-block's quant ints
     * ({@link #SUB_BLOCK_BYTES} / 4 a sub-block): bit {@code j} of byte {@code l} is that of element {@code 32j + l}.
     */
    static void fifthBits(MemorySegment src, long block, int row, int[] quants) {
        ByteVector low = ByteVector.fromMemorySegment(B16, src, block + HIGH_BITS_OF_BLOCK, Simd.LE);
        ByteVector high = ByteVector.fromMemorySegment(B16, src, block + HIGH_BITS_OF_BLOCK + 16, Simd.LE);
        for (int j = 0; j < 8; j++) {
            byte bit = (byte) (1 << j);
            long h0 = low.and(bit).compare(NE, (byte) 0).toLong();
            long h1 = high.and(bit).compare(NE, (byte) 0).toLong();
            quants[SUB_BLOCK_BYTES / 4 * j + FIFTH_BITS / 4 + row] = (int) (h0 | h1 << 16);
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q5_K (Q4_K's lane order).
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        long first = Q4_KInterleaved.checkDot(GgmlType.Q5_K, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
                firstToken, tokens);
        if (!Simd.FUSED) {
            throw new IllegalStateException("this layout's kernels take 512-bit vectors; with 256-bit ones Q5_K rows are"
                    + " repacked as Q5_KInterleaved256's");
        }
        if (tokens > 1) {
            PairTile.dotGroupsQ5(w, first, (toGroup - fromGroup) * ROWS, x, firstToken, tokens, out, outOffset, outStride);
            return;
        }
        oneToken(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
    }

    /**
     * The one-token product, one loop nest written out (see {@link Q4_KInterleaved}'s: no helpers taking or returning
     * vectors), reading one line ahead per group-block ({@link ReadAhead#touchLine}).
     */
    private static void oneToken(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] sums = x.tileSums();
        float[] xd = x.codeScales();
        int p0 = token * (width / 2);
        int s0 = token * (width / 32);
        int d0 = token * blocks;
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc = FloatVector.zero(F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                int p = p0 + b * (QK / 2);
                int s = s0 + b * 8;
                IntVector scaled = IntVector.zero(I);
                IntVector mins = IntVector.zero(I);
                for (int j = 0; j < 8; j++) {
                    long q = at + QUANTS + (long) SUB_BLOCK_BYTES * j;
                    int pj = p + 16 * j;
                    ShortVector high = ShortVector.fromMemorySegment(S, w, q + FIFTH_BITS, Simd.LE);
                    // moved left in 32-bit lanes: an upper lane's bits 0-3 take the lower's 12-15, which no nibble reads
                    ShortVector first = high.reinterpretAsInts().lanewise(LSHL, 4).reinterpretAsShorts();
                    IntVector dot = IntVector.zero(I);
                    ShortVector lanes;
                    ShortVector sum;
                    IntVector halves;
                    // nibble k of vector v meets bit 4v + k of the fifth bits, moved to bit 4
                    lanes = ShortVector.fromMemorySegment(S, w, q + 0L, Simd.LE);
                    sum = lanes.and(NIBBLE).or(first.and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj]).reinterpretAsShorts());
                    sum = sum.add(lanes.lanewise(LSHR, 4).and(NIBBLE).or(first.lanewise(LSHR, 1).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 1]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 8).and(NIBBLE).or(first.lanewise(LSHR, 2).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 2]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).or(first.lanewise(LSHR, 3).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 3]).reinterpretAsShorts()));
                    lanes = ShortVector.fromMemorySegment(S, w, q + 64L, Simd.LE);
                    sum = sum.add(lanes.and(NIBBLE).or(high.and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 4]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 4).and(NIBBLE).or(high.lanewise(LSHR, 1).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 5]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 8).and(NIBBLE).or(high.lanewise(LSHR, 2).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 6]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).or(high.lanewise(LSHR, 3).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 7]).reinterpretAsShorts()));
                    halves = sum.reinterpretAsInts();
                    dot = dot.add(halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16))
                            .add(halves.lanewise(ASHR, SHIFT_16));
                    lanes = ShortVector.fromMemorySegment(S, w, q + 128L, Simd.LE);
                    sum = lanes.and(NIBBLE).or(high.lanewise(LSHR, 4).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 8]).reinterpretAsShorts());
                    sum = sum.add(lanes.lanewise(LSHR, 4).and(NIBBLE).or(high.lanewise(LSHR, 5).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 9]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 8).and(NIBBLE).or(high.lanewise(LSHR, 6).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 10]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).or(high.lanewise(LSHR, 7).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 11]).reinterpretAsShorts()));
                    lanes = ShortVector.fromMemorySegment(S, w, q + 192L, Simd.LE);
                    sum = sum.add(lanes.and(NIBBLE).or(high.lanewise(LSHR, 8).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 12]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 4).and(NIBBLE).or(high.lanewise(LSHR, 9).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 13]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 8).and(NIBBLE).or(high.lanewise(LSHR, 10).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 14]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).or(high.lanewise(LSHR, 11).and(FIFTH))
                            .mul(IntVector.broadcast(I, pairs[pj + 15]).reinterpretAsShorts()));
                    halves = sum.reinterpretAsInts();
                    dot = dot.add(halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16))
                            .add(halves.lanewise(ASHR, SHIFT_16));
                    IntVector scale = (IntVector) ByteVector.fromMemorySegment(B16, w, at + SCALES + 16L * j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, I, 0);
                    IntVector min = (IntVector) ByteVector.fromMemorySegment(B16, w, at + MINS + 16L * j, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, I, 0);
                    scaled = scaled.add(dot.mul(scale));
                    mins = mins.add(min.mul(sums[s + j]));
                }
                float scale = xd[d0 + b];
                FloatVector d = FloatVector.fromMemorySegment(F, w, at, Simd.LE);
                FloatVector dmin = FloatVector.fromMemorySegment(F, w, at + DMIN, Simd.LE);
                acc = ((FloatVector) scaled.convertShape(I2F, F, 0)).fma(d.mul(scale), acc);
                acc = ((FloatVector) mins.convertShape(I2F, F, 0)).fma(dmin.mul(-scale), acc);
            }
            acc.intoArray(out, outOffset + ROWS * (g - fromGroup));
        }
        ReadAhead.keep(sink);
    }
}
