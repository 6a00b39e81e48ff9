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
import java.util.Arrays;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;

import moe4j.gguf.GgmlType;

/**
 * Q6_K matrices repacked at load time in groups of 16 rows where the vectors are 256 bits (AVX2): a row per pair of
 * 16-bit lanes, the activations' code pairs in Q6_K's order ({@link Q6_K#PAIRS}) broadcast to all 16 rows, each group
 * run as two halves of 8 rows (lanes 0-15 and 16-31 of each 64-byte vector). With 512-bit vectors Q6_K takes
 * {@link Q6_KInterleaved}'s layout, whose blend of nibbles and high bits is one instruction there and three here.
 *
 * <p>Layout: for each group of 16 rows, its blocks in order; each group-block is {@link #GROUP_BLOCK_BYTES} (3392)
 * bytes, 16 x 210 + 1%:
 * <ul>
 * <li>{@code d} of the 16 rows as floats (bytes 0-63);</li>
 * <li>the signed 8-bit scales, 16-element group {@code k}'s 16 rows at {@code 64 + 16k};</li>
 * <li>the quants (0..63), group {@code k} (16 elements) at {@code 320 + 192k}: three 64-byte vectors. Pair {@code u}
 *     (0..7) of group {@code k} joins elements {@code 16k + u} and {@code 16k + 8 + u} (Q6_K's order); 16-bit lane
 *     {@code 2i + h} holds row {@code i}'s element of each pair ({@code h = 0} the first, 1 the second): the first
 *     vector pairs 0 and 1 at bits 0-5 and 6-11 and the low four bits of pair 6 at 12-15, the second pairs 2, 3 and
 *     the low four bits of 7, the third pairs 4 and 5 and the top two bits of 6 (bits 12-13) and of 7 (14-15).</li>
 * </ul>
 * So a lane's fields are all of one group, whose scale they share, and the kernel multiplies each lane whole and
 * shifted right field by field with telescoped code pairs ({@link #steps}), no masks: ten multiplies for a group's
 * eight values where the layout before (a sub-block's two groups side by side in each lane, pairs {@code m} and
 * {@code 8 + m} at bits 0-5 and 6-11, the spare nibbles split between them) took sixteen masks, twelve shifts and four
 * ors besides its eight (bench/CPU-NOTES.md).
 *
 * <p>The arithmetic is {@link Q6_KInterleaved}'s: unsigned quants times codes in 16-bit lanes on top of {@code -32}
 * times the code sums of each 16-element group's halves, exact modulo 2^16 since a half's true sum (eight elements,
 * one 16-bit lane) is at most {@code 8 * 32 * 127} in magnitude; the halves widened and added, times the group's
 * scale, and the block's integer sum to float once, {@code acc = fma(S, d * xd, acc)}: the same bits.
 */
public final class Q6_KInterleaved256 {

    private Q6_KInterleaved256() {}

    /** Rows per group. */
    public static final int ROWS = Q4_KInterleaved.ROWS;
    private static final int QK = 256;
    private static final int BLOCK_BYTES = 210;
    private static final int FILE_QH = 128;
    private static final int FILE_SCALES = 192;
    private static final int FILE_D = 208;
    static final int SCALES = 64;
    static final int QUANTS = SCALES + 16 * ROWS;
    /** A 16-element group's three vectors of two values and a part of a third a lane. */
    static final int GROUP_BYTES = 3 * 64;
    /** Bytes of one block of a group's 16 rows. */
    public static final int GROUP_BLOCK_BYTES = QUANTS + 16 * GROUP_BYTES;
    /** Telescoped pairs per 16-element group ({@link #steps}). */
    static final int STEPS = 10;

    /** Six bits of each 16-bit lane, in int lanes: the int shift's carry from the upper lane is masked off. */
    private static final IntVector SIX_BITS = IntVector.broadcast(HALF_I, 0x003F_003F);
    private static final IntVector NIBBLE = IntVector.broadcast(HALF_I, 0x000F_000F);
    private static final IntVector TOP_PAIR = IntVector.broadcast(HALF_I, 0x0030_0030);

