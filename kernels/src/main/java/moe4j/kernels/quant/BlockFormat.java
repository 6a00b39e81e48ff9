package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;
import java.util.Objects;
import java.util.random.RandomGenerator;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;

import moe4j.gguf.GgmlType;

/**
 * Common argument checking for all formats, so each type only implements its whole-block loops.
 * Subclasses list the byte offsets of their fp16 scale fields so random blocks get sane scales.
 */
abstract class BlockFormat implements QuantFormat {

    private final GgmlType type;
    private final int blockSize;
    private final int blockBytes;
    private final int[] fp16ScaleOffsets;

    BlockFormat(GgmlType type, int... fp16ScaleOffsets) {
        this.type = type;
        this.blockSize = type.blockSize();
        this.blockBytes = type.blockBytes();
        this.fp16ScaleOffsets = fp16ScaleOffsets;
    }

    @Override
    public final GgmlType type() { return type; }

    @Override
    public final int blockSize() { return blockSize; }

    @Override
    public final int blockBytes() { return blockBytes; }

    @Override
    public final void dequantize(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int count) {
        dequantizeChecked(src, srcOffset, dst, dstOffset, count, true);
    }

    @Override
    public final void dequantizeScalar(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int count) {
        dequantizeChecked(src, srcOffset, dst, dstOffset, count, false);
    }

    private void dequantizeChecked(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int count,
            boolean vectors) {
        int blocks = wholeBlocks(count);
        Objects.checkFromIndexSize(dstOffset, count, dst.length);
        checkBytes(src, srcOffset, blocks, "source");
        dequantizeBlocks(src, srcOffset, dst, dstOffset, blocks, vectors);
    }

    @Override
    public final float dot(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        int blocks = wholeBlocks(count);
        Objects.checkFromIndexSize(xOffset, count, x.length);
        checkBytes(src, srcOffset, blocks, "source");
        return Simd.FUSED ? dotBlocks(src, srcOffset, x, xOffset, count) : DecodedDot.dot(this, src, srcOffset, x, xOffset, count);
    }

    @Override
    public final void dotBatch(MemorySegment src, long srcOffset, float[] x, int xOffset, int xStride, int nTokens,
            float[] out, int outOffset, int outStride, int count) {
        int blocks = wholeBlocks(count);
        DecodedDot.checkBatch(x, xOffset, xStride, nTokens, out, outOffset, outStride, count);
        checkBytes(src, srcOffset, blocks, "source");
        if (Simd.FUSED) {
            // Measured: re-decoding in registers per token beats decoding once through the scalar
            // dequantizer (Q4_K, 8 tokens: 8 fused dots ~1.4x faster than decode-once on this machine).
            for (int t = 0; t < nTokens; t++) {
                out[outOffset + t * outStride] = dotBlocks(src, srcOffset, x, xOffset + t * xStride, count);
            }
        } else {
            DecodedDot.dotBatch(this, src, srcOffset, x, xOffset, xStride, nTokens, out, outOffset, outStride, count);
        }
    }

