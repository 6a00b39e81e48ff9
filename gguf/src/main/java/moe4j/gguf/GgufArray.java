package moe4j.gguf;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * A GGUF metadata array. Elements of fixed-size types (numbers, bools) stay in their little-endian encoding:
 * for arrays read from a file that is a view of the mapped file, valid only while the {@link GgufFile} is
 * open, so a 150k-entry score table costs no heap until asked for. STRING and nested ARRAY elements are
 * decoded eagerly.
 *
 * <p>Boxed element values follow {@link GgufMetadata#get(String)}: UINT8, INT8, UINT16, INT16 and INT32 as
 * {@link Integer}; UINT32, INT64 and UINT64 (raw two's-complement bits) as {@link Long}; FLOAT32 as
 * {@link Float}; FLOAT64 as {@link Double}; BOOL as {@link Boolean}; STRING as {@link String}; ARRAY as
 * {@link GgufArray}.
 */
public final class GgufArray {
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final GgufValueType elementType;
    private final int length;
    private final MemorySegment fixed;   // fixed-size element types
    private final List<?> objects;       // STRING (String) or ARRAY (GgufArray)

    private GgufArray(GgufValueType elementType, int length, MemorySegment fixed, List<?> objects) {
        this.elementType = elementType;
        this.length = length;
        this.fixed = fixed;
        this.objects = objects;
    }

    /** Wraps little-endian encoded elements without copying; the caller guarantees the size matches. */
    static GgufArray view(GgufValueType elementType, int length, MemorySegment encoded) {
        return new GgufArray(elementType, length, encoded, null);
    }

    static GgufArray trustedStrings(String[] values) {
        return new GgufArray(GgufValueType.STRING, values.length, null, Collections.unmodifiableList(Arrays.asList(values)));
    }

    static GgufArray trustedArrays(GgufArray[] values) {
        return new GgufArray(GgufValueType.ARRAY, values.length, null, Collections.unmodifiableList(Arrays.asList(values)));
    }

    public static GgufArray ofStrings(List<String> values) {
        return trustedStrings(values.stream().map(Objects::requireNonNull).toArray(String[]::new));
    }

    /** An array of arrays (allowed by the GGUF spec, rejected by llama.cpp). */
    public static GgufArray ofArrays(List<GgufArray> values) {
        return trustedArrays(values.stream().map(Objects::requireNonNull).toArray(GgufArray[]::new));
    }

    public static GgufArray ofInt32(int... values) {
        MemorySegment s = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
        for (int i = 0; i < values.length; i++) {
            s.setAtIndex(I32, i, values[i]);
        }
        return view(GgufValueType.INT32, values.length, s);
    }

    public static GgufArray ofFloat32(float... values) {
        MemorySegment s = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
        for (int i = 0; i < values.length; i++) {
            s.setAtIndex(F32, i, values[i]);
        }
        return view(GgufValueType.FLOAT32, values.length, s);
    }

    public static GgufArray ofBooleans(boolean... values) {
        byte[] b = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            b[i] = (byte) (values[i] ? 1 : 0);
        }
        return view(GgufValueType.BOOL, values.length, MemorySegment.ofArray(b));
    }

    /**
     * An array of any integer element type. UINT64 takes raw bits (any long); the other types reject values
     * outside their range.
     */
    public static GgufArray ofIntegers(GgufValueType elementType, long... values) {
        if (!elementType.isInteger()) {
            throw new IllegalArgumentException(elementType + " is not an integer type");
        }
        int size = elementType.fixedSize();
        MemorySegment s = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, size)]);
        for (int i = 0; i < values.length; i++) {
            long v = checkRange(elementType, values[i]);
            switch (size) {
                case 1 -> s.set(ValueLayout.JAVA_BYTE, i, (byte) v);
                case 2 -> s.setAtIndex(I16, i, (short) v);
                case 4 -> s.setAtIndex(I32, i, (int) v);
                default -> s.setAtIndex(I64, i, v);
            }
        }
        return view(elementType, values.length, s);
    }

    /** An array of FLOAT32 (narrowed) or FLOAT64 elements. */
    public static GgufArray ofFloats(GgufValueType elementType, double... values) {
        MemorySegment s;
        switch (elementType) {
            case FLOAT32 -> {
                s = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
                for (int i = 0; i < values.length; i++) {
                    s.setAtIndex(F32, i, (float) values[i]);
                }
            }
            case FLOAT64 -> {
                s = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 8)]);
                for (int i = 0; i < values.length; i++) {
                    s.setAtIndex(F64, i, values[i]);
                }
            }
            default -> throw new IllegalArgumentException(elementType + " is not a float type");
        }
        return view(elementType, values.length, s);
    }

    /** Returns {@code v} when it is representable in integer type {@code t}, else throws. */
    static long checkRange(GgufValueType t, long v) {
        boolean ok = switch (t) {
            case UINT8 -> v >= 0 && v <= 0xFF;
            case INT8 -> v >= Byte.MIN_VALUE && v <= Byte.MAX_VALUE;
            case UINT16 -> v >= 0 && v <= 0xFFFF;
            case INT16 -> v >= Short.MIN_VALUE && v <= Short.MAX_VALUE;
            case UINT32 -> v >= 0 && v <= 0xFFFF_FFFFL;
            case INT32 -> v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE;
            case UINT64, INT64 -> true;
            default -> throw new IllegalArgumentException(t + " is not an integer type");
        };
        if (!ok) {
            throw new IllegalArgumentException(v + " does not fit in " + t);
        }
        return v;
    }

    public GgufValueType elementType() { return elementType; }

    public int length() { return length; }

    /**
     * Element {@code i} of an integer array, unsigned types zero-extended; UINT64 values of 2^63 and more come
     * back negative (raw bits).
     */
    public long getLong(int i) {
        Objects.checkIndex(i, length);
        return switch (elementType) {
            case UINT8 -> Byte.toUnsignedLong(fixed.get(ValueLayout.JAVA_BYTE, i));
            case INT8 -> fixed.get(ValueLayout.JAVA_BYTE, i);
            case UINT16 -> Short.toUnsignedLong(fixed.getAtIndex(I16, i));
            case INT16 -> fixed.getAtIndex(I16, i);
            case UINT32 -> Integer.toUnsignedLong(fixed.getAtIndex(I32, i));
            case INT32 -> fixed.getAtIndex(I32, i);
            case UINT64, INT64 -> fixed.getAtIndex(I64, i);
            default -> throw wrongType("an integer");
        };
    }

    /** Element {@code i} of a FLOAT32 or FLOAT64 array. */
    public double getDouble(int i) {
        Objects.checkIndex(i, length);
        return switch (elementType) {
            case FLOAT32 -> fixed.getAtIndex(F32, i);
            case FLOAT64 -> fixed.getAtIndex(F64, i);
            default -> throw wrongType("a float");
        };
    }

    /** Element {@code i} of a BOOL array; any non-zero byte is true, as in llama.cpp. */
    public boolean getBoolean(int i) {
        Objects.checkIndex(i, length);
        if (elementType != GgufValueType.BOOL) {
            throw wrongType("a boolean");
        }
        return fixed.get(ValueLayout.JAVA_BYTE, i) != 0;
    }

    public String getString(int i) {
        if (elementType != GgufValueType.STRING) {
            throw wrongType("a string");
        }
        return (String) objects.get(i);
    }

    public GgufArray getArray(int i) {
        if (elementType != GgufValueType.ARRAY) {
            throw wrongType("an array");
        }
        return (GgufArray) objects.get(i);
    }

    /** Element {@code i} boxed (see the class comment for the Java type of each element type). */
    public Object get(int i) {
        return switch (elementType) {
            case UINT8, INT8, UINT16, INT16, INT32 -> (int) getLong(i);
            case UINT32, UINT64, INT64 -> getLong(i);
            case FLOAT32 -> (float) getDouble(i);
            case FLOAT64 -> getDouble(i);
            case BOOL -> getBoolean(i);
            case STRING, ARRAY -> objects.get(i);
        };
    }

    /** The elements of a STRING array (unmodifiable, no copy). */
    public List<String> strings() {
        if (elementType != GgufValueType.STRING) {
            throw wrongType("a string");
        }
        @SuppressWarnings("unchecked")
        List<String> s = (List<String>) objects;
        return s;
    }

    /** The little-endian encoding of a fixed-size-element array (read-only view). */
    MemorySegment encoded() {
        return fixed.asReadOnly();
    }

    List<?> objects() { return objects; }

    private IllegalStateException wrongType(String expected) {
        return new IllegalStateException("array elements are " + elementType + ", not " + expected);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof GgufArray a) || a.elementType != elementType || a.length != length) {
            return false;
        }
        return fixed != null ? fixed.mismatch(a.fixed) == -1 : objects.equals(a.objects);
    }

    @Override
    public int hashCode() {
        int h = elementType.hashCode() * 31 + length;
        if (fixed == null) {
            return h * 31 + objects.hashCode();
        }
        for (long i = 0, n = Math.min(fixed.byteSize(), 64); i < n; i++) {
            h = h * 31 + fixed.get(ValueLayout.JAVA_BYTE, i);
        }
        return h;
    }

    @Override
    public String toString() {
        return "ARRAY of " + elementType + " x " + length;
    }
}
