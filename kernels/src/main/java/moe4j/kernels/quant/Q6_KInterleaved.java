package moe4j.kernels.quant;

import static jdk.incubator.vector.VectorOperators.ASHR;
import static jdk.incubator.vector.VectorOperators.B2I;
import static jdk.incubator.vector.VectorOperators.BITWISE_BLEND;
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
 * Q6_K matrices repacked at load time in groups of 16 rows, as {@link Q4_KInterleaved} repacks Q4_K: a row per pair of
 * 16-bit lanes, the activations' code pairs broadcast to all 16 rows. This layout is for 512-bit vectors; with 256-bit
 * ones Q6_K takes {@link Q6_KInterleaved256}'s.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (3392)
 * bytes, 16 x 210 + 1%:
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the signed 8-bit scales, 16-element group {@code g}'s 16 rows at {@code 64 + 16g};</li>
 * <li>the quants (0..63, as the file holds them), sub-block {@code j} (32 elements) at {@code 320 + 384j}: four 64-byte
 *     vectors of low nibbles and two of high bit pairs. In Q6_K's pair order ({@link Q6_K#PAIRS} as
 *     {@link PairTile#packCodes} packs it), pair {@code p} (0..15) of sub-block {@code j} joins elements
 *     {@code a = 32j + 16(p/8) + p%8} and {@code a + 8}, both of group {@code 2j + p/8}; 16-bit lane {@code 2i + h} of
 *     nibble vector {@code v} holds, in nibble {@code k}, the low four bits of row {@code i}'s element of pair
 *     {@code 4v + k} ({@code a}, or {@code a + 8} for {@code h = 1}). The high-bit vector at {@code 256 + 64c} serves
 *     nibble vectors {@code 2c} and {@code 2c + 1} (group {@code 2j + c}): the two high bits of the element of nibble
 *     {@code k} of vector {@code 2c + v'} lie at bits {@code 4(k + 1) + 2v'} of the same lane for {@code k < 3}, and
 *     at bits {@code 2v'} for {@code k = 3}.</li>
 * </ul>
 * So each element's six bits are one blend ({@code BITWISE_BLEND}, {@code (n & ~m) | (h & m)}: three inputs, which
 * AVX-512 takes in one instruction), a shift and a mask: for nibble
 * {@code k < 3}, bits {@code 4k .. 4k+3} of the nibbles and {@code 4k+4 .. 4k+5} of the high bits (shifted right by two
 * for {@code v'} = 1) are next to each other; nibble 3 is the nibbles shifted right by 12 and the high bits shifted left
 * by 4 (or 2) blended at bits 4-5.
 *
 * <p>The one-token kernel multiplies the unsigned quants by the codes in 16-bit lanes and sums a window of eight
 * pairs (one 16-element group: both halves of a row's lane pair) on top of {@code -32} times the window's code sums in
 * each half ({@link PreparedActivations#tileSums()}, packed with the code pairs): all modulo 2^16, and the true sum of
 * each half, {@code sum (q - 32) * code}, is at most {@code 8 * 32 * 127 = 32512} in magnitude (codes are -127..127),
 * so the 16-bit result is exact, whatever the unsigned partial sums (up to {@code 8 * 63 * 127}) wrapped on the way.
 * The halves are widened and added (at most 65024 in magnitude), times the group's scale (-128..127), and a row's
 * block sum {@code S = sum_g scale_g * sum (q - 32) * code} (below 2^27) goes to float once,
 * {@code acc = fma(S, d * xd, acc)}: the same integers and the same float steps as
 * {@link PairTile}'s Q6_K tiles, which read the groups as they lie ({@link PairTile#dotGroupsQ6}) so that a token gets
 * the same bits alone and in a batch.
 *
 * <p>Intel Xeon VM, JMH {@code MatVecBenchmark}, rows of 2048, GB/s of the file's bytes, a row at a time
 * ({@link Q6_K#dotRows}) -> interleaved, three alternations: one thread in L2 10.9-11.7 -> 17.3-19.0, two threads out
 * of cache 12.4-13.6 -> 14.3-14.9. The 12-layer Qwen3-30B-A3B-shaped Q4_K_M file (its 151936 x 2048 head is Q6_K), tg64
 * on two threads, ten alternations in three windows: 17.4 -> 18.2, 19.9 -> 20.9, 19.5 -> 20.4 tok/s on average (a
 * fourth, noisier window 18.6 -> 17.7). Repacking runs at about 0.7 GB/s a thread (Q4_K's about 2), some 3 s of CPU
 * more at that file's load.
 */
public final class Q6_KInterleaved {

    private Q6_KInterleaved() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 210;
    static final int SCALES = 64;
    static final int QUANTS = SCALES + 16 * ROWS;
    /** A sub-block's four nibble vectors and two vectors of high bit pairs. */
    static final int SUB_BLOCK_BYTES = 6 * 64;
    static final int HIGH_BITS = 4 * 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 8 * SUB_BLOCK_BYTES;

    private static final VectorSpecies<Short> S = ShortVector.SPECIES_512;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    private static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    private static final ShortVector SIX = ShortVector.broadcast(S, (short) 0x3F);
    /** Blend masks: the high bits' vector from bit 4, 8, 12, and (nibble 3) at bits 4-5 only. */
    private static final ShortVector FROM_4 = ShortVector.broadcast(S, (short) 0xFFF0);
    private static final ShortVector FROM_8 = ShortVector.broadcast(S, (short) 0xFF00);
    private static final ShortVector FROM_12 = ShortVector.broadcast(S, (short) 0xF000);
    private static final ShortVector AT_4 = ShortVector.broadcast(S, (short) 0x0030);
    private static final IntVector SHIFT_16 = IntVector.broadcast(I, 16);

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /** Where the high bit pair of the element of nibble {@code k} of nibble vector {@code 2c + v2} lies in its lane. */
    static int highBitsAt(int v2, int k) {
        return k < 3 ? 4 * (k + 1) + 2 * v2 : 2 * v2;
    }

    /** The element of sub-block {@code j} that pair {@code p} (0..15) holds in its lower ({@code h = 0}) or upper half. */
    static int element(int j, int p, int h) {
        return 32 * j + 16 * (p / 8) + p % 8 + 8 * h;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q6_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        byte[] scales = new byte[16 * ROWS];
        // three 16 x 16 blocks, row by row, then turned to a lane per row (PairTile.transpose): row r's int t at
        // 256(t/16) + 16r + t%16, which becomes the 16 rows' vector t at 16t: t = 4j + v the nibble vectors of
        // sub-block j (lower half h = 0, upper h = 1), t = 32 + 2j + c its high-bit vectors
        int[] rowMajor = new int[3 * 256];
        int[] lanes = new int[3 * 256];
        int[] quants = new int[8 * SUB_BLOCK_BYTES / 4];
        int[] nibbles = new int[8];
        int[] highs = new int[8];
        // a row's block: its 128 ql bytes as ints 0-31, its 64 qh bytes as ints 32-47, its 16 scales
        int[] words = new int[48];
        byte[] rowScales = new byte[16];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    long block = srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * BLOCK_BYTES;
                    d[i] = Halfs.readFp16(src, block + 208);
                    MemorySegment.copy(src, Layouts.INT_LE, block, words, 0, 48);
                    MemorySegment.copy(src, Layouts.BYTE, block + 192, rowScales, 0, 16);
                    for (int s = 0; s < 16; s++) {
                        scales[16 * s + i] = rowScales[s];
                    }
                    for (int j = 0; j < 8; j++) {
                        // sub-block j = 4 half + quarter: the low bits a nibble of ql[64 half + 32(quarter & 1) + l],
                        // the high bits bit pair quarter of qh[32 half + l], l = 0..31
                        int half = j >>> 2;
                        int quarter = j & 3;
                        int ql = 16 * half + 8 * (quarter & 1);
                        int qh = 32 + 8 * half;
                        for (int m = 0; m < 8; m++) {
                            // elements 32j + 4m .. +3: four nibbles side by side in 16 bits, four bit pairs in 8
                            int x = (words[ql + m] >>> (4 * (quarter >>> 1))) & 0x0F0F0F0F;
                            x = (x | x >>> 4) & 0x00FF00FF;
                            nibbles[m] = (x | x >>> 8) & 0xFFFF;
                            int y = (words[qh + m] >>> (2 * quarter)) & 0x03030303;
                            y = (y | y >>> 6) & 0x000F000F;
                            highs[m] = (y | y >>> 12) & 0xFF;
                        }
                        for (int v = 0; v < 4; v++) {
                            // pairs 4v .. 4v+3: elements 16(v/2) + 4(v%2) + k (h = 0) and 8 more (h = 1)
                            int m = 4 * (v / 2) + v % 2;
                            rowMajor[at(4 * j + v, i)] = nibbles[m] | nibbles[m + 2] << 16;
                        }
                        for (int c = 0; c < 2; c++) {
                            rowMajor[at(32 + 2 * j + c, i)] = highWord(highs[4 * c] | highs[4 * c + 1] << 8)
                                    | highWord(highs[4 * c + 2] | highs[4 * c + 3] << 8) << 16;
                        }
                    }
                }
                for (int t = 0; t < 3; t++) {
                    PairTile.transpose(rowMajor, 256 * t, lanes, 256 * t);
                }
                for (int j = 0; j < 8; j++) {
                    System.arraycopy(lanes, 16 * 4 * j, quants, SUB_BLOCK_BYTES / 4 * j, 64);
                    System.arraycopy(lanes, 16 * (32 + 2 * j), quants, SUB_BLOCK_BYTES / 4 * j + HIGH_BITS / 4, 32);
                }
                long out = dstOffset + ((long) g * blocks + b) * GROUP_BLOCK_BYTES;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(scales, 0, dst, Layouts.BYTE, out + SCALES, scales.length);
                MemorySegment.copy(quants, 0, dst, Layouts.INT_LE, out + QUANTS, quants.length);
            }
        }
    }

    /** Where row {@code r}'s int {@code t} lies in {@link #repack}'s row-major blocks. */
    private static int at(int t, int r) {
        return 256 * (t / 16) + 16 * r + t % 16;
    }

    /**
     * Eight elements' bit pairs, element {@code 4v' + k} at bits {@code 2(4v' + k)} of {@code pairs}, moved to
     * {@link #highBitsAt}{@code (v', k)}: each byte's pairs spread to every fourth bit ({@code 4k}, the second byte's
     * two above), then the 16 bits rotated left by four.
     */
    private static int highWord(int pairs) {
        int low = pairs & 0xFF;
        low = (low | low << 4) & 0x0F0F;
        low = (low | low << 2) & 0x3333;
        int high = pairs >>> 8;
        high = (high | high << 4) & 0x0F0F;
        high = (high | high << 2) & 0x3333;
        int t = low | high << 2;
        return (t << 4 | t >>> 12) & 0xFFFF;
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q6_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        long first = Q4_KInterleaved.checkDot(GgmlType.Q6_K, Q6_K.PAIRS, GROUP_BLOCK_BYTES, w, offset, fromGroup,
                toGroup, x, firstToken, tokens);
        if (!Simd.FUSED) {
            throw new IllegalStateException("this layout's kernels take 512-bit vectors; with 256-bit ones Q6_K rows are"
                    + " repacked as Q6_KInterleaved256's");
        }
        if (tokens > 1) {
            PairTile.dotGroupsQ6(w, first, (toGroup - fromGroup) * ROWS, x, firstToken, tokens, out, outOffset, outStride);
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
        float[] xd = x.codeScales();
        // per 16-element group, -32 times the code sums of its halves (PairTile#packCodes)
        int[] start = x.tileSums();
        int p0 = token * (width / 2);
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
                int o = token * (width / 16) + b * 16;
                IntVector scaled = IntVector.zero(I);
                for (int j = 0; j < 8; j++) {
                    long q = at + QUANTS + (long) SUB_BLOCK_BYTES * j;
                    int pj = p + 16 * j;
                    // group 2j: nibble vectors 0 and 1, the high bits at HIGH_BITS
                    ShortVector high = ShortVector.fromMemorySegment(S, w, q + HIGH_BITS, Simd.LE);
                    ShortVector lanes = ShortVector.fromMemorySegment(S, w, q, Simd.LE);
                    ShortVector sum = IntVector.broadcast(I, start[o + 2 * j]).reinterpretAsShorts();
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_8).lanewise(LSHR, 4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 1]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_12).lanewise(LSHR, 8).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 2]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).lanewise(BITWISE_BLEND, high.lanewise(LSHL, 4), AT_4)
                            .mul(IntVector.broadcast(I, pairs[pj + 3]).reinterpretAsShorts()));
                    ShortVector shifted = high.lanewise(LSHR, 2);
                    lanes = ShortVector.fromMemorySegment(S, w, q + 64L, Simd.LE);
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 4]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_8).lanewise(LSHR, 4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 5]).reinterpretAsShorts()));
                    // the shifted high bits' 14-15 are zero: no mask
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_12).lanewise(LSHR, 8)
                            .mul(IntVector.broadcast(I, pairs[pj + 6]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).lanewise(BITWISE_BLEND, high.lanewise(LSHL, 2), AT_4)
                            .mul(IntVector.broadcast(I, pairs[pj + 7]).reinterpretAsShorts()));
                    IntVector halves = sum.reinterpretAsInts();
                    IntVector dot = halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16)
                            .add(halves.lanewise(ASHR, SHIFT_16));
                    IntVector scale = (IntVector) ByteVector.fromMemorySegment(B16, w, at + SCALES + 32L * j, Simd.LE)
                            .convertShape(B2I, I, 0);
                    scaled = scaled.add(dot.mul(scale));
                    // group 2j + 1: nibble vectors 2 and 3, the high bits at HIGH_BITS + 64
                    high = ShortVector.fromMemorySegment(S, w, q + HIGH_BITS + 64L, Simd.LE);
                    lanes = ShortVector.fromMemorySegment(S, w, q + 128L, Simd.LE);
                    sum = IntVector.broadcast(I, start[o + 2 * j + 1]).reinterpretAsShorts();
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 8]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_8).lanewise(LSHR, 4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 9]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, high, FROM_12).lanewise(LSHR, 8).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 10]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).lanewise(BITWISE_BLEND, high.lanewise(LSHL, 4), AT_4)
                            .mul(IntVector.broadcast(I, pairs[pj + 11]).reinterpretAsShorts()));
                    shifted = high.lanewise(LSHR, 2);
                    lanes = ShortVector.fromMemorySegment(S, w, q + 192L, Simd.LE);
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 12]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_8).lanewise(LSHR, 4).and(SIX)
                            .mul(IntVector.broadcast(I, pairs[pj + 13]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(BITWISE_BLEND, shifted, FROM_12).lanewise(LSHR, 8)
                            .mul(IntVector.broadcast(I, pairs[pj + 14]).reinterpretAsShorts()));
                    sum = sum.add(lanes.lanewise(LSHR, 12).lanewise(BITWISE_BLEND, high.lanewise(LSHL, 2), AT_4)
                            .mul(IntVector.broadcast(I, pairs[pj + 15]).reinterpretAsShorts()));
                    halves = sum.reinterpretAsInts();
                    dot = halves.lanewise(LSHL, SHIFT_16).lanewise(ASHR, SHIFT_16).add(halves.lanewise(ASHR, SHIFT_16));
                    scale = (IntVector) ByteVector.fromMemorySegment(B16, w, at + SCALES + 32L * j + 16, Simd.LE)
                            .convertShape(B2I, I, 0);
                    scaled = scaled.add(dot.mul(scale));
                }
                FloatVector d = FloatVector.fromMemorySegment(F, w, at, Simd.LE);
                acc = ((FloatVector) scaled.convertShape(I2F, F, 0)).fma(d.mul(xd[d0 + b]), acc);
            }
            acc.intoArray(out, outOffset + ROWS * (g - fromGroup));
        }
        ReadAhead.keep(sink);
    }
}
