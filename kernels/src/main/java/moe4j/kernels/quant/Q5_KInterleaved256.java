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

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q5_K matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2), each group run as
 * two halves of 8 rows; with 512-bit vectors Q5_K takes {@link Q5_KInterleaved}'s layout. The same {@code d},
 * {@code dmin}, scales and minimums, and each quant's five bits together: 2944 bytes a group-block, as that layout.
 *
 * <p>The quants of sub-block {@code j} lie at {@code QUANTS + 320j}, five 64-byte vectors {@code m = 0..4}; 16-bit
 * lane {@code 2i + h} of vector {@code m} holds the quants (0..31) of row {@code i}'s pairs {@code 3m, 3m + 1, 3m + 2}
 * at bits 0-4, 5-9 and 10-14, and bit {@code m} of pair 15's at bit 15. Pair {@code u} is the one
 * {@link Q5_KInterleaved} holds in nibble {@code u % 4} of its vector {@code u / 4} and bit {@code u} of its fifth
 * bits, multiplied by the code pair {@code 16j + u} of activations prepared in Q4_K's order.
 *
 * <p>A block's 40 vectors lie 64 bytes apart, so that the one-token kernel reads them in one loop, whose loads C2
 * checks once a block, provided the branch taken after each sub-block's fifth vector loads nothing from the segment
 * but the scales: each vector gives its bit 15 as it passes. Read again there, the five vectors' bits 15 had C2 make
 * the four passes before an inner loop whose range checks it set up anew each sub-block (Zen 3, JMH one thread in
 * cache 7.9-8.9 GB/s, taken as they pass 14.3-14.7; two threads from memory 12.7-15 and 20-21). Its 16-bit sums go
 * by slot: the quants at bits 0-4 of a sub-block's five vectors and pair 15 (six products of at most 31 * 128), those
 * at 5-9, those at 10-14; each widened, added, times the sub-block's scale: {@link Q5_KInterleaved}'s integer sums and
 * float steps, the same bits.
 */
public final class Q5_KInterleaved256 {

    private Q5_KInterleaved256() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    static final int DMIN = Q5_KInterleaved.DMIN;
    static final int SCALES = Q5_KInterleaved.SCALES;
    static final int MINS = Q5_KInterleaved.MINS;
    static final int QUANTS = Q5_KInterleaved.QUANTS;
    /**
     * A sub-block's five vectors of three quants (and a bit of the sixteenth) a lane: the bytes of
     * {@link Q5_KInterleaved}'s four nibble vectors and its fifth bits, which {@link #repack} rewrites in place.
     */
    static final int SUB_BLOCK_BYTES = Q5_KInterleaved.SUB_BLOCK_BYTES;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = Q5_KInterleaved.GROUP_BLOCK_BYTES;