    /** Bytes of {@code rows} repacked rows of {@code width} values. */
    public static long bytes(long rows, int width) {
        return rows / ROWS * (width / QK) * (long) GROUP_BLOCK_BYTES;
    }

    /** The six bits (0..63) of element {@code e} (0..255) of a Q6_K block. */
    private static int quant(byte[] block, int e) {
        int half = e / 128;
        int quarter = (e % 128) / 32;
        int l = e % 32;
        int low = block[64 * half + 32 * (quarter & 1) + l] >>> (4 * (quarter >>> 1)) & 0xF;
        int high = block[FILE_QH + 32 * half + l] >>> (2 * quarter) & 3;
        return low | high << 4;
    }

    /**
     * Repacks groups {@code fromGroup .. toGroup-1} of a matrix of Q6_K rows ({@code rowBytes} apart from
     * {@code srcOffset} in {@code src}, {@code width} values each) into {@code dst} from {@code dstOffset}, where group
     * {@code g} goes to {@code dstOffset + g * (width/256) * GROUP_BLOCK_BYTES}.
     */
    public static void repack(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset) {
        byte[] file = new byte[BLOCK_BYTES];
        int[] q = new int[QK];
        repackGroups(src, srcOffset, rowBytes, width, fromGroup, toGroup, dst, dstOffset, BLOCK_BYTES, GROUP_BLOCK_BYTES,
                (block, row, scales, quants) -> {
                    MemorySegment.copy(src, Layouts.BYTE, block, file, 0, BLOCK_BYTES);
                    for (int s = 0; s < 16; s++) {
                        scales[16 * s + row] = file[FILE_SCALES + s];
                    }
                    for (int e = 0; e < QK; e++) {
                        q[e] = quant(file, e);
                    }
                    for (int k = 0; k < 16; k++) {
                        for (int h = 0; h < 2; h++) {
                            // pair u of group k joins elements 16k + u (h = 0) and 16k + 8 + u (h = 1)
                            int e = 16 * k + 8 * h;
                            int lane = 2 * row + h;
                            int at = GROUP_BYTES / 2 * k;
                            quants[at + lane] = (short) (q[e] | q[e + 1] << 6 | (q[e + 6] & 0xF) << 12);
                            quants[at + 32 + lane] = (short) (q[e + 2] | q[e + 3] << 6 | (q[e + 7] & 0xF) << 12);
                            quants[at + 64 + lane] = (short) (q[e + 4] | q[e + 5] << 6 | (q[e + 6] >>> 4) << 12
                                    | (q[e + 7] >>> 4) << 14);
                        }
                    }
                    return Halfs.readFp16(src, block + FILE_D);
                });
    }

    /** Packs one row's file block into the arrays of {@link #repackGroups}. */
    interface RowPacker {
        /**
         * Row {@code row}'s file block at {@code block}: its 16 group scales into {@code scales[16 g + row]}, its quants
         * into its lanes of {@code quants} (the group-block's from {@link #QUANTS}); returns its {@code d}.
         */
        float pack(long block, int row, byte[] scales, short[] quants);
    }

    /**
     * The repacking of the layouts with one {@code d} a row and a signed scale a 16-element group (this one,
     * {@link Q3_KInterleaved}'s): each group-block's 16 rows packed by {@code packer} ({@code blockBytes} a block of
     * the file), then written as the 16 {@code d} as floats at 0, the scales at {@link #SCALES} and the quants at
     * {@link #QUANTS}, {@code groupBlockBytes} a group-block.
     */
    static void repackGroups(MemorySegment src, long srcOffset, long rowBytes, int width, int fromGroup, int toGroup,
            MemorySegment dst, long dstOffset, int blockBytes, int groupBlockBytes, RowPacker packer) {
        int blocks = width / QK;
        float[] d = new float[ROWS];
        byte[] scales = new byte[16 * ROWS];
        short[] quants = new short[(groupBlockBytes - QUANTS) / 2];
        for (int g = fromGroup; g < toGroup; g++) {
            for (int b = 0; b < blocks; b++) {
                for (int i = 0; i < ROWS; i++) {
                    d[i] = packer.pack(srcOffset + ((long) g * ROWS + i) * rowBytes + (long) b * blockBytes, i, scales,
                            quants);
                }
                long out = dstOffset + ((long) g * blocks + b) * groupBlockBytes;
                MemorySegment.copy(d, 0, dst, Layouts.FLOAT_LE, out, ROWS);
                MemorySegment.copy(scales, 0, dst, Layouts.BYTE, out + SCALES, scales.length);
                MemorySegment.copy(quants, 0, dst, Layouts.SHORT_LE, out + QUANTS, quants.length);
            }
        }
    }

