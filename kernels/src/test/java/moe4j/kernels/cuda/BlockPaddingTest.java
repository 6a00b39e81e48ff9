package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import moe4j.gguf.GgmlType;

/** The host side of padded blocks: what the pinned staging buffers hold for the device, no GPU needed. */
class BlockPaddingTest {

    /** Rows of 3 blocks of 110 bytes become rows of 3 x 112 + 16 bytes, zeros between the blocks and after a row. */
    private static final CudaBackend.BlockPadding PADDING = new CudaBackend.BlockPadding(110, 112, 330, 352);
    /** Q6_K's: rows of 3 blocks of 210 bytes become rows of 3 x 224 + 16 bytes. */
    private static final CudaBackend.BlockPadding Q6K_PADDING = new CudaBackend.BlockPadding(210, 224, 630, 688);

    private static MemorySegment fileRows(Arena arena, int rows, CudaBackend.BlockPadding p) {
        MemorySegment src = arena.allocate(p.fileRow() * rows);
        for (long i = 0; i < src.byteSize(); i++) {
            src.set(ValueLayout.JAVA_BYTE, i, (byte) (1 + i % 251));  // never zero, so a missing byte shows
        }
        return src;
    }

    private static byte expected(MemorySegment src, long deviceOffset, CudaBackend.BlockPadding p) {
        long row = deviceOffset / p.deviceRow();
        long inRow = deviceOffset % p.deviceRow();
        long block = inRow / p.to();
        long inBlock = inRow % p.to();
        if (block >= p.fileRow() / p.from() || inBlock >= p.from()) {
            return 0;
        }
        return src.get(ValueLayout.JAVA_BYTE, row * p.fileRow() + block * p.from() + inBlock);
    }

    @Test
    void deviceBytesCountWholePaddedRows() {
        assertEquals(7 * 352, PADDING.deviceBytes(7 * 330));
    }

    /**
     * A Q3_K row of b blocks takes 112 b + 16 bytes, a Q6_K row 224 b + 16, 32 more where that is a multiple of 256
     * (rows that far apart share cache sets in the tensor-core tiles); heldBytes counts that per row of a matrix, and a
     * vector as f32.
     */
    @Test
    void paddedRowsNeverLieAMultipleOf256BytesApart() {
        assertEquals(16 * 112 + 16, CudaBackend.paddedRowBytes(GgmlType.Q3_K, 16 * 110));  // rows of 4096 values: 1808
        assertEquals(9 * 112 + 32, CudaBackend.paddedRowBytes(GgmlType.Q3_K, 9 * 110));    // 1024 + 16 is 4 x 256 + 16
        assertEquals(8 * 224 + 16, CudaBackend.paddedRowBytes(GgmlType.Q6_K, 8 * 210));    // rows of 2048 values: 1808
        assertEquals(3 * 224 + 16, CudaBackend.paddedRowBytes(GgmlType.Q6_K, 3 * 210));    // rows of 768: 688
        for (GgmlType type : new GgmlType[] {GgmlType.Q3_K, GgmlType.Q6_K}) {
            for (int blocks = 1; blocks <= 200; blocks++) {
                long row = CudaBackend.paddedRowBytes(type, blocks * (long) type.blockBytes());
                assertTrue(row % 16 == 0 && row % 256 != 0, type + ", " + blocks + " blocks: " + row + " bytes");
            }
        }
        long[] dims = {4096, 1536, 128};
        long fileBytes = 110L * 16 * 1536 * 128;
        boolean padded = CudaBackend.heldBytes(GgmlType.Q3_K, dims, fileBytes) != fileBytes;
        // padding is on unless -Dmoe4j.cuda.padQ3k=false; either way what a GPU holds follows it
        assertEquals(padded ? 1808L * 1536 * 128 : fileBytes, CudaBackend.heldBytes(GgmlType.Q3_K, dims, fileBytes));
        assertEquals(fileBytes * 144 / 110, CudaBackend.heldBytes(GgmlType.Q4_K, dims, fileBytes * 144 / 110));
        long q6Bytes = 210L * 16 * 1536 * 128;
        boolean q6Padded = CudaBackend.heldBytes(GgmlType.Q6_K, dims, q6Bytes) != q6Bytes;
        // Q6_K is padded only with -Dmoe4j.cuda.padQ6k=true
        assertEquals(q6Padded ? (16L * 224 + 16) * 1536 * 128 : q6Bytes,
                CudaBackend.heldBytes(GgmlType.Q6_K, dims, q6Bytes));
        assertEquals(Boolean.getBoolean("moe4j.cuda.padQ6k"), q6Padded);
        assertEquals(4L * 4096, CudaBackend.heldBytes(GgmlType.F32, new long[] {4096}, 4L * 4096));
    }

    /**
     * From the first row, or from a later one (a staging chunk after the first), on one thread or in slices; Q3_K's
     * layout and Q6_K's.
     */
    @ParameterizedTest(name = "blocks of {1}, from row {0}")
    @CsvSource({"0, 110", "5, 110", "0, 210", "5, 210"})
    void blocksLandTheirPaddedWidthApartWithZerosBetween(int firstRow, int blockBytes) {
        CudaBackend.BlockPadding padding = blockBytes == 110 ? PADDING : Q6K_PADDING;
        int rows = 40_000;  // more than one 2 MB slice of the device's bytes: the parallel path
        try (Arena arena = Arena.ofShared()) {
            MemorySegment src = fileRows(arena, rows, padding);
            long offset = firstRow * padding.deviceRow();
            long len = (rows - firstRow) * padding.deviceRow();
            MemorySegment pinned = arena.allocate(len);
            pinned.fill((byte) 0x5A);  // what a reused staging buffer may hold
            CudaBackend.fill(pinned, src, offset, len, padding);
            for (long i = 0; i < len; i++) {
                assertEquals(expected(src, offset + i, padding), pinned.get(ValueLayout.JAVA_BYTE, i),
                        "device byte " + (offset + i));
            }
        }
    }
}
