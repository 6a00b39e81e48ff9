package moe4j.gguf;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Matcher;

/**
 * Builds a GGUF v3 file: metadata of every value type, then tensors whose bytes come from
 * {@link TensorSource}s that fill the output file's mapped data region directly, so models larger than the
 * heap stream through. Tensors are packed in insertion order, each at an offset aligned to
 * {@code general.alignment} (default 32), padding zero-filled — the layout llama.cpp requires.
 *
 * <p>Putting a key that is already present replaces its value and keeps its original position.
 */
public final class GgufWriter {

    private record Tensor(String name, GgmlType type, long[] dims, long bytes, TensorSource source) {}

    private final Map<String, GgufMetadata.Entry> entries = new LinkedHashMap<>();
    private final List<Tensor> tensors = new ArrayList<>();
    private final Set<String> tensorNames = new HashSet<>();

    // ---- metadata

    /**
     * Sets {@code key} to {@code value} of {@code type}. Integer types take any {@link Number} in range (UINT64
     * takes raw bits), float types any Number, BOOL a Boolean, STRING a String, ARRAY a {@link GgufArray}.
     */
    public GgufWriter put(String key, GgufValueType type, Object value) {
        Objects.requireNonNull(key, "key");
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(value, () -> "value of " + key);
        if (key.isEmpty()) {
            throw new IllegalArgumentException("metadata keys must not be empty");
        }
        Object normalized = switch (type) {
            case UINT8, INT8, UINT16, INT16, INT32 -> (int) GgufArray.checkRange(type, number(key, type, value).longValue());
            case UINT32, UINT64, INT64 -> GgufArray.checkRange(type, number(key, type, value).longValue());
            case FLOAT32 -> number(key, type, value).floatValue();
            case FLOAT64 -> number(key, type, value).doubleValue();
            case BOOL -> cast(key, type, value, Boolean.class);
            case STRING -> cast(key, type, value, String.class);
            case ARRAY -> cast(key, type, value, GgufArray.class);
        };
        if (key.equals(GgufParser.ALIGNMENT_KEY)) {
            if (type != GgufValueType.UINT32) {
                throw new IllegalArgumentException(key + " must be UINT32, not " + type);
            }
            long a = (Long) normalized;
            if (a == 0 || (a & (a - 1)) != 0) {
                throw new IllegalArgumentException(key + " must be a non-zero power of two, not " + a);
            }
        }
        entries.put(key, new GgufMetadata.Entry(type, normalized));
        return this;
    }

    public GgufWriter putUInt8(String key, int value) { return put(key, GgufValueType.UINT8, value); }

    public GgufWriter putInt8(String key, int value) { return put(key, GgufValueType.INT8, value); }

    public GgufWriter putUInt16(String key, int value) { return put(key, GgufValueType.UINT16, value); }

    public GgufWriter putInt16(String key, int value) { return put(key, GgufValueType.INT16, value); }

    public GgufWriter putUInt32(String key, long value) { return put(key, GgufValueType.UINT32, value); }

    public GgufWriter putInt32(String key, int value) { return put(key, GgufValueType.INT32, value); }

    public GgufWriter putUInt64(String key, long value) { return put(key, GgufValueType.UINT64, value); }

    public GgufWriter putInt64(String key, long value) { return put(key, GgufValueType.INT64, value); }

    public GgufWriter putFloat32(String key, float value) { return put(key, GgufValueType.FLOAT32, value); }

    public GgufWriter putFloat64(String key, double value) { return put(key, GgufValueType.FLOAT64, value); }

    public GgufWriter putBool(String key, boolean value) { return put(key, GgufValueType.BOOL, value); }

    public GgufWriter putString(String key, String value) { return put(key, GgufValueType.STRING, value); }

    public GgufWriter putArray(String key, GgufArray value) { return put(key, GgufValueType.ARRAY, value); }

    public GgufWriter putStringArray(String key, List<String> values) { return putArray(key, GgufArray.ofStrings(values)); }

    public GgufWriter putInt32Array(String key, int... values) { return putArray(key, GgufArray.ofInt32(values)); }

    public GgufWriter putUInt32Array(String key, long... values) {
        return putArray(key, GgufArray.ofIntegers(GgufValueType.UINT32, values));
    }

    public GgufWriter putFloat32Array(String key, float... values) { return putArray(key, GgufArray.ofFloat32(values)); }

    public GgufWriter putBoolArray(String key, boolean... values) { return putArray(key, GgufArray.ofBooleans(values)); }

    /**
     * Copies every entry of {@code metadata}. Numeric arrays of an open file are copied when this writer writes,
     * so keep that file open until then.
     */
    public GgufWriter putAll(GgufMetadata metadata) {
        for (String key : metadata.keys()) {
            put(key, metadata.type(key), metadata.get(key));
        }
        return this;
    }

