package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import moe4j.gguf.GgmlType;

/** The host side of padded Q3_K blocks: what the pinned staging buffers hold for the device, no GPU needed. */
class BlockPaddingTest {

    /** Rows of 3 blocks of 110 bytes become rows of 3 x 112 + 16 bytes, zeros between the blocks and after a row. */
    private static final CudaBackend.BlockPadding PADDING = new CudaBackend.BlockPadding(110, 112, 330, 352);

    private static MemorySegment fileRows(Arena arena, int rows) {
        MemorySegment src = arena.allocate(330L * rows);
        for (long i = 0; i < src.byteSize(); i++) {
            src.set(ValueLayout.JAVA_BYTE, i, (byte) (1 + i % 251));  // never zero, so a missing byte shows
        }
        return src;
    }

    private static byte expected(MemorySegment src, long deviceOffset) {
        long row = deviceOffset / 352;
        long inRow = deviceOffset % 352;
        long block = inRow / 112;
        long inBlock = inRow % 112;
        if (block >= 3 || inBlock >= 110) {
            return 0;
        }
        return src.get(ValueLayout.JAVA_BYTE, row * 330 + block * 110 + inBlock);
    }

    @Test
    void deviceBytesCountWholePaddedRows() {
        assertEquals(7 * 352, PADDING.deviceBytes(7 * 330));
    }

    /**
     * A row of b blocks takes 112 b + 16 bytes, 32 more where 112 b + 16 is a multiple of 256 (rows that far apart
     * share cache sets in the tensor-core tiles); heldBytes counts that per row of a matrix, and a vector as f32.
     */
    @Test
    void paddedRowsNeverLieAMultipleOf256BytesApart() {
        assertEquals(16 * 112 + 16, CudaBackend.paddedQ3kRowBytes(16 * 110));  // rows of 4096 values: 1808
        assertEquals(9 * 112 + 32, CudaBackend.paddedQ3kRowBytes(9 * 110));    // 1024 + 16 would be 4 x 256
        for (int blocks = 1; blocks <= 200; blocks++) {
            long row = CudaBackend.paddedQ3kRowBytes(blocks * 110L);
            assertTrue(row % 16 == 0 && row % 256 != 0, blocks + " blocks: " + row + " bytes");
        }
        long[] dims = {4096, 1536, 128};
        long fileBytes = 110L * 16 * 1536 * 128;
        boolean padded = CudaBackend.heldBytes(GgmlType.Q3_K, dims, fileBytes) != fileBytes;
        // padding is on unless -Dmoe4j.cuda.padQ3k=false; either way what a GPU holds follows it
        assertEquals(padded ? 1808L * 1536 * 128 : fileBytes, CudaBackend.heldBytes(GgmlType.Q3_K, dims, fileBytes));
        assertEquals(fileBytes * 144 / 110, CudaBackend.heldBytes(GgmlType.Q4_K, dims, fileBytes * 144 / 110));
        assertEquals(4L * 4096, CudaBackend.heldBytes(GgmlType.F32, new long[] {4096}, 4L * 4096));
    }

    /** From the first row, or from a later one (a staging chunk after the first), on one thread or in slices. */
    @ParameterizedTest
    @ValueSource(ints = {0, 5})
    void blocksLandTheirPaddedWidthApartWithZerosBetween(int firstRow) {
        int rows = 40_000;  // more than one 2 MB slice of the device's bytes: the parallel path
        try (Arena arena = Arena.ofShared()) {
            MemorySegment src = fileRows(arena, rows);
            long offset = firstRow * 352L;
            long len = (rows - firstRow) * 352L;
            MemorySegment pinned = arena.allocate(len);
            pinned.fill((byte) 0x5A);  // what a reused staging buffer may hold
            CudaBackend.fill(pinned, src, offset, len, PADDING);
            for (long i = 0; i < len; i++) {
                assertEquals(expected(src, offset + i), pinned.get(ValueLayout.JAVA_BYTE, i),
                        "device byte " + (offset + i));
            }
        }
    }
}
