package moe4j.kernels.quant;

import java.lang.foreign.MemorySegment;

/**
 * The 12-byte packed 6-bit scale fields of the K-quants: eight (scale, min) pairs for Q4_K/Q5_K,
 * sixteen signed scales for Q3_K.
 */
final class KQuantScales {

    private KQuantScales() {}

    /** Number of scale bytes in a Q3_K/Q4_K/Q5_K block. */
    static final int BYTES = 12;

    /** Q4_K/Q5_K scale of sub-block {@code j} (0..7), 0..63; {@code offset} is the first scale byte. */
    static int scale(MemorySegment block, long offset, int j) {
        if (j < 4) {
            return BlockFormat.u8(block, offset + j) & 63;
        }
        return (BlockFormat.u8(block, offset + j + 4) & 0xF) | ((BlockFormat.u8(block, offset + j - 4) >>> 6) << 4);
    }

    /** Q4_K/Q5_K min of sub-block {@code j} (0..7), 0..63. */
    static int min(MemorySegment block, long offset, int j) {
        if (j < 4) {
            return BlockFormat.u8(block, offset + j + 4) & 63;
        }
        return (BlockFormat.u8(block, offset + j + 4) >>> 4) | ((BlockFormat.u8(block, offset + j) >>> 6) << 4);
    }

    /** Packs eight 6-bit scales and mins (each 0..63) into the Q4_K/Q5_K layout at {@code offset}. */
    static void packScaleMin(int[] scales, int[] mins, MemorySegment block, long offset) {
        for (int j = 0; j < 4; j++) {
            int highScale = scales[j + 4] >>> 4;
            int highMin = mins[j + 4] >>> 4;
            block.set(Layouts.BYTE, offset + j, (byte) (scales[j] | (highScale << 6)));
            block.set(Layouts.BYTE, offset + j + 4, (byte) (mins[j] | (highMin << 6)));
            block.set(Layouts.BYTE, offset + j + 8, (byte) ((scales[j + 4] & 0xF) | ((mins[j + 4] & 0xF) << 4)));
        }
    }

    /** Q3_K signed scale of group {@code i} (0..15, 16 elements each), -32..31. */
    static int q3Scale(MemorySegment block, long offset, int i) {
        int low = i < 8 ? BlockFormat.u8(block, offset + i) & 0xF : BlockFormat.u8(block, offset + i - 8) >>> 4;
        int high = (BlockFormat.u8(block, offset + 8 + (i & 3)) >>> (2 * (i >>> 2))) & 3;
        return (low | (high << 4)) - 32;
    }

    /** Packs sixteen 6-bit unsigned Q3_K scale codes (signed scale + 32, each 0..63) at {@code offset}. */
    static void packQ3(int[] codes, MemorySegment block, long offset) {
        for (int k = 0; k < 8; k++) {
            block.set(Layouts.BYTE, offset + k, (byte) ((codes[k] & 0xF) | ((codes[k + 8] & 0xF) << 4)));
        }
        for (int k = 0; k < 4; k++) {
            int high = 0;
            for (int quarter = 0; quarter < 4; quarter++) {
                high |= (codes[k + 4 * quarter] >>> 4) << (2 * quarter);
            }
            block.set(Layouts.BYTE, offset + 8 + k, (byte) high);
        }
    }
}