    public GgufWriter remove(String key) {
        entries.remove(key);
        return this;
    }

    /**
     * The metadata put so far, as a file written now would hold it (numeric arrays are heap copies).
     *
     * @param source the name error messages give for it, in place of a file name
     */
    public GgufMetadata metadata(String source) {
        return new GgufMetadata(entries, source);
    }

    // ---- tensors

    /**
     * Adds a tensor; {@code dims} is in ggml order (row length first), 1 to 4 entries.
     *
     * @throws IllegalArgumentException for an invalid name, shape or type
     */
    public GgufWriter addTensor(String name, GgmlType type, long[] dims, TensorSource source) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(source, "source");
        if (name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length > GgufParser.MAX_TENSOR_NAME_BYTES) {
            throw new IllegalArgumentException("tensor name '" + name + "' must be 1 to "
                    + GgufParser.MAX_TENSOR_NAME_BYTES + " UTF-8 bytes");
        }
        if (!tensorNames.add(name)) {
            throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
        }
        try {
            if (dims.length < 1 || dims.length > GgufParser.MAX_DIMS) {
                throw new IllegalArgumentException("tensor '" + name + "' needs 1 to 4 dimensions, got " + dims.length);
            }
            long elements = 1;
            for (long d : dims) {
                if (d < 0) {
                    throw new IllegalArgumentException("tensor '" + name + "' has a negative dimension: " + Arrays.toString(dims));
                }
                elements = Math.multiplyExact(elements, d);
            }
            if (!type.isValid()) {
                throw new IllegalArgumentException("tensor '" + name + "': type " + type + " was removed from ggml");
            }
            if (dims[0] % type.blockSize() != 0) {
                throw new IllegalArgumentException("tensor '" + name + "' row length " + dims[0]
                        + " is not a multiple of the " + type + " block size " + type.blockSize());
            }
            tensors.add(new Tensor(name, type, dims.clone(), type.bytesFor(elements), source));
        } catch (RuntimeException e) {
            tensorNames.remove(name);
            throw e;
        }
        return this;
    }

    /** Adds a copy of a tensor of an open file (the file must stay open until this writer writes). */
    public GgufWriter addTensor(GgufTensor tensor) {
        return addTensor(tensor.name(), tensor.type(), tensor.dims(), TensorSource.copyOf(tensor.data()));
    }

    public int tensorCount() { return tensors.size(); }

    // ---- output

    /** Writes one GGUF v3 file, replacing {@code out}; a failed write deletes the partial file. */
    public void write(Path out) throws IOException {
        writeFile(out, new ArrayList<>(entries.entrySet()), tensors);
    }

    /**
     * Writes the model as {@code parts} files {@code <prefix>-0000K-of-0000N.gguf} next to {@code firstPart},
     * whose name is either such a part name or {@code <prefix>.gguf}. All metadata goes into part 1; every part
     * carries {@code split.no}, {@code split.count} (UINT16) and {@code split.tensors.count} (INT32), plus
     * {@code general.alignment} when set. Whole tensors are distributed in order, balancing bytes.
     *
     * @return the part paths in order
     */
    public List<Path> writeSplit(Path firstPart, int parts) throws IOException {
        if (parts < 1 || parts > GgufFile.MAX_PARTS) {
            throw new IllegalArgumentException("part count must be 1 to " + GgufFile.MAX_PARTS + ", not " + parts);
        }
        String name = String.valueOf(firstPart.getFileName());
        Matcher m = GgufFile.SPLIT_NAME.matcher(name);
        String prefix = m.matches() ? m.group(1) : name.endsWith(".gguf") ? name.substring(0, name.length() - 5) : name;

        List<List<Tensor>> perPart = new ArrayList<>();
        for (int k = 0; k < parts; k++) {
            perPart.add(new ArrayList<>());
        }
        double total = tensors.stream().mapToDouble(Tensor::bytes).sum();
        double before = 0;
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            double position = total > 0 ? (before + t.bytes() / 2.0) / total : (i + 0.5) / tensors.size();
            perPart.get((int) Math.min(parts - 1, Math.floor(position * parts))).add(t);
            before += t.bytes();
        }

        List<Path> paths = new ArrayList<>();
        for (int k = 0; k < parts; k++) {
            List<Map.Entry<String, GgufMetadata.Entry>> kvs = new ArrayList<>();
            for (Map.Entry<String, GgufMetadata.Entry> e : entries.entrySet()) {
                boolean splitKey = e.getKey().equals(GgufFile.SPLIT_NO) || e.getKey().equals(GgufFile.SPLIT_COUNT)
                        || e.getKey().equals(GgufFile.SPLIT_TENSORS_COUNT);
                if (!splitKey && (k == 0 || e.getKey().equals(GgufParser.ALIGNMENT_KEY))) {
                    kvs.add(e);
                }
            }
            kvs.add(Map.entry(GgufFile.SPLIT_NO, new GgufMetadata.Entry(GgufValueType.UINT16, k)));
            kvs.add(Map.entry(GgufFile.SPLIT_COUNT, new GgufMetadata.Entry(GgufValueType.UINT16, parts)));
            kvs.add(Map.entry(GgufFile.SPLIT_TENSORS_COUNT, new GgufMetadata.Entry(GgufValueType.INT32, tensors.size())));
            Path path = firstPart.resolveSibling(GgufFile.splitName(prefix, k, parts));
            writeFile(path, kvs, perPart.get(k));
            paths.add(path);
        }
        return List.copyOf(paths);
    }

    private static void writeFile(Path out, List<Map.Entry<String, GgufMetadata.Entry>> kvs, List<Tensor> tensors)
            throws IOException {
        long alignment = GgufParser.DEFAULT_ALIGNMENT;
        for (Map.Entry<String, GgufMetadata.Entry> e : kvs) {
            if (e.getKey().equals(GgufParser.ALIGNMENT_KEY)) {
                alignment = (Long) e.getValue().value();
            }
        }

        LeOutput h = new LeOutput();
        h.i32(GgufParser.MAGIC);
        h.i32(3);
        h.i64(tensors.size());
        h.i64(kvs.size());
        for (Map.Entry<String, GgufMetadata.Entry> e : kvs) {
            h.string(e.getKey());
            h.i32(e.getValue().type().id());
            writeValue(h, e.getValue().type(), e.getValue().value());
        }
        long[] offsets = new long[tensors.size()];
        long dataSize = 0;
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            offsets[i] = dataSize;
            dataSize = Math.addExact(dataSize, GgufParser.alignUp(t.bytes(), alignment));
            h.string(t.name());
            h.i32(t.dims().length);
            for (long d : t.dims()) {
                h.i64(d);
            }
            h.i32(t.type().id());
            h.i64(offsets[i]);
        }
        long dataStart = GgufParser.alignUp(h.size(), alignment);

        boolean done = false;
        try (FileChannel ch = FileChannel.open(out, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.READ, StandardOpenOption.WRITE);
             Arena arena = Arena.ofConfined()) {
            ByteBuffer header = ByteBuffer.wrap(h.array(), 0, h.size());
            while (header.hasRemaining()) {
                ch.write(header);
            }
            if (dataSize > 0) {
                // Mapping past the end grows the file; the new bytes read as zeros, which is the padding.
                MemorySegment data = ch.map(FileChannel.MapMode.READ_WRITE, dataStart, dataSize, arena);
                for (int i = 0; i < tensors.size(); i++) {
                    Tensor t = tensors.get(i);
                    t.source().fill(data.asSlice(offsets[i], t.bytes()));
                }
            } else if (dataStart > h.size()) {
                ch.write(ByteBuffer.allocate(1), dataStart - 1);
            }
            done = true;
        } finally {
            if (!done) {
                Files.deleteIfExists(out);
            }
        }
    }

    private static void writeValue(LeOutput h, GgufValueType type, Object value) {
        switch (type) {
            case UINT8, INT8 -> h.u8(((Number) value).intValue());
            case UINT16, INT16 -> h.i16(((Number) value).intValue());
            case UINT32, INT32 -> h.i32(((Number) value).intValue());
            case UINT64, INT64 -> h.i64(((Number) value).longValue());
            case FLOAT32 -> h.i32(Float.floatToRawIntBits(((Number) value).floatValue()));
            case FLOAT64 -> h.i64(Double.doubleToRawLongBits(((Number) value).doubleValue()));
            case BOOL -> h.u8((Boolean) value ? 1 : 0);
            case STRING -> h.string((String) value);
            case ARRAY -> writeArray(h, (GgufArray) value);
        }
    }

    private static void writeArray(LeOutput h, GgufArray a) {
        h.i32(a.elementType().id());
        h.i64(a.length());
        switch (a.elementType()) {
            case STRING -> a.strings().forEach(h::string);
            case ARRAY -> a.objects().forEach(inner -> writeArray(h, (GgufArray) inner));
            default -> h.segment(a.encoded());
        }
    }

    private static Number number(String key, GgufValueType type, Object value) {
        if (!(value instanceof Number n)) {
            throw new IllegalArgumentException(key + ": " + type + " needs a Number, got " + value.getClass().getSimpleName());
        }
        return n;
    }

    private static <T> T cast(String key, GgufValueType type, Object value, Class<T> cls) {
        if (!cls.isInstance(value)) {
            throw new IllegalArgumentException(key + ": " + type + " needs a " + cls.getSimpleName() + ", got "
                    + value.getClass().getSimpleName());
        }
        return cls.cast(value);
    }
}
