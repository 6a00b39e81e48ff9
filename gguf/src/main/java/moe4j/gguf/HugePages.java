package moe4j.gguf;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;
import java.util.Optional;

/**
 * Memory for weights in 2 MiB pages where Linux allows them: a private anonymous mapping from {@code mmap}, marked
 * {@code madvise(MADV_HUGEPAGE)} before anything touches it, so that the kernel backs it with transparent huge pages
 * when its policy is {@code always} or {@code madvise}; and the same advice for a model file's mapping
 * ({@link #adviseMapped}). Weights in such memory stream with a TLB entry per 2 MiB instead of per 4 KiB. Elsewhere
 * (another OS, native access denied, the call refused) callers fall back to {@link Arena#allocate}, or keep the
 * mapping as it is.
 */
public final class HugePages {

    private HugePages() {}

    /** The huge page size asked for (x86-64's and most arm64 kernels' PMD size). */
    public static final long PAGE = 2L << 20;

    private static final int PROT_READ_WRITE = 0x1 | 0x2;
    private static final int MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20;
    private static final int MADV_HUGEPAGE = 14;
    private static final long MAP_FAILED = -1L;

    private static final MethodHandle MMAP;
    private static final MethodHandle MADVISE;
    private static final MethodHandle MUNMAP;

    static {
        MethodHandle mmap = null;
        MethodHandle madvise = null;
        MethodHandle munmap = null;
        if (System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("linux")) {
            try {
                Linker linker = Linker.nativeLinker();
                var libc = linker.defaultLookup();
                mmap = linker.downcallHandle(libc.find("mmap").orElseThrow(), FunctionDescriptor.of(ValueLayout.ADDRESS,
                        ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
                madvise = linker.downcallHandle(libc.find("madvise").orElseThrow(), FunctionDescriptor.of(
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
                munmap = linker.downcallHandle(libc.find("munmap").orElseThrow(), FunctionDescriptor.of(
                        ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
            } catch (RuntimeException e) {  // no such symbol, or native access denied to this module
                mmap = null;
            }
        }
        MMAP = mmap;
        MADVISE = madvise;
        MUNMAP = munmap;
    }

    /**
     * {@code size} bytes of zeroed memory, 2 MiB aligned, offered to the kernel as huge pages and unmapped when
     * {@code arena} closes; empty where this cannot be had (the caller allocates otherwise).
     */
    static Optional<MemorySegment> allocate(long size, Arena arena) {
        if (MMAP == null || size <= 0) {
            return Optional.empty();
        }
        long length = (size + PAGE - 1) / PAGE * PAGE + PAGE;  // room to start on a 2 MiB boundary
        MemorySegment raw;
        try {
            raw = (MemorySegment) MMAP.invokeExact(MemorySegment.NULL, length, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS,
                    -1, 0L);
        } catch (Throwable t) {
            return Optional.empty();
        }
        if (raw.address() == MAP_FAILED || raw.address() == 0) {
            return Optional.empty();
        }
        long start = (raw.address() + PAGE - 1) / PAGE * PAGE;
        try {
            // a refusal only costs the huge pages: the memory is there either way
            int ignored = (int) MADVISE.invokeExact(MemorySegment.ofAddress(start), (size + PAGE - 1) / PAGE * PAGE,
                    MADV_HUGEPAGE);
        } catch (Throwable t) {
            // as above
        }
        long base = raw.address();
        try {
            return Optional.of(MemorySegment.ofAddress(start).reinterpret(size, arena, s -> unmap(base, length)));
        } catch (RuntimeException e) {  // the arena closed, or another thread's: nothing else would unmap it
            unmap(base, length);
            throw e;
        }
    }

    /**
     * Offers {@code bytes} of a read-only file mapping at {@code address} (page-aligned) to the kernel for huge pages
     * ({@code madvise(MADV_HUGEPAGE)}): on Linux with a file system that keeps large folios in its page cache (ext4 and
     * XFS in recent kernels), pages read in after this come as 2 MiB folios and are mapped with one TLB entry each, as
     * memory from {@link #allocate} is. Pages already cached in small folios stay as they are. Whether it took is not
     * checked: a refusal only costs the huge pages.
     */
    static void adviseMapped(long address, long bytes) {
        if (MADVISE == null || bytes <= 0) {
            return;
        }
        try {
            int ignored = (int) MADVISE.invokeExact(MemorySegment.ofAddress(address), bytes, MADV_HUGEPAGE);
        } catch (Throwable t) {
            // as above
        }
    }

    /** {@code size} bytes of zeroed memory of {@code arena}: {@link #allocate} where it gives them, else 64-byte aligned. */
    public static MemorySegment allocateOrPlain(long size, Arena arena) {
        return allocate(size, arena).orElseGet(() -> arena.allocate(size, 64));
    }

    private static void unmap(long address, long length) {
        try {
            int ignored = (int) MUNMAP.invokeExact(MemorySegment.ofAddress(address), length);
        } catch (Throwable t) {
            throw new IllegalStateException("munmap of " + length + " bytes failed", t);
        }
    }
}
