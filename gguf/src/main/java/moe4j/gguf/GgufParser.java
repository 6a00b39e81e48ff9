package moe4j.gguf;

import static moe4j.gguf.GgufArray.I16;
import static moe4j.gguf.GgufArray.I32;
import static moe4j.gguf.GgufArray.I64;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Parses and validates one GGUF file (one split part) that is already mapped. Every count read from the file
 * is checked against the bytes that remain before anything is allocated for it, so a corrupt or hostile
 * header cannot make the reader allocate more than the file's own size.
 */
final class GgufParser {

    static final int MAGIC = 0x46554747;   // "GGUF" read little-endian
    static final long DEFAULT_ALIGNMENT = 32;
    static final String ALIGNMENT_KEY = "general.alignment";
    /** llama.cpp's GGML_MAX_NAME includes the NUL terminator. */
    static final int MAX_TENSOR_NAME_BYTES = 63;
    static final int MAX_DIMS = 4;

    private static final long MAX_STRING_BYTES = 1L << 30;
    private static final long MAX_ARRAY_LENGTH = 1L << 30;
    /** Arrays of arrays are legal in the spec; the limit keeps a crafted file from exhausting the stack. */
    private static final int MAX_ARRAY_DEPTH = 16;
    /** Smallest KV record: 1-byte key with its length, type id, 1-byte value. */
    private static final long MIN_KV_BYTES = 8 + 1 + 4 + 1;
    /** Smallest tensor-info record: 1-byte name with its length, n_dims = 0, type, offset. */
    private static final long MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 4 + 8;

    /** What one file contributes. {@code keyOffsets} and {@code tensorInfoOffsets} locate records for later errors. */
    record Part(Path path, long size, int version, long alignment, long dataStart, GgufMetadata metadata,
                Map<String, Long> keyOffsets, List<GgufTensor> tensors, long[] tensorInfoOffsets) {}

    private final Path file;
    private final MemorySegment seg;
    private final long size;
    private long pos;

    private GgufParser(Path file, MemorySegment seg) {
        this.file = file;
        this.seg = seg.asReadOnly();
        this.size = seg.byteSize();
    }

    static Part parse(Path file, MemorySegment mapped) throws GgufFormatException {
        return new GgufParser(file, mapped).parse();
    }