    /** Five bits of each 16-bit lane, in int lanes: the int shift's carry from the upper lane is masked off. */

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q5_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}: {@link Q5_KInterleaved}'s repacking,
     * then each sub-block's nibbles and fifth bits joined in place.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        Q5_KInterleaved.repack(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset);
        int blocks = width / QK;
        short[] old = new short[SUB_BLOCK_BYTES / 2];
        short[] joined = new short[SUB_BLOCK_BYTES / 2];
        int[] q = new int[16];
        for (long at = dstOffset + (long) fromGroup * blocks * GROUP_BLOCK_BYTES;
                at < dstOffset + (long) toGroup * blocks * GROUP_BLOCK_BYTES; at += GROUP_BLOCK_BYTES) {
            for (int j = 0; j < 8; j++) {
                long sub = at + QUANTS + (long) SUB_BLOCK_BYTES * j;
                MemorySegment.copy(dst, Layouts.SHORT_LE, sub, old, 0, old.length);
                for (int lane = 0; lane < 32; lane++) {
                    int fifth = old[Q5_KInterleaved.FIFTH_BITS / 2 + lane];
                    for (int u = 0; u < 16; u++) {
                        q[u] = (old[32 * (u / 4) + lane] >>> (4 * (u % 4)) & 0xF) | (fifth >>> u & 1) << 4;
                    }
                    for (int m = 0; m < 5; m++) {
                        joined[32 * m + lane] = (short) (q[3 * m] | q[3 * m + 1] << 5 | q[3 * m + 2] << 10
                                | (q[15] >>> m & 1) << 15);
                    }
                }
                MemorySegment.copy(joined, 0, dst, Layouts.SHORT_LE, sub, joined.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q5_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q5_K, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x, firstToken, tokens);
        dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
    }

    /** {@link #dot} unchecked: the only product of this layout, in 256-bit vectors, a token at a time. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.tokenByToken(Q5_KInterleaved256::oneTokenHalves, w, offset, fromGroup, toGroup, x, firstToken,
                tokens, out, outOffset, outStride);
    }

    /** Telescoped pairs and the start of the sums per sub-block ({@link #steps}). */
    static final int STEPS = 21;
    /** Where a sub-block's start is among its {@link #STEPS}. */
    private static final int START = 20;

    /**
     * Row pairs {@code from .. from+count-1} of {@code pairs} (in Q4_K's order, {@code from} at a block's start) as
     * {@link #oneTokenHalves} multiplies them: for each sub-block (pairs {@code P0 .. P15}), {@link #STEPS} ints from
     * {@code STEPS * from / 16}: for each of its five vectors {@code m}, the telescoped pairs ({@link PairTile#step}) of
     * {@code P3m}, {@code P(3m+1)}, {@code P(3m+2)} and {@code 2^m P15} (bit {@code m} of pair 15), then the start of
     * the sums, {@code -16} times the code sum of each half.
     */
    static void steps(int[] pairs, int from, int count, int[] steps) {
        for (int u = from, to = STEPS * from / 16; u < from + count; u += 16, to += STEPS) {
            for (int m = 0; m < 5; m++) {
                int first = pairs[u + 3 * m];
                steps[to + 4 * m] = first;
                steps[to + 4 * m + 1] = PairTile.step(pairs[u + 3 * m + 1], first, 5);
                steps[to + 4 * m + 2] = PairTile.step(pairs[u + 3 * m + 2], pairs[u + 3 * m + 1], 5);
                steps[to + 4 * m + 3] = PairTile.step(PairTile.times(pairs[u + 15], 1 << m), pairs[u + 3 * m + 2], 5);
            }
            steps[to + START] = PairTile.halfSums(pairs, u, 16, -16);
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once, reading one line ahead per group-block
     * ({@link ReadAhead#touchLine}): a block's 40 vectors in one loop, each lane multiplied whole and shifted right by
     * five bits three times with {@link #steps}' telescoped pairs, as {@link Q4_KInterleaved#oneTokenHalves} takes
     * Q4_K's nibbles, no masks; each sub-block's scale after its fifth vector. A lane's sixteen products go to one
     * 16-bit sum, to which {@code -16} times the lane's code sum is added: its true value is then {@code sum (q - 16) x},
     * at most {@code 16 * 16 * 127} in magnitude, so it fits and is exact modulo 2^16; widened, the {@code 16} times the
     * sub-block's code sum is added back before the scale, which gives {@link Q5_KInterleaved}'s integer sums.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        InterleavedRows.requireSteps(GgmlType.Q5_K, x);
        int width = x.width();
        int blocks = width / QK;
        int[] steps = x.stepPairs();
        int[] sums = x.tileSums();
        float[] xd = x.codeScales();
        int s0 = token * (width / 32);
        int d0 = token * blocks;
        int five = Simd.opaque(5);
        long lastByte = w.byteSize() - 1;
        int sink = 0;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * GROUP_BLOCK_BYTES;
            FloatVector acc0 = FloatVector.zero(HALF_F);
            FloatVector acc1 = FloatVector.zero(HALF_F);
            for (int b = 0; b < blocks; b++) {
                long at = group + (long) b * GROUP_BLOCK_BYTES;
                sink += ReadAhead.touchLine(w, at, lastByte);
                IntVector scaled0 = IntVector.zero(HALF_I);
                IntVector scaled1 = IntVector.zero(HALF_I);
                int j = 0;
                int m = 0;
                int sv = STEPS * (s0 + b * 8);
                ShortVector sum0 = ShortVector.zero(HALF_S);
                ShortVector sum1 = sum0;
                for (int n = 0; n < 40; n++) {
                    long q = at + QUANTS + 64L * n;
                    ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                    ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                    ShortVector c = IntVector.broadcast(HALF_I, steps[sv]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, five);
                    lanes1 = lanes1.lanewise(LSHR, five);
                    c = IntVector.broadcast(HALF_I, steps[sv + 1]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, five);
                    lanes1 = lanes1.lanewise(LSHR, five);
                    c = IntVector.broadcast(HALF_I, steps[sv + 2]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, five);
                    lanes1 = lanes1.lanewise(LSHR, five);
                    c = IntVector.broadcast(HALF_I, steps[sv + 3]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    sv += 4;
                    if (m < 4) {
                        m++;
                        continue;
                    }
                    // sub-block j's fifth vector: its start added (modulo 2^16 the sums are the same whenever it is),
                    // the sums widened, the offset's code sums added back, its scale
                    ShortVector start = IntVector.broadcast(HALF_I, steps[sv]).reinterpretAsShorts();
                    sv++;
                    int offsetBack = 16 * sums[s0 + b * 8 + j];
                    IntVector halves = sum0.add(start).reinterpretAsInts();
                    IntVector dot0 = halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                            .add(offsetBack);
                    halves = sum1.add(start).reinterpretAsInts();
                    IntVector dot1 = halves.lanewise(LSHL, 16).lanewise(ASHR, 16).add(halves.lanewise(ASHR, 16))
                            .add(offsetBack);
                    long scales = at + SCALES + 16L * j;
                    scaled0 = scaled0.add(dot0.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, HALF_I, 0)));
                    scaled1 = scaled1.add(dot1.mul((IntVector) ByteVector.fromMemorySegment(HALF_B, w, scales + 8,
                            Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)));
                    sum0 = ShortVector.zero(HALF_S);
                    sum1 = sum0;
                    j++;
                    m = 0;
                }
                IntVector mins0 = IntVector.zero(HALF_I);
                IntVector mins1 = IntVector.zero(HALF_I);
                for (int k = 0; k < 8; k++) {
                    int sum = sums[s0 + b * 8 + k];
                    mins0 = mins0.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + MINS + 16L * k, Simd.LE)
                            .convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
                    mins1 = mins1.add(((IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + MINS + 16L * k + 8,
                            Simd.LE).convertShape(ZERO_EXTEND_B2I, HALF_I, 0)).mul(sum));
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
        ReadAhead.keep(sink);
    }
}