    @Override
    public final void dotPrepared(MemorySegment src, long srcOffset, PreparedActivations x, int firstRow, int nTokens,
            float[] out, int outOffset, int outStride) {
        DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset, outStride);
        int count = x.width();
        checkBytes(src, srcOffset, wholeBlocks(count), "source");
        if (nTokens == 0) {
            return;
        }
        if (rowKernelTakes(nTokens, x)) {
            for (int t = 0; t < nTokens; t++) {
                dotRows(src, srcOffset, 0, 1, x, firstRow + t, out, outOffset + t * outStride);
            }
        } else if (pairTiles(x)) {
            PairTile.dot(type, src, srcOffset, 0, 1, x, firstRow, nTokens, out, outOffset, outStride);
        } else if (scaledRows(count) && (Simd.FUSED || nTokens > 1)) {
            // with 256-bit vectors a lone token of a type without a row kernel there (F16, BF16; the K-quants in the
            // file's layout) decodes in registers: through ScaledDot's buffer F16 ran at 0.4x, Q4_K at 0.5x (JMH
            // matVecOneThread), so its sums run in another order than a batch's, as the row kernels' do
            ScaledDot.dot(this, src, srcOffset, x, firstRow, nTokens, out, outOffset, outStride);
        } else {
            dotBatch(src, srcOffset, x.values(), firstRow * count, count, nTokens, out, outOffset, outStride, count);
        }
    }

    @Override
    public final void dotPreparedRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x,
            int firstRow, int nTokens, float[] out, int outOffset, int outStride) {
        if (rows > 0 && rowKernelTakes(nTokens, x)) {
            long blocks = wholeBlocks(x.width());
            if (rowBytes < blocks * blockBytes) {
                throw new IllegalArgumentException("rows " + rowBytes + " bytes apart overlap rows of " + blocks * blockBytes
                        + " bytes of " + type.ggmlName());
            }
            DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset, outStride);
            DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset + rows - 1, outStride);
            checkBytes(src, srcOffset, blocks, "source");
            checkBytes(src, srcOffset + (rows - 1) * rowBytes, blocks, "source");
            for (int t = 0; t < nTokens; t++) {
                dotRows(src, srcOffset, rowBytes, rows, x, firstRow + t, out, outOffset + t * outStride);
            }
            return;
        }
        boolean pairs = nTokens > 1 && rows > 0 && pairTiles(x);
        boolean tiled = !pairs && scaledRows(x.width()) && rows >= ScaledDot.TILE && nTokens >= ScaledDot.TILE;
        boolean fused = Simd.FUSED && !scaledRows(x.width()) && nTokens > 1 && rows > 0;
        if (!tiled && !fused && !pairs) {
            QuantFormat.super.dotPreparedRows(src, srcOffset, rowBytes, rows, x, firstRow, nTokens, out, outOffset,
                    outStride);
            return;
        }
        long blocks = wholeBlocks(x.width());
        if (rowBytes < blocks * blockBytes) {
            throw new IllegalArgumentException("rows " + rowBytes + " bytes apart overlap rows of " + blocks * blockBytes
                    + " bytes of " + type.ggmlName());
        }
        DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset, outStride);
        DecodedDot.checkPrepared(this, x, firstRow, nTokens, out, outOffset + rows - 1, outStride);
        checkBytes(src, srcOffset, blocks, "source");
        checkBytes(src, srcOffset + (rows - 1) * rowBytes, blocks, "source");
        if (pairs) {
            PairTile.dot(type, src, srcOffset, rowBytes, rows, x, firstRow, nTokens, out, outOffset, outStride);
            return;
        }
        if (fused) {
            // dotPrepared's products (dotBlocks per token), token by token over the rows: a token's activations stay in
            // L1 while the rows' weights come from L2, where row by row every row streamed all the tokens again
            int width = x.width();
            float[] xv = x.values();
            for (int t = 0; t < nTokens; t++) {
                for (int r = 0; r < rows; r++) {
                    out[outOffset + r + t * outStride] = dotBlocks(src, srcOffset + r * rowBytes, xv, (firstRow + t) * width,
                            width);
                }
            }
            return;
        }
        // in token chunks, so that a chunk's activations stay in L2 for all the row tiles (TOKEN_CHUNK_BYTES)
        int chunk = Math.max(ScaledDot.TILE, (int) (TOKEN_CHUNK_BYTES / ((long) x.width() * Float.BYTES)));
        for (int t0 = 0; t0 < nTokens; t0 += chunk) {
            int tokens = Math.min(chunk, nTokens - t0);
            if (tokens < ScaledDot.TILE) {
                // a last chunk too short for a tile takes the tokens before it again, recomputing their results
                t0 = nTokens - ScaledDot.TILE;
                tokens = ScaledDot.TILE;
            }
            int r = 0;
            for (; r + ScaledDot.TILE <= rows; r += ScaledDot.TILE) {
                if (r + 2 * ScaledDot.TILE <= rows) {
                    ReadAhead.keep(ReadAhead.lines(src, srcOffset + (r + ScaledDot.TILE) * rowBytes,
                            ScaledDot.TILE * rowBytes));
                }
                ScaledDot.dotTile(this, src, srcOffset + r * rowBytes, rowBytes, x, firstRow + t0, tokens,
                        out, outOffset + r + t0 * outStride, outStride);
            }
            for (; r < rows; r++) {
                ScaledDot.dot(this, src, srcOffset + r * rowBytes, x, firstRow + t0, tokens, out,
                        outOffset + r + t0 * outStride, outStride);
            }
        }
    }

    /**
     * Float activations per token chunk of a tiled batch (1 MiB: 64 tokens of rows of 4096, 128 of 2048). Each four-row
     * tile streams every token's activations, 4 MB for a 512-token prompt's rows of 2048, more than a core's L2; in
     * chunks the row tiles of a call share the chunk from L2, and each chunk decodes the rows again (cheap beside 64
     * tokens' products). Intel Xeon VM: JMH {@code MatMulBenchmark} IQ4_XS, 512 tokens, one thread, 53 -> 80-88
     * GFLOP/s; pp512 of the 12-layer IQ4_XS file 85.2 / 91.0 -> 103.6 / 97.0 / 99.0 / 99.5 tok/s (chunks of 256 KiB to
     * 1.5 MiB all 96-104); the Q8_0 file's 84.4 / 85.0 -> 94.0 / 96.2.
     */
    static final long TOKEN_CHUNK_BYTES = 1 << 20;

    /** Whether products of several tokens with {@code x} take {@link PairTile}. */
    private boolean pairTiles(PreparedActivations x) {
        return PairTile.takes(this, x);
    }

    /**
     * Batches of fewer tokens than this run {@link #dotRows} once per token instead of a batch path. 2 (none) unless a
     * type's tiles cost more than its row kernel for a few tokens: Q6_K's and Q3_K's {@link PairTile} tiles decode and
     * transpose every 16 rows' super-blocks, which a few tokens do not repay (JMH {@code MatMulBenchmark}, 768 x 2048
     * in cache, one thread, Intel Xeon VM, GFLOP/s, row kernel per token -> tiles: Q6_K 26.2 -> 11.5 / 18.9 / 26.9 /
     * 30.3 at 2 / 4 / 6 / 8 tokens, Q3_K 32.0 -> 11.8 / 18.7 / 28.0 / 32.1; Q4_K and Q5_K in the file's layout at two
     * tokens only, 32.6 -> 26.0 and 25.8 -> 17.7, at four 36.6 and 28.4; Q4_0 29.0 -> 17.8 / 27.0 / 27.7 / 40.4 at 2 / 3
     * / 4 / 6 tokens). A prompt's experts often get that few (a 64-token prompt: 4 a chosen expert on average). The
     * row kernel's sums run in another order than the tiles', so a token's result then depends on how many tokens
     * share its batch, within float rounding, as it already did between one token (the row kernel) and two. Not Q8_0
     * (two and three tokens 16.7 and 19.9 against 21.4 a token at a time): a tiny Q8_0 model's logits do not depend on
     * the batch size ({@code SessionTest.logitsDoNotDependOnThreadsOrBatchSize}), and the row kernel for few tokens
     * broke that.
     */
    int rowKernelBelow() {
        return 2;
    }

    /** Whether products of {@code nTokens} tokens of {@code x} run {@link #dotRows} once per token. */
    private boolean rowKernelTakes(int nTokens, PreparedActivations x) {
        return nTokens >= 1 && nTokens < rowKernelBelow() && rowKernelFor(x);
    }

    /** Whether {@link #dotRows} is implemented. */
    boolean hasRowKernel() {
        return false;
    }

    /**
     * Whether {@link #dotRows} also runs with 256-bit vectors (AVX2): on the activations' floats, or on their codes where
     * the type's {@link #laneOrder()} is {@link LaneOrder#readByHalves one those kernels read} (Q8_0, IQ4_XS).
     */
    boolean hasHalvesRowKernel() {
        return false;
    }

    /**
     * Whether {@link #dotRows} can take {@code x}: with 512-bit vectors, it exists and {@code x} is in its lane order;
     * with 256-bit ones, it runs there ({@link #hasHalvesRowKernel}), on the codes where {@code x} holds them in the
     * type's order and on the floats, which every order keeps, where not.
     */
    private boolean rowKernelFor(PreparedActivations x) {
        return Simd.FUSED ? hasRowKernel() && x.laneOrder() == laneOrder() : Simd.HALVES && hasHalvesRowKernel();
    }

    /**
     * The matrix-vector product of decoding: the dot products of {@code rows} rows (row {@code r} at byte
     * {@code srcOffset + r*rowBytes}) with the single prepared row {@code token}, into {@code out[outOffset + r]},
     * each row in loops of at most {@link Simd#ROW_SPAN} values (F16 and BF16 {@link Simd#HALF_FLOAT_SPAN}; Q2_K, Q3_K
     * and F32 one loop) with its accumulators in registers. Results agree with the batched paths' within float32
     * rounding (the sums run in another order; bit for bit, in {@link #dotBlocks}' order, for F32, and for F16 and
     * BF16 rows that are not whole 256-value chunks, whose batches do not decode for {@link ScaledDot}).
     * Arguments are checked, and {@link Simd#FUSED} holds with {@code x} in {@link #laneOrder()}, or {@link Simd#HALVES}
     * where {@link #hasHalvesRowKernel}.
     */
    void dotRows(MemorySegment src, long srcOffset, long rowBytes, int rows, PreparedActivations x, int token,
            float[] out, int outOffset) {
        throw new AssertionError("hasRowKernel() is true but dotRows is missing for " + type);
    }

    /**
     * Whether rows of {@code width} elements go through {@link ScaledDot}: whole 256-element super-blocks, with 512-bit
     * vectors or 256-bit ones ({@link ScaledDot#decode}).
     */
    boolean scaledRows(int width) {
        return (Simd.FUSED || Simd.HALVES) && decodesScaled() && width % ScaledDot.QK == 0;
    }

    /** Bytes of 256 elements ({@link ScaledDot}'s unit): one K-quant block, eight Q8_0 blocks. */
    final long superBlockBytes() {
        return (long) blockBytes * (ScaledDot.QK / type.blockSize());
    }

    /** Whether this type implements {@link #decodeScaled} for {@link ScaledDot}. */
    boolean decodesScaled() {
        return false;
    }

    /**
     * Decodes the 256 elements at byte {@code block} into slot {@code slot} of {@code s} for {@link ScaledDot}: its weights
     * {@code q * dl - M} (one fused multiply-add each), element group {@code g} (16 elements) at byte
     * {@code s.at[slot] + g * s.groupBytes} of {@code s.w}, so that the rows of a tile lie side by side. Arguments
     * are valid and {@link Simd#FUSED} holds.
     */
    void decodeScaled(MemorySegment src, long block, ScaledDot.Scratch s, int slot) {
        throw new AssertionError("decodesScaled() is true but decodeScaled is missing for " + type);
    }

    @Override
    public final void quantize(float[] src, int srcOffset, int count, MemorySegment dst, long dstOffset) {
        if (!canQuantize()) {
            throw new UnsupportedOperationException("quantizing to tensor type " + type.ggmlName() + " is not supported");
        }
        int blocks = wholeBlocks(count);
        Objects.checkFromIndexSize(srcOffset, count, src.length);
        checkBytes(dst, dstOffset, blocks, "destination");
        quantizeBlocks(src, srcOffset, dst, dstOffset, blocks);
    }

    @Override
    public final void randomBlocks(RandomGenerator rnd, MemorySegment dst, long dstOffset, long blocks) {
        if (blocks < 0) {
            throw new IllegalArgumentException("negative block count " + blocks);
        }
        checkBytes(dst, dstOffset, blocks, "destination");
        for (long b = 0; b < blocks; b++) {
            fillRandomBlock(rnd, dst, dstOffset + b * blockBytes);
        }
    }

    /** Random quant bits with every fp16 scale field replaced by {@link #randomScale}. */
    void fillRandomBlock(RandomGenerator rnd, MemorySegment dst, long block) {
        for (int i = 0; i < blockBytes; i++) {
            dst.set(Layouts.BYTE, block + i, (byte) rnd.nextInt());
        }
        for (int offset : fp16ScaleOffsets) {
            dst.set(Layouts.SHORT_LE, block + offset, Halfs.floatToFp16(randomScale(rnd)));
        }
    }

    /**
     * A positive scale between 2^-12 and 2^-7: small enough that even the widest quant ranges give
     * weights of order one, large enough to stay a normal fp16 number.
     */
    static float randomScale(RandomGenerator rnd) {
        return (float) Math.scalb(1.0 + rnd.nextDouble(), -12 + rnd.nextInt(5));
    }

    /**
     * Decodes {@code blocks} blocks; arguments are already validated. Without {@code vectors}, in scalar loops only
     * (the same bits: see {@link QuantFormat#dequantizeScalar}).
     */
    abstract void dequantizeBlocks(MemorySegment src, long srcOffset, float[] dst, int dstOffset, int blocks,
            boolean vectors);

    /**
     * The dot product of {@code count} elements with the canonical summation order of {@link DecodedDot};
     * arguments are already validated and {@link Simd#FUSED} holds. Types override this with a kernel that
     * decodes blocks in vector registers.
     */
    float dotBlocks(MemorySegment src, long srcOffset, float[] x, int xOffset, int count) {
        return DecodedDot.dot(this, src, srcOffset, x, xOffset, count);
    }

    /** Encodes {@code blocks} blocks; only called when {@link #canQuantize()} holds and arguments are validated. */
    void quantizeBlocks(float[] src, int srcOffset, MemorySegment dst, long dstOffset, int blocks) {
        throw new AssertionError("canQuantize() is true but quantizeBlocks is missing for " + type);
    }

    private int wholeBlocks(int count) {
        if (count < 0 || count % blockSize != 0) {
            throw new IllegalArgumentException(count + " elements is not a whole number of " + type.ggmlName()
                    + " blocks of " + blockSize);
        }
        return count / blockSize;
    }

    private void checkBytes(MemorySegment segment, long offset, long blocks, String what) {
        long bytes = blocks * blockBytes;
        if (offset < 0 || offset > segment.byteSize() - bytes) {
            throw new IndexOutOfBoundsException(what + " range [" + offset + ", " + offset + " + " + bytes
                    + ") for " + blocks + " " + type.ggmlName() + " blocks is outside the segment of "
                    + segment.byteSize() + " bytes");
        }
    }

    /**
     * {@code dst[at + i] = dl * ((byte i >>> shift) & mask) - ml} for {@code i} in {@code [0, count)} over the bytes at
     * {@code quants}: the unsigned quants with a minimum of Q4_K and Q2_K, in vectors ({@link Simd#BYTE_LANES};
     * {@code count} a multiple of their length), a multiply and a subtract per value as in the scalar loops, so the same
     * bits.
     */
    static void dequantizeRun(MemorySegment src, long quants, int shift, int mask, float dl, float ml, float[] dst,
            int at, int count) {
        IntVector shiftBy = IntVector.broadcast(Simd.I, shift);
        for (int l = 0; l < count; l += Simd.L) {
            IntVector q = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, quants + l, Simd.LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, Simd.I, 0);
            ((FloatVector) q.lanewise(VectorOperators.LSHR, shiftBy).and(mask).convert(VectorOperators.I2F, 0)).mul(dl)
                    .sub(ml).intoArray(dst, at + l);
        }
    }

    /**
     * {@code dst[at + i] = dl * q - ml} for {@code i} in {@code [0, count)},
     * {@code q = (((low byte i >>> lowShift) & lowMask) | (((high byte i >>> highShift) & highMask) << highPosition))
     * - offset} over the bytes at {@code low} and {@code high}: quants whose bits lie in two runs of bytes (Q5_K, with a
     * minimum; Q6_K and Q3_K, signed, {@code ml} 0), in vectors ({@link Simd#BYTE_LANES}; {@code count} a multiple of
     * their length). A multiply and a subtract per value as in the scalar loops, so the same bits (subtracting 0 leaves
     * every float as it is, -0 included).
     */
    static void dequantizeSplitRun(MemorySegment src, long low, int lowShift, int lowMask, long high, int highShift,
            int highMask, int highPosition, int offset, float dl, float ml, float[] dst, int at, int count) {
        IntVector lowBy = IntVector.broadcast(Simd.I, lowShift);
        IntVector highBy = IntVector.broadcast(Simd.I, highShift);
        IntVector positionBy = IntVector.broadcast(Simd.I, highPosition);
        for (int l = 0; l < count; l += Simd.L) {
            IntVector lowBytes = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, low + l, Simd.LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector highBytes = (IntVector) ByteVector.fromMemorySegment(Simd.B, src, high + l, Simd.LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, Simd.I, 0);
            IntVector q = lowBytes.lanewise(VectorOperators.LSHR, lowBy).and(lowMask)
                    .or(highBytes.lanewise(VectorOperators.LSHR, highBy).and(highMask)
                            .lanewise(VectorOperators.LSHL, positionBy))
                    .sub(offset);
            ((FloatVector) q.convert(VectorOperators.I2F, 0)).mul(dl).sub(ml).intoArray(dst, at + l);
        }
    }

    static int u8(MemorySegment segment, long offset) {
        return segment.get(Layouts.BYTE, offset) & 0xFF;
    }

    static int i8(MemorySegment segment, long offset) {
        return segment.get(Layouts.BYTE, offset);
    }
}