    private Part parse() throws GgufFormatException {
        need(4, "the magic number");
        int magic = seg.get(I32, 0);
        if (magic != MAGIC) {
            fail(0, String.format("bad magic 0x%08X: not a GGUF file (expected the bytes \"GGUF\")", magic));
        }
        pos = 4;
        int version = readI32("the version");
        if (version != 0 && (version & 0xFFFF) == 0) {
            fail(4, String.format("version field reads 0x%08X: this is a byte-swapped (big-endian) GGUF file; only "
                    + "little-endian files are supported", version));
        }
        if (version == 1) {
            fail(4, "GGUF version 1 is no longer supported (supported: 2 and 3)");
        }
        if (version != 2 && version != 3) {
            fail(4, "unsupported GGUF version " + Integer.toUnsignedString(version) + " (supported: 2 and 3)");
        }
        long nTensors = readI64("the tensor count");
        long nKv = readI64("the metadata count");
        if (nTensors < 0) {
            fail(8, "negative tensor count " + nTensors);
        }
        if (nKv < 0) {
            fail(16, "negative metadata count " + nKv);
        }
        long remaining = size - pos;
        if (nKv > remaining / MIN_KV_BYTES) {
            fail(16, "metadata count " + nKv + " is impossible: that many records need more than the " + remaining
                    + " bytes that remain");
        }
        if (nTensors > (remaining - nKv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES) {
            fail(8, "tensor count " + nTensors + " is impossible: that many tensor-info records (plus " + nKv
                    + " metadata records) need more than the " + remaining + " bytes that remain");
        }

        Map<String, GgufMetadata.Entry> entries = new LinkedHashMap<>();
        Map<String, Long> keyOffsets = new HashMap<>();
        long alignment = DEFAULT_ALIGNMENT;
        for (long i = 0; i < nKv; i++) {
            long recordPos = pos;
            String key = readString("the key of metadata record " + i);
            if (key.isEmpty()) {
                fail(recordPos, "metadata record " + i + " has an empty key");
            }
            if (entries.containsKey(key)) {
                fail(recordPos, "duplicate metadata key '" + key + "'");
            }
            GgufValueType type = readValueType("metadata key '" + key + "'");
            long valuePos = pos;
            Object value = type == GgufValueType.ARRAY ? readArray(key, 1) : readScalar(type, key);
            if (key.equals(ALIGNMENT_KEY)) {
                if (type != GgufValueType.UINT32) {
                    fail(recordPos, ALIGNMENT_KEY + " must be UINT32, found " + type);
                }
                long a = (Long) value;
                if (a == 0 || (a & (a - 1)) != 0) {
                    fail(valuePos, ALIGNMENT_KEY + " is " + a + ", which is not a non-zero power of two");
                }
                alignment = a;
            }
            entries.put(key, new GgufMetadata.Entry(type, value));
            keyOffsets.put(key, recordPos);
        }

        int n = (int) nTensors;    // bounded by the size check above: at most size / 25
        String[] names = new String[n];
        GgmlType[] types = new GgmlType[n];
        long[][] shapes = new long[n][];
        int[] nDimsOf = new int[n];
        long[] offsets = new long[n];
        long[] byteSizes = new long[n];
        long[] infoPos = new long[n];
        Map<String, Integer> seen = new HashMap<>();
        for (int i = 0; i < n; i++) {
            infoPos[i] = pos;
            String name = readString("the name of tensor " + i);
            if (name.isEmpty()) {
                fail(infoPos[i], "tensor " + i + " has an empty name");
            }
            int nameBytes = name.getBytes(StandardCharsets.UTF_8).length;
            if (nameBytes > MAX_TENSOR_NAME_BYTES) {
                fail(infoPos[i], "tensor name '" + abbreviate(name) + "' is " + nameBytes + " bytes long; at most "
                        + MAX_TENSOR_NAME_BYTES + " are allowed");
            }
            if (seen.putIfAbsent(name, i) != null) {
                fail(infoPos[i], "duplicate tensor name '" + name + "'");
            }
            long nDimsPos = pos;
            int nDims = readI32("the dimension count of tensor '" + name + "'");
            if (nDims < 0 || nDims > MAX_DIMS) {
                fail(nDimsPos, "tensor '" + name + "' has " + Integer.toUnsignedString(nDims) + " dimensions; at most "
                        + MAX_DIMS + " are allowed");
            }
            long[] shape = {1, 1, 1, 1};
            for (int d = 0; d < nDims; d++) {
                long dimPos = pos;
                shape[d] = readI64("dimension " + d + " of tensor '" + name + "'");
                if (shape[d] < 0) {
                    fail(dimPos, "tensor '" + name + "' dimension " + d + " is negative (" + shape[d] + ")");
                }
            }
            long typePos = pos;
            int typeId = readI32("the type of tensor '" + name + "'");
            GgmlType type = GgmlType.byIdOrNull(typeId);
            if (type == null) {
                fail(typePos, "tensor '" + name + "' has unknown ggml type id " + typeId);
            }
            if (!type.isValid()) {
                fail(typePos, "tensor '" + name + "' has type " + type + " (id " + typeId
                        + "), which was removed from ggml");
            }
            if (shape[0] % type.blockSize() != 0) {
                fail(nDimsPos + 4, "tensor '" + name + "' row length " + shape[0] + " is not a multiple of the "
                        + type + " block size " + type.blockSize());
            }
            long bytes = 0;
            try {
                Math.multiplyExact(Math.multiplyExact(shape[0], shape[1]), Math.multiplyExact(shape[2], shape[3]));
                long rowBytes = Math.multiplyExact(shape[0] / type.blockSize(), (long) type.blockBytes());
                bytes = Math.multiplyExact(rowBytes, Math.multiplyExact(shape[1], Math.multiplyExact(shape[2], shape[3])));
            } catch (ArithmeticException overflow) {
                fail(nDimsPos + 4, "tensor '" + name + "' dimensions " + Arrays.toString(Arrays.copyOf(shape, nDims))
                        + " overflow a 64-bit element count or byte size");
            }
            long offsetPos = pos;
            long offset = readI64("the data offset of tensor '" + name + "'");
            if (offset < 0) {
                fail(offsetPos, "tensor '" + name + "' data offset " + Long.toUnsignedString(offset) + " is out of range");
            }
            if (offset % alignment != 0) {
                fail(offsetPos, "tensor '" + name + "' data offset " + offset + " is not a multiple of the alignment "
                        + alignment);
            }
            names[i] = name;
            types[i] = type;
            shapes[i] = shape;
            nDimsOf[i] = nDims;
            offsets[i] = offset;
            byteSizes[i] = bytes;
        }

        long dataStart = alignUp(pos, alignment);
        long[] starts = new long[n];
        for (int i = 0; i < n; i++) {
            long end = -1;
            try {
                starts[i] = Math.addExact(dataStart, offsets[i]);
                end = Math.addExact(starts[i], byteSizes[i]);
            } catch (ArithmeticException overflow) {
                // reported below as past the end
            }
            if (end < 0 || end > size) {
                fail(infoPos[i], "tensor '" + names[i] + "' data (" + byteSizes[i] + " bytes at data offset " + offsets[i]
                        + ", absolute " + (end < 0 ? "beyond 2^63" : String.valueOf(starts[i]))
                        + ") extends past the end of the file (" + size + " bytes)");
            }
        }
        checkNoOverlap(n, names, starts, byteSizes, infoPos);

        List<GgufTensor> tensors = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            tensors.add(new GgufTensor(names[i], types[i], shapes[i], nDimsOf[i], file, starts[i],
                    seg.asSlice(starts[i], byteSizes[i])));
        }
        return new Part(file, size, version, alignment, dataStart,
                new GgufMetadata(entries, String.valueOf(file.getFileName())), keyOffsets, List.copyOf(tensors), infoPos);
    }