    /**
     * {@code out[outOffset + 16*(g - fromGroup) + i + t*outStride]} = row {@code i} of group {@code g} times prepared
     * row {@code firstToken + t}, for groups {@code fromGroup .. toGroup-1} of a repacked matrix starting at
     * {@code offset} in {@code w} and {@code tokens} tokens prepared for Q6_K.
     */
    public static void dot(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        Q4_KInterleaved.checkDot(GgmlType.Q6_K, Q6_K.PAIRS, GROUP_BLOCK_BYTES, w, offset, fromGroup, toGroup, x,
                firstToken, tokens);
        dotHalves(w, offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
    }

    /** {@link #dot} unchecked: the only product of this layout, in 256-bit vectors. */
    static void dotHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        if (tokens > 1) {
            tokensHalves(Q6_KInterleaved256::decodeHalves, 0, GROUP_BLOCK_BYTES, Q6_KInterleaved256::oneTokenHalves, w,
                    offset, fromGroup, toGroup, x, firstToken, tokens, out, outOffset, outStride);
        } else {
            oneTokenHalves(w, offset, fromGroup, toGroup, x, firstToken, out, outOffset);
        }
    }

    /**
     * The one-token product in 256-bit vectors, both halves of a group at once, reading one line ahead per group-block
     * ({@link ReadAhead#touchLine}): per block a loop over its 16 groups, each three vectors of lanes multiplied whole
     * and shifted right (by 6 and 6; 6, 6 and 2 for the third) with {@link #steps}' telescoped pairs, as
     * {@link Q4_KInterleaved#oneTokenHalves} takes Q4_K's nibbles, on top of {@code -32} times the group's code sums,
     * then widened and times the group's scale.
     */
    static void oneTokenHalves(MemorySegment w, long offset, int fromGroup, int toGroup, PreparedActivations x,
            int token, float[] out, int outOffset) {
        InterleavedRows.requireSteps(GgmlType.Q6_K, x);
        int width = x.width();
        int blocks = width / QK;
        int[] steps = x.stepPairs();
        float[] xd = x.codeScales();
        // per 16-element group, -32 times the code sums of its halves (PairTile#packCodes)
        int[] start = x.tileSums();
        int d0 = token * blocks;
        int six = Simd.opaque(6);
        int two = Simd.opaque(2);
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
                for (int k = 0; k < 16; k++) {
                    long q = at + QUANTS + (long) GROUP_BYTES * k;
                    int sk = STEPS * (o + k);
                    ShortVector sum0 = IntVector.broadcast(HALF_I, start[o + k]).reinterpretAsShorts();
                    ShortVector sum1 = sum0;
                    // pairs 0, 1 and the low four bits of 6
                    ShortVector lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q, Simd.LE);
                    ShortVector lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 32, Simd.LE);
                    ShortVector c = IntVector.broadcast(HALF_I, steps[sk]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 1]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 2]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    // pairs 2, 3 and the low four bits of 7
                    lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q + 64, Simd.LE);
                    lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 96, Simd.LE);
                    c = IntVector.broadcast(HALF_I, steps[sk + 3]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 4]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 5]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    // pairs 4, 5 and the top two bits of 6 and of 7
                    lanes0 = ShortVector.fromMemorySegment(HALF_S, w, q + 128, Simd.LE);
                    lanes1 = ShortVector.fromMemorySegment(HALF_S, w, q + 160, Simd.LE);
                    c = IntVector.broadcast(HALF_I, steps[sk + 6]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 7]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, six);
                    lanes1 = lanes1.lanewise(LSHR, six);
                    c = IntVector.broadcast(HALF_I, steps[sk + 8]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    lanes0 = lanes0.lanewise(LSHR, two);
                    lanes1 = lanes1.lanewise(LSHR, two);
                    c = IntVector.broadcast(HALF_I, steps[sk + 9]).reinterpretAsShorts();
                    sum0 = sum0.add(lanes0.mul(c));
                    sum1 = sum1.add(lanes1.mul(c));
                    long scales = at + SCALES + 16L * k;
                    IntVector halves = sum0.reinterpretAsInts();
                    scaled0 = scaled0.add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halves.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, scales, Simd.LE).convertShape(B2I, HALF_I, 0)));
                    halves = sum1.reinterpretAsInts();
                    scaled1 = scaled1.add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                            .add(halves.lanewise(ASHR, 16)).mul((IntVector) ByteVector
                            .fromMemorySegment(HALF_B, w, scales + 8, Simd.LE).convertShape(B2I, HALF_I, 0)));
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

    /**
     * Row pairs {@code from .. from+count-1} of {@code pairs} (in Q6_K's order, {@code from} at a block's start) as
     * {@link #oneTokenHalves} multiplies them: for each 16-element group (eight pairs {@code P0 .. P7}), {@link #STEPS}
     * ints from {@code STEPS * from / 8}, each a telescoped pair ({@link PairTile#step}) of a lane's fields in turn:
     * {@code P0, P1, P6} (bits 0, 6, 12 of the first vector), {@code P2, P3, P7} (the second), {@code P4, P5, 16 P6,
     * 16 P7} (bits 0, 6, 12, 14 of the third; the top two bits of a quant are worth 16).
     */
    static void steps(int[] pairs, int from, int count, int[] steps) {
        for (int u = from, to = STEPS * from / 8; u < from + count; u += 8, to += STEPS) {
            steps[to] = pairs[u];
            steps[to + 1] = PairTile.step(pairs[u + 1], pairs[u], 6);
            steps[to + 2] = PairTile.step(pairs[u + 6], pairs[u + 1], 6);
            steps[to + 3] = pairs[u + 2];
            steps[to + 4] = PairTile.step(pairs[u + 3], pairs[u + 2], 6);
            steps[to + 5] = PairTile.step(pairs[u + 7], pairs[u + 3], 6);
            steps[to + 6] = pairs[u + 4];
            steps[to + 7] = PairTile.step(pairs[u + 5], pairs[u + 4], 6);
            steps[to + 8] = PairTile.step(PairTile.times(pairs[u + 6], 16), pairs[u + 5], 6);
            steps[to + 9] = PairTile.step(PairTile.times(pairs[u + 7], 16), PairTile.times(pairs[u + 6], 16), 2);
        }
    }

    /** This layout's quants (0..63) for {@link #tokensHalves}, as {@link #oneTokenHalves} takes them out. */
    static void decodeHalves(MemorySegment w, long at, short[] values, int base) {
        for (int k = 0; k < 16; k++) {
            for (int h = 0; h < 2; h++) {
                long q = at + QUANTS + (long) GROUP_BYTES * k + 32L * h;
                IntVector first = IntVector.fromMemorySegment(HALF_I, w, q, Simd.LE);
                IntVector second = IntVector.fromMemorySegment(HALF_I, w, q + 64, Simd.LE);
                IntVector third = IntVector.fromMemorySegment(HALF_I, w, q + 128, Simd.LE);
                first.and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 0));
                first.lanewise(LSHR, 6).and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 1));
                second.and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 2));
                second.lanewise(LSHR, 6).and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 3));
                third.and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 4));
                third.lanewise(LSHR, 6).and(SIX_BITS).reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 5));
                first.lanewise(LSHR, 12).and(NIBBLE).or(third.lanewise(LSHR, 8).and(TOP_PAIR))
                        .reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 6));
                second.lanewise(LSHR, 12).and(NIBBLE).or(third.lanewise(LSHR, 10).and(TOP_PAIR))
                        .reinterpretAsShorts().intoArray(values, base + valuesAt(k, h, 7));
            }
        }
    }

    /**
     * Takes a group-block's quants out of their lanes (at {@code at} in {@code w}) into 16-bit lanes of {@code values}:
     * group {@code k}'s pair {@code u} (0..7), half {@code h}, at {@code base} + {@link #valuesAt}, unsigned (the offset
     * is applied through the code sums).
     */
    interface GroupBlockDecoder {
        void decode(MemorySegment w, long at, short[] values, int base);
    }

    /** Where {@link #tokensHalves} keeps pair {@code u} of 16-element group {@code k}, half {@code h}. */
    static int valuesAt(int k, int h, int u) {
        return ((2 * k + h) * 8 + u) * 16;
    }

    /** Values of a group-block, as {@link GroupBlockDecoder} takes them out. */
    private static final int BLOCK_VALUES = 16 * 2 * 8 * 16;
    /** Super-blocks whose values {@link #tokensHalves} holds as 16-bit lanes at a time: 64 KiB, within a core's L2. */
    private static final int CHUNK_BLOCKS = 8;
    /** A chunk of a group's values, for {@link #tokensHalves}: one array a thread. */
    private static final ThreadLocal<short[]> VALUES = ThreadLocal.withInitial(() -> new short[CHUNK_BLOCKS * BLOCK_VALUES]);
    /** The integer block sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<int[]> TILE_SUMS = ThreadLocal.withInitial(() -> new int[4 * ROWS]);
    /** The running sums of {@link #tokensHalves}'s four tokens, 16 rows each: one array a thread. */
    private static final ThreadLocal<float[]> TILE_ACCUMULATORS = ThreadLocal.withInitial(() -> new float[4 * ROWS]);

    /**
     * A batch in 256-bit vectors of the layouts with a signed scale per 16-element group and one {@code d} a row (this
     * one, {@link Q3_KInterleaved}'s): a chunk of each group's super-blocks' quants taken out once by {@code decoder},
     * then four tokens' code pairs at a time multiplied with them on top of the code sums' offsets
     * ({@link PreparedActivations#tileSums()},
     * shifted right by {@code startShift}: 0 here, 3 for Q3_K's -4), the block sums and the four tokens' running sums
     * kept in threads' arrays as {@link Q4_KInterleaved#tokensHalves} keeps them, a chunk of super-blocks at a time
     * inside the tokens. The last one to three tokens take {@code one}, the one-token kernel of the layout (as in
     * {@link Q4_KInterleaved#tokensHalves}), whose group-blocks are {@code groupBlockBytes} apart. Each token's sums and
     * float steps are the one-token kernels', in the same order: the same bits.
     */
    static void tokensHalves(GroupBlockDecoder decoder, int startShift, long groupBlockBytes,
            Q4_KInterleaved.GroupKernel one, MemorySegment w, long offset, int fromGroup, int toGroup,
            PreparedActivations x, int firstToken, int tokens, float[] out, int outOffset, int outStride) {
        int width = x.width();
        int blocks = width / QK;
        int[] pairs = x.tilePairs();
        int[] start = x.tileSums();
        float[] xd = x.codeScales();
        short[] values = VALUES.get();
        int[] scaled = TILE_SUMS.get();
        float[] acc = TILE_ACCUMULATORS.get();
        int tiled = tokens & ~3;
        for (int g = fromGroup; g < toGroup; g++) {
            long group = offset + (long) g * blocks * groupBlockBytes;
            int rowOut = outOffset + ROWS * (g - fromGroup);
            // with fewer than four tokens no tile runs: no group-block to decode
            for (int from = 0; from < (tiled > 0 ? blocks : 0); from += CHUNK_BLOCKS) {
                int to = Math.min(blocks, from + CHUNK_BLOCKS);
                for (int b = from; b < to; b++) {
                    decoder.decode(w, group + b * groupBlockBytes, values, (b - from) * BLOCK_VALUES);
                }
                for (int t = 0; t < tiled; t += 4) {
                    Q4_KInterleaved.startRunningSums(out, rowOut + t * outStride, outStride, from > 0, acc);
                    for (int b = from; b < to; b++) {
                        long at = group + b * groupBlockBytes;
                        int base = (b - from) * BLOCK_VALUES;
                        int tokenA = firstToken + t;
                        int pA = tokenA * (width / 2) + b * (QK / 2);
                        int pB = pA + width / 2;
                        int pC = pB + width / 2;
                        int pD = pC + width / 2;
                        int oA = tokenA * (width / 16) + b * 16;
                        int oB = oA + width / 16;
                        int oC = oB + width / 16;
                        int oD = oC + width / 16;
                        Arrays.fill(scaled, 0);
                        for (int k = 0; k < 16; k++) {
                            ShortVector sumA0 = IntVector.broadcast(HALF_I, start[oA + k]).reinterpretAsShorts()
                                    .lanewise(ASHR, startShift);
                            ShortVector sumA1 = sumA0;
                            ShortVector sumB0 = IntVector.broadcast(HALF_I, start[oB + k]).reinterpretAsShorts()
                                    .lanewise(ASHR, startShift);
                            ShortVector sumB1 = sumB0;
                            ShortVector sumC0 = IntVector.broadcast(HALF_I, start[oC + k]).reinterpretAsShorts()
                                    .lanewise(ASHR, startShift);
                            ShortVector sumC1 = sumC0;
                            ShortVector sumD0 = IntVector.broadcast(HALF_I, start[oD + k]).reinterpretAsShorts()
                                    .lanewise(ASHR, startShift);
                            ShortVector sumD1 = sumD0;
                            for (int u = 0; u < 8; u++) {
                                ShortVector v0 = ShortVector.fromArray(HALF_S, values, base + valuesAt(k, 0, u));
                                ShortVector v1 = ShortVector.fromArray(HALF_S, values, base + valuesAt(k, 1, u));
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
                            IntVector scale0 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + 16L * k,
                                    Simd.LE).convertShape(B2I, HALF_I, 0);
                            IntVector scale1 = (IntVector) ByteVector.fromMemorySegment(HALF_B, w, at + SCALES + 16L * k + 8,
                                    Simd.LE).convertShape(B2I, HALF_I, 0);
                            IntVector halves;
                            halves = sumA0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 0).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 0);
                            halves = sumA1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 8).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 8);
                            halves = sumB0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 16).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 16);
                            halves = sumB1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 24).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 24);
                            halves = sumC0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 32).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 32);
                            halves = sumC1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 40).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 40);
                            halves = sumD0.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 48).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale0)).intoArray(scaled, 48);
                            halves = sumD1.reinterpretAsInts();
                            IntVector.fromArray(HALF_I, scaled, 56).add(halves.lanewise(LSHL, 16).lanewise(ASHR, 16)
                                    .add(halves.lanewise(ASHR, 16)).mul(scale1)).intoArray(scaled, 56);
                        }
                        FloatVector d0 = FloatVector.fromMemorySegment(HALF_F, w, at, Simd.LE);
                        FloatVector d1 = FloatVector.fromMemorySegment(HALF_F, w, at + 32, Simd.LE);
                        for (int k = 0; k < 4; k++) {
                            float scale = xd[(tokenA + k) * blocks + b];
                            ((FloatVector) IntVector.fromArray(HALF_I, scaled, 16 * k).convertShape(I2F, HALF_F, 0))
                                    .fma(d0.mul(scale), FloatVector.fromArray(HALF_F, acc, 16 * k)).intoArray(acc, 16 * k);
                            ((FloatVector) IntVector.fromArray(HALF_I, scaled, 16 * k + 8).convertShape(I2F, HALF_F, 0))
                                    .fma(d1.mul(scale), FloatVector.fromArray(HALF_F, acc, 16 * k + 8))
                                    .intoArray(acc, 16 * k + 8);
                        }
                    }
                    Q4_KInterleaved.endRunningSums(acc, out, rowOut + t * outStride, outStride);
                }
            }
            for (int t = tiled; t < tokens; t++) {
                one.run(w, offset, g, g + 1, x, firstToken + t, out, rowOut + t * outStride);
            }
        }
    }
}
