package moe4j.gguf;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A GGUF model opened read-only: parsed metadata and tensor infos, with every tensor's bytes left in the
 * memory-mapped file. Opening parses only the header, so it is fast and heap-light however large the file.
 *
 * <p>A split model ({@code <prefix>-00001-of-0000N.gguf}, or any file whose {@code split.count} is above 1) is
 * opened as one model: metadata of the first part (split keys kept), tensors of all parts in part order.
 *
 * <p>Tensor segments (and numeric metadata arrays) are valid until {@link #close()}; they may be read from any
 * thread.
 */
public final class GgufFile implements AutoCloseable {

    static final Pattern SPLIT_NAME = Pattern.compile("(.*)-(\\d{5})-of-(\\d{5})\\.gguf");
    static final String SPLIT_NO = "split.no";
    static final String SPLIT_COUNT = "split.count";
    static final String SPLIT_TENSORS_COUNT = "split.tensors.count";
    /** split.no and split.count are UINT16. */
    static final int MAX_PARTS = 65_535;

    private final Arena arena;
    private final List<GgufParser.Part> parts;
    private final List<GgufTensor> tensors;
    private final Map<String, GgufTensor> byName;
    private final boolean mapped;
    private final boolean hugePagesAdvised;
    private boolean closed;

    private GgufFile(Arena arena, List<GgufParser.Part> parts, List<GgufTensor> tensors, Map<String, GgufTensor> byName,
                     boolean mapped, boolean hugePagesAdvised) {
        this.arena = arena;
        this.mapped = mapped;
        this.hugePagesAdvised = hugePagesAdvised;
        this.parts = List.copyOf(parts);
        this.tensors = List.copyOf(tensors);
        this.byName = Collections.unmodifiableMap(byName);
    }

    /**
     * Maps and parses {@code path} (and, for a split model, its sibling parts).
     *
     * @throws GgufFormatException when any part is malformed or the parts do not form one model
     */
    public static GgufFile open(Path path) throws IOException {
        return open(path, true, false);
    }

    /**
     * As {@link #open(Path)}, or, with {@code inMemory}, the files read once into memory of the process instead of
     * mapped (llama.cpp's {@code --no-mmap}): loading takes the time to read them and RAM for a copy, and the
     * weights then live in anonymous memory, in 2 MiB pages where Linux gives them ({@link HugePages}), which the
     * kernels read a few percent faster than the page cache's mapping. Files that together do not fit in the
     * machine's memory are refused before any is read.
     */
    public static GgufFile open(Path path, boolean inMemory) throws IOException {
        return open(path, true, inMemory);
    }

    /**
     * Maps and parses exactly {@code path}, treating even a split part as a model of its own (its split keys are
     * left as metadata): for inspecting one shard.
     */
    public static GgufFile openSinglePart(Path path) throws IOException {
        return open(path, false, false);
    }

    private static GgufFile open(Path path, boolean assembleSplit, boolean inMemory) throws IOException {
        Arena arena = Arena.ofShared();
        try {
            // mapped first, even to be read: its header tells how many parts there are, and all of them together must
            // fit before any is read (each alone may fit where all do not)
            GgufParser.Part first = openPart(path, arena, false);
            int count = assembleSplit ? splitCount(first) : 1;
            long total = 0;
            for (int k = 0; k < count; k++) {
                Path partPath = k == 0 ? first.path() : partPath(first.path(), k, count);
                total += Files.exists(partPath) ? Files.size(partPath) : 0;
            }
            if (inMemory) {
                requireFitsInMemory(first.path(), total);
                first = openPart(first.path(), arena, true);
            }
            List<GgufParser.Part> parts = new ArrayList<>(List.of(first));
            for (int k = 1; k < count; k++) {
                Path partPath = partPath(first.path(), k, count);
                if (!Files.exists(partPath)) {
                    throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_COUNT),
                            "split part " + (k + 1) + " of " + count + " (" + partPath.getFileName() + ") does not exist");
                }
                GgufParser.Part part = openPart(partPath, arena, inMemory);
                checkSplitKeys(part, k, count);
                parts.add(part);
            }
            // a model that stays in memory gains from huge pages; one that does not would be read from disk again and
            // again in 2 MiB units, where the page cache now reads what a fault needs
            boolean advise = !inMemory && total <= PhysicalMemory.bytes();
            if (advise) {
                for (GgufParser.Part part : parts) {
                    adviseHugePages(part);
                }
            }

            List<GgufTensor> tensors = new ArrayList<>();
            Map<String, GgufTensor> byName = new HashMap<>();
            for (GgufParser.Part part : parts) {
                for (int i = 0; i < part.tensors().size(); i++) {
                    GgufTensor t = part.tensors().get(i);
                    GgufTensor earlier = byName.putIfAbsent(t.name(), t);
                    if (earlier != null) {
                        throw new GgufFormatException(part.path(), part.tensorInfoOffsets()[i], "tensor '" + t.name()
                                + "' also appears in " + earlier.file().getFileName());
                    }
                    tensors.add(t);
                }
            }
            if (count > 1) {
                long declared = splitInteger(first, SPLIT_TENSORS_COUNT, Integer.MAX_VALUE);
                if (declared != tensors.size()) {
                    throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_TENSORS_COUNT),
                            SPLIT_TENSORS_COUNT + " is " + declared + " but the " + count + " parts hold "
                                    + tensors.size() + " tensors");
                }
            }
            return new GgufFile(arena, parts, tensors, byName, !inMemory, advise);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * A model held in memory rather than in a file, e.g. generated weights: {@code tensors} in order, their
     * {@code data} segments owned by {@code arena}, which {@link #close()} closes. {@link #paths()} gives
     * {@code name} (no such file exists), as does every error message.
     *
     * @throws IllegalArgumentException when two tensors share a name
     */
    public static GgufFile inMemory(Path name, GgufMetadata metadata, List<GgufTensor> tensors, Arena arena) {
        Map<String, GgufTensor> byName = new HashMap<>();
        for (GgufTensor t : tensors) {
            if (byName.putIfAbsent(t.name(), t) != null) {
                throw new IllegalArgumentException("tensor '" + t.name() + "' appears twice in " + name);
            }
        }
        long bytes = tensors.stream().mapToLong(GgufTensor::byteSize).sum();
        GgufParser.Part part = new GgufParser.Part(name, bytes, 3, GgufParser.DEFAULT_ALIGNMENT, 0, metadata, Map.of(),
                List.copyOf(tensors), new long[tensors.size()]);
        return new GgufFile(arena, List.of(part), tensors, byName, false, false);
    }

    public GgufMetadata metadata() { return parts.getFirst().metadata(); }

    /** All tensors in file order (all parts, in part order). */
    public List<GgufTensor> tensors() { return tensors; }

    /** @throws NoSuchElementException naming the tensor and the file when absent */
    public GgufTensor tensor(String name) {
        GgufTensor t = byName.get(name);
        if (t == null) {
            throw new NoSuchElementException("no tensor '" + name + "' in " + parts.getFirst().path().getFileName()
                    + (parts.size() > 1 ? " (all " + parts.size() + " parts)" : ""));
        }
        return t;
    }

    public Optional<GgufTensor> findTensor(String name) { return Optional.ofNullable(byName.get(name)); }

    /** The files of the model: one, or every split part in order. */
    public List<Path> paths() { return parts.stream().map(GgufParser.Part::path).toList(); }

    /** Whether the weights are mapped from files ({@link #open(Path)}), not read or built in memory. */
    public boolean mapped() { return mapped; }

    /**
     * Whether the mapping was offered 2 MiB pages: mapped files that together fit in the machine's memory. For such a
     * model a small {@link #hugePageShare()} means the page cache held the files in 4 KiB folios before it was loaded.
     */
    public boolean hugePagesAdvised() { return hugePagesAdvised; }

    /**
     * Of this process's resident pages of the mapped files, the share mapped with 2 MiB entries (Linux's
     * {@code FilePmdMapped} over {@code Rss} in {@code /proc/self/smaps}): near 1 when the page cache holds the files in
     * 2 MiB folios (see {@link HugePages#adviseMapped}), near 0 when in 4 KiB ones. Empty when not mapped, not on
     * Linux, nothing is resident yet, or smaps cannot be read.
     */
    public Optional<Double> hugePageShare() {
        if (!mapped) {
            return Optional.empty();
        }
        try {
            List<String> names = new ArrayList<>();
            for (Path p : paths()) {
                names.add(" " + p.toRealPath());
            }
            long rss = 0;
            long pmd = 0;
            boolean ours = false;
            for (String line : Files.readAllLines(Path.of("/proc/self/smaps"))) {
                if (SMAPS_MAPPING.matcher(line).lookingAt()) {
                    ours = names.stream().anyMatch(line::endsWith);
                } else if (ours && line.startsWith("Rss:")) {
                    rss += kib(line);
                } else if (ours && line.startsWith("FilePmdMapped:")) {
                    pmd += kib(line);
                }
            }
            return rss > 0 ? Optional.of(Math.min(1.0, (double) pmd / rss)) : Optional.empty();
        } catch (IOException | RuntimeException e) {  // no smaps here (not Linux), or a line we do not understand
            return Optional.empty();
        }
    }

    /** The first line of a mapping's entry in smaps: its address range. */
    private static final Pattern SMAPS_MAPPING = Pattern.compile("[0-9a-f]+-[0-9a-f]+ ");

    /** The number of a smaps line such as {@code Rss:   4848320 kB}. */
    private static long kib(String line) {
        return Long.parseLong(line.substring(line.indexOf(':') + 1).replace("kB", "").trim());
    }

    /** Total size in bytes of all parts. */
    public long fileBytes() { return parts.stream().mapToLong(GgufParser.Part::size).sum(); }

    /** GGUF version of the (first) file: 2 or 3. */
    public int version() { return parts.getFirst().version(); }

    /** Data alignment of the (first) file: {@code general.alignment} or 32. */
    public long alignment() { return parts.getFirst().alignment(); }

    /** Absolute offset in the (first) file where the aligned tensor-data section starts. */
    public long dataStart() { return parts.getFirst().dataStart(); }

    /** Unmaps every part; tensor segments and metadata array views become unusable. Idempotent. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "GgufFile[" + parts.getFirst().path().getFileName() + (parts.size() > 1 ? " + " + (parts.size() - 1)
                + " parts" : "") + ", v" + version() + ", " + tensors.size() + " tensors]";
    }

    /** One file of the model, mapped (or, {@code inMemory}, read into memory of {@code arena}) and parsed. */
    private static GgufParser.Part openPart(Path path, Arena arena, boolean inMemory) throws IOException {
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size == 0) {
                throw new GgufFormatException(path, 0, "empty file: not a GGUF file");
            }
            if (inMemory) {
                return GgufParser.parse(path, read(ch, size, path, arena).asReadOnly());
            }
            MemorySegment mapped = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            // The same mapping, seen as a plain native segment (same arena, still read-only): the kernels then see one
            // segment class for weights, activations and scratch buffers alike. A second class at a Vector API load
            // makes its shared type profile bimorphic, and C2 then keeps class checks and bounds checks inside the
            // compiled loops of every kernel (measured: prompt processing 90 -> 64 tok/s when the mapped class won).
            return GgufParser.parse(path, plainView(mapped, arena));
        }
    }

    /**
     * The whole of {@code ch} read into memory of {@code arena}: huge pages where Linux gives them, 64-byte aligned.
     * {@link #open(Path, boolean, boolean)} has checked that all the model's files fit.
     */
    private static MemorySegment read(FileChannel ch, long size, Path path, Arena arena) throws IOException {
        MemorySegment data;
        try {
            data = HugePages.allocateOrPlain(size, arena);
        } catch (OutOfMemoryError e) {
            throw new IOException("not enough memory to read " + path + " (" + size + " bytes) into memory; map it instead");
        }
        for (long at = 0; at < size; ) {
            int n = ch.read(data.asSlice(at, Math.min(READ_CHUNK, size - at)).asByteBuffer(), at);
            if (n < 0) {
                throw new GgufFormatException(path, at, "file ended at byte " + at + " while reading " + size);
            }
            at += n;
        }
        return data;
    }

    /** {@code bytes} of {@code path} (a model, or all its parts) must fit in the machine's memory to be read into it. */
    private static void requireFitsInMemory(Path path, long bytes) throws IOException {
        long physical = PhysicalMemory.bytes();
        if (bytes > physical) {
            throw new IOException(String.format(Locale.ROOT, "%s (%.1f GiB) does not fit in this machine's memory"
                    + " (%.1f GiB) to be read into it; map it instead (without --no-mmap)", path, bytes / GIB,
                    physical / GIB));
        }
    }

    /**
     * Offers a mapped part's tensor data to the kernel for huge pages ({@link HugePages#adviseMapped}): pages that
     * come into the page cache after this (a model's first load, or after the cache let it go) come in 2 MiB folios
     * on file systems that keep large folios, and its weights then stream with a TLB entry per 2 MiB, as with
     * {@code --no-mmap} but without the copy. Pages cached before stay as they were.
     */
    private static void adviseHugePages(GgufParser.Part part) {
        long base = 0;
        long start = Long.MAX_VALUE;
        long end = 0;
        for (GgufTensor t : part.tensors()) {
            if (t.byteSize() > 0) {
                base = t.data().address() - t.fileOffset();  // the mapping starts at the file's first byte
                start = Math.min(start, t.data().address());
                end = Math.max(end, t.data().address() + t.byteSize());
            }
        }
        if (start < end) {
            // down to a 64 KiB boundary of the mapping: page-aligned whatever the kernel's page size (4, 16 or 64 KiB)
            long aligned = base + ((start - base) & -(64L << 10));
            HugePages.adviseMapped(aligned, end - aligned);
        }
    }

    private static final long READ_CHUNK = 1L << 30;
    private static final double GIB = 1L << 30;

    /**
     * The mapping as a plain native segment, or the mapped segment itself where the JVM denies restricted methods
     * to this module ({@code --illegal-native-access=deny} without {@code --enable-native-access}): still correct,
     * only exposed to the profile effect described above.
     */
    private static MemorySegment plainView(MemorySegment mapped, Arena arena) {
        try {
            return MemorySegment.ofAddress(mapped.address()).reinterpret(mapped.byteSize(), arena, null).asReadOnly();
        } catch (IllegalCallerException e) {
            return mapped;
        }
    }

    /** 1 for a single file; otherwise the part count, after checking that {@code first} is part 1 of it. */
    private static int splitCount(GgufParser.Part first) throws GgufFormatException {
        Matcher m = SPLIT_NAME.matcher(String.valueOf(first.path().getFileName()));
        int named = m.matches() ? Integer.parseInt(m.group(3)) : 1;
        boolean hasKey = first.metadata().contains(SPLIT_COUNT);
        long declared = hasKey ? splitInteger(first, SPLIT_COUNT, MAX_PARTS) : 1;
        if (declared <= 1 && named <= 1) {
            return 1;
        }
        if (!hasKey) {
            throw new GgufFormatException(first.path(), 16, "the file name says part " + m.group(2) + " of " + named
                    + " but the file has no " + SPLIT_COUNT + " key");
        }
        if (!m.matches()) {
            throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_COUNT), SPLIT_COUNT + " is " + declared
                    + " but the file name does not end in -00001-of-" + String.format("%05d", declared)
                    + ".gguf, so the other parts cannot be found");
        }
        if (declared != named) {
            throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_COUNT), SPLIT_COUNT + " is " + declared
                    + " but the file name says " + named + " parts");
        }
        long no = splitInteger(first, SPLIT_NO, MAX_PARTS);
        if (no != 0) {
            throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_NO), "this is split part " + (no + 1)
                    + " of " + declared + "; open the first part " + partPath(first.path(), 0, (int) declared).getFileName()
                    + " instead");
        }
        if (Integer.parseInt(m.group(2)) != 1) {
            throw new GgufFormatException(first.path(), keyOffset(first, SPLIT_NO), SPLIT_NO
                    + " is 0 but the file name says part " + m.group(2));
        }
        return (int) declared;
    }

    private static void checkSplitKeys(GgufParser.Part part, int k, int count) throws GgufFormatException {
        long no = splitInteger(part, SPLIT_NO, MAX_PARTS);
        if (no != k) {
            throw new GgufFormatException(part.path(), keyOffset(part, SPLIT_NO), SPLIT_NO + " is " + no
                    + " but this file is part " + (k + 1) + " (expected " + SPLIT_NO + " " + k + ")");
        }
        long c = splitInteger(part, SPLIT_COUNT, MAX_PARTS);
        if (c != count) {
            throw new GgufFormatException(part.path(), keyOffset(part, SPLIT_COUNT), SPLIT_COUNT + " is " + c
                    + " but the first part says " + count);
        }
    }

    /** A split key as a format error (not a metadata error): without it the parts cannot be assembled. */
    private static long splitInteger(GgufParser.Part part, String key, long max) throws GgufFormatException {
        GgufMetadata md = part.metadata();
        if (!md.contains(key)) {
            throw new GgufFormatException(part.path(), 16, "split part lacks the " + key + " key");
        }
        if (!md.type(key).isInteger()) {
            throw new GgufFormatException(part.path(), keyOffset(part, key), key + " must be an integer, found "
                    + md.type(key));
        }
        long v = ((Number) md.get(key)).longValue();
        if (v < 0 || v > max) {
            throw new GgufFormatException(part.path(), keyOffset(part, key), key + " value " + v + " is out of range");
        }
        return v;
    }

    private static long keyOffset(GgufParser.Part part, String key) {
        return part.keyOffsets().getOrDefault(key, 0L);
    }

    /** Path of 0-based part {@code k} of {@code count}, next to {@code anyPart}. */
    static Path partPath(Path anyPart, int k, int count) {
        Matcher m = SPLIT_NAME.matcher(String.valueOf(anyPart.getFileName()));
        if (!m.matches()) {
            throw new IllegalArgumentException(anyPart + " is not named like a split part");
        }
        return anyPart.resolveSibling(splitName(m.group(1), k, count));
    }

    static String splitName(String prefix, int k, int count) {
        return String.format("%s-%05d-of-%05d.gguf", prefix, k + 1, count);
    }
}