    private void checkNoOverlap(int n, String[] names, long[] starts, long[] bytes, long[] infoPos)
            throws GgufFormatException {
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingLong(i -> starts[i]));
        int prev = -1;
        for (int k = 0; k < n; k++) {
            int i = order[k];
            if (bytes[i] == 0) {
                continue;
            }
            if (prev >= 0 && starts[prev] + bytes[prev] > starts[i]) {
                int later = Math.max(prev, i);
                int earlier = Math.min(prev, i);
                fail(infoPos[later], "tensor '" + names[later] + "' data " + range(starts[later], bytes[later])
                        + " overlaps tensor '" + names[earlier] + "' data " + range(starts[earlier], bytes[earlier]));
            }
            prev = i;
        }
    }

    private Object readScalar(GgufValueType type, String key) throws GgufFormatException {
        String what = "the value of '" + key + "'";
        return switch (type) {
            case UINT8 -> Byte.toUnsignedInt(readI8(what));
            case INT8 -> (int) readI8(what);
            case UINT16 -> Short.toUnsignedInt(readI16(what));
            case INT16 -> (int) readI16(what);
            case UINT32 -> Integer.toUnsignedLong(readI32(what));
            case INT32 -> readI32(what);
            case FLOAT32 -> Float.intBitsToFloat(readI32(what));
            case BOOL -> readI8(what) != 0;
            case STRING -> readString(what);
            case UINT64, INT64 -> readI64(what);
            case FLOAT64 -> Double.longBitsToDouble(readI64(what));
            case ARRAY -> throw new IllegalStateException("arrays are read by readArray");
        };
    }

    private GgufArray readArray(String key, int depth) throws GgufFormatException {
        GgufValueType elementType = readValueType("the elements of array '" + key + "'");
        long countPos = pos;
        long count = readI64("the length of array '" + key + "'");
        if (count < 0 || count > MAX_ARRAY_LENGTH) {
            fail(countPos, "array '" + key + "' length " + Long.toUnsignedString(count) + " exceeds the limit of "
                    + MAX_ARRAY_LENGTH);
        }
        long minBytes = count * elementType.minEncodedSize();
        if (minBytes > size - pos) {
            fail(countPos, "truncated: array '" + key + "' declares " + count + " " + elementType
                    + " elements, which need at least " + minBytes + " bytes, but only " + (size - pos) + " remain");
        }
        int length = (int) count;
        switch (elementType) {
            case STRING -> {
                String[] values = new String[length];
                String what = "an element of array '" + key + "'";
                for (int i = 0; i < length; i++) {
                    values[i] = readString(what);
                }
                return GgufArray.trustedStrings(values);
            }
            case ARRAY -> {
                if (depth >= MAX_ARRAY_DEPTH) {
                    fail(countPos - 4, "array '" + key + "' nests arrays more than " + MAX_ARRAY_DEPTH + " levels deep");
                }
                GgufArray[] values = new GgufArray[length];
                for (int i = 0; i < length; i++) {
                    values[i] = readArray(key, depth + 1);
                }
                return GgufArray.trustedArrays(values);
            }
            default -> {
                GgufArray a = GgufArray.view(elementType, length, seg.asSlice(pos, minBytes));
                pos += minBytes;
                return a;
            }
        }
    }

    private GgufValueType readValueType(String what) throws GgufFormatException {
        long at = pos;
        int id = readI32("the value type of " + what);
        GgufValueType t = GgufValueType.byIdOrNull(id);
        if (t == null) {
            fail(at, "unknown value type id " + id + " for " + what);
        }
        return t;
    }

    private String readString(String what) throws GgufFormatException {
        long at = pos;
        long len = readI64("the length of " + what);
        if (len < 0 || len > MAX_STRING_BYTES) {
            fail(at, "string length " + Long.toUnsignedString(len) + " of " + what + " exceeds the limit of "
                    + MAX_STRING_BYTES + " bytes");
        }
        if (len > size - pos) {
            fail(at, "truncated: " + what + " is a string of " + len + " bytes but only " + (size - pos) + " remain");
        }
        byte[] bytes = new byte[(int) len];
        MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, pos, bytes, 0, bytes.length);
        pos += len;
        return new String(bytes, StandardCharsets.UTF_8);
    }

    private byte readI8(String what) throws GgufFormatException {
        need(1, what);
        return seg.get(ValueLayout.JAVA_BYTE, pos++);
    }

    private short readI16(String what) throws GgufFormatException {
        need(2, what);
        short v = seg.get(I16, pos);
        pos += 2;
        return v;
    }

    private int readI32(String what) throws GgufFormatException {
        need(4, what);
        int v = seg.get(I32, pos);
        pos += 4;
        return v;
    }

    private long readI64(String what) throws GgufFormatException {
        need(8, what);
        long v = seg.get(I64, pos);
        pos += 8;
        return v;
    }

    private void need(long bytes, String what) throws GgufFormatException {
        if (bytes > size - pos) {
            fail(pos, "truncated: " + what + " needs " + bytes + " bytes but only " + (size - pos) + " remain (file is "
                    + size + " bytes)");
        }
    }

    private void fail(long offset, String problem) throws GgufFormatException {
        throw new GgufFormatException(file, offset, problem);
    }

    static long alignUp(long x, long alignment) {
        return Math.addExact(x, alignment - 1) & -alignment;
    }

    private static String range(long start, long bytes) {
        return "[" + start + ", " + (start + bytes) + ")";
    }

    private static String abbreviate(String s) {
        return s.length() <= 80 ? s : s.substring(0, 80) + "...";
    }
}
