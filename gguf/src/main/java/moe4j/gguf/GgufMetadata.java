package moe4j.gguf;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.Set;

/**
 * The key/value metadata of a GGUF file, immutable and in file order.
 *
 * <p>{@link #get(String)} returns: UINT8, INT8, UINT16, INT16, INT32 as {@link Integer} (unsigned values
 * zero-extended); UINT32, INT64 and UINT64 as {@link Long} (UINT64 as raw two's-complement bits); FLOAT32 as
 * {@link Float}; FLOAT64 as {@link Double}; BOOL as {@link Boolean}; STRING as {@link String}; ARRAY as
 * {@link GgufArray}. Numeric arrays read from a file are views of the mapping, readable while the file is open.
 *
 * <p>The typed getters widen leniently (any integer type for {@link #getInt}, FLOAT32 or FLOAT64 for
 * {@link #getFloat}); an absent key, a wrong type or a value that does not fit throws
 * {@link GgufMetadataException} naming the key, the expected and actual type, and the file.
 */
public final class GgufMetadata {

    record Entry(GgufValueType type, Object value) {}

    private final Map<String, Entry> entries;
    private final String source;

    /** @param source file name used in error messages */
    GgufMetadata(Map<String, Entry> entries, String source) {
        this.entries = Collections.unmodifiableMap(new LinkedHashMap<>(entries));
        this.source = source;
    }

    public Set<String> keys() { return entries.keySet(); }

    public boolean contains(String key) { return entries.containsKey(key); }

    public int size() { return entries.size(); }

    /** Where this metadata came from (a file name), as used in error messages. */
    public String source() { return source; }

    /** The stored type; ARRAY for arrays (see {@link #arrayElementType}). */
    public GgufValueType type(String key) { return require(key, "a value").type(); }

    /** The raw value, boxed as described in the class comment. */
    public Object get(String key) { return require(key, "a value").value(); }

    public Optional<Object> find(String key) {
        Entry e = entries.get(key);
        return e == null ? Optional.empty() : Optional.of(e.value());
    }

    // ---- scalars

    public String getString(String key) {
        Entry e = require(key, "a string");
        if (e.type() != GgufValueType.STRING) {
            throw wrongType(key, "a string", e);
        }
        return (String) e.value();
    }

    /** Any integer type whose value fits in an int. */
    public int getInt(String key) {
        Entry e = require(key, "an integer");
        long v = integerValue(key, e, "an integer");
        if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE) {
            throw new GgufMetadataException(key, key + ": expected an integer that fits in int, found " + e.type()
                    + " value " + describe(e) + " (in " + source + ")");
        }
        return (int) v;
    }

    /** Any integer type; a UINT64 of 2^63 or more does not fit and throws. */
    public long getLong(String key) {
        Entry e = require(key, "an integer");
        return integerValue(key, e, "an integer");
    }

    /** FLOAT32, or FLOAT64 narrowed. */
    public float getFloat(String key) {
        return (float) floatValue(key, require(key, "a float"));
    }

    /** FLOAT32 or FLOAT64. */
    public double getDouble(String key) {
        return floatValue(key, require(key, "a float"));
    }

    public boolean getBoolean(String key) {
        Entry e = require(key, "a boolean");
        if (e.type() != GgufValueType.BOOL) {
            throw wrongType(key, "a boolean", e);
        }
        return (Boolean) e.value();
    }

    // ---- optional scalars: absent gives empty, a present value of the wrong type still throws

    public Optional<String> findString(String key) {
        return contains(key) ? Optional.of(getString(key)) : Optional.empty();
    }

    public OptionalInt findInt(String key) {
        return contains(key) ? OptionalInt.of(getInt(key)) : OptionalInt.empty();
    }

    public OptionalLong findLong(String key) {
        return contains(key) ? OptionalLong.of(getLong(key)) : OptionalLong.empty();
    }

    public Optional<Float> findFloat(String key) {
        return contains(key) ? Optional.of(getFloat(key)) : Optional.empty();
    }

    public Optional<Double> findDouble(String key) {
        return contains(key) ? Optional.of(getDouble(key)) : Optional.empty();
    }

    public Optional<Boolean> findBoolean(String key) {
        return contains(key) ? Optional.of(getBoolean(key)) : Optional.empty();
    }

    public Optional<GgufArray> findArray(String key) {
        return contains(key) ? Optional.of(getArray(key)) : Optional.empty();
    }

    public String getString(String key, String dflt) { return contains(key) ? getString(key) : dflt; }

    public int getInt(String key, int dflt) { return contains(key) ? getInt(key) : dflt; }

    public long getLong(String key, long dflt) { return contains(key) ? getLong(key) : dflt; }

    public float getFloat(String key, float dflt) { return contains(key) ? getFloat(key) : dflt; }

    public double getDouble(String key, double dflt) { return contains(key) ? getDouble(key) : dflt; }

    public boolean getBoolean(String key, boolean dflt) { return contains(key) ? getBoolean(key) : dflt; }

    // ---- arrays

    public GgufArray getArray(String key) {
        Entry e = require(key, "an array");
        if (e.type() != GgufValueType.ARRAY) {
            throw wrongType(key, "an array", e);
        }
        return (GgufArray) e.value();
    }

    public int arrayLength(String key) { return getArray(key).length(); }

    public GgufValueType arrayElementType(String key) { return getArray(key).elementType(); }

    /** An ARRAY of STRING (unmodifiable, no copy). */
    public List<String> getStringList(String key) {
        GgufArray a = arrayOf(key, "an array of strings");
        if (a.elementType() != GgufValueType.STRING) {
            throw wrongArray(key, "an array of strings", a);
        }
        return a.strings();
    }

    /** An ARRAY of any integer type whose every element fits in an int. */
    public int[] getIntArray(String key) {
        GgufArray a = arrayOf(key, "an array of integers");
        if (!a.elementType().isInteger()) {
            throw wrongArray(key, "an array of integers", a);
        }
        int[] out = new int[a.length()];
        for (int i = 0; i < out.length; i++) {
            long v = a.getLong(i);
            if (v < Integer.MIN_VALUE || v > Integer.MAX_VALUE || (v < 0 && a.elementType() == GgufValueType.UINT64)) {
                throw new GgufMetadataException(key, key + ": expected an array of integers that fit in int, but element "
                        + i + " of the " + a.elementType() + " array is " + unsignedIfNeeded(a.elementType(), v)
                        + " (in " + source + ")");
            }
            out[i] = (int) v;
        }
        return out;
    }

    /** An ARRAY of any integer type; UINT64 elements of 2^63 and more throw. */
    public long[] getLongArray(String key) {
        GgufArray a = arrayOf(key, "an array of integers");
        if (!a.elementType().isInteger()) {
            throw wrongArray(key, "an array of integers", a);
        }
        long[] out = new long[a.length()];
        for (int i = 0; i < out.length; i++) {
            long v = a.getLong(i);
            if (v < 0 && a.elementType() == GgufValueType.UINT64) {
                throw new GgufMetadataException(key, key + ": expected an array of integers that fit in long, but element "
                        + i + " is " + Long.toUnsignedString(v) + " (in " + source + ")");
            }
            out[i] = v;
        }
        return out;
    }

    /** An ARRAY of FLOAT32 (or FLOAT64 narrowed). */
    public float[] getFloatArray(String key) {
        GgufArray a = floatArray(key);
        float[] out = new float[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) a.getDouble(i);
        }
        return out;
    }

    /** An ARRAY of FLOAT32 or FLOAT64. */
    public double[] getDoubleArray(String key) {
        GgufArray a = floatArray(key);
        double[] out = new double[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.getDouble(i);
        }
        return out;
    }

    @Override
    public String toString() {
        return "GgufMetadata[" + size() + " keys from " + source + "]";
    }

    // ---- helpers

    private GgufArray floatArray(String key) {
        GgufArray a = arrayOf(key, "an array of floats");
        if (!a.elementType().isFloat()) {
            throw wrongArray(key, "an array of floats", a);
        }
        return a;
    }

    private GgufArray arrayOf(String key, String expected) {
        Entry e = require(key, expected);
        if (e.type() != GgufValueType.ARRAY) {
            throw wrongType(key, expected, e);
        }
        return (GgufArray) e.value();
    }

    private Entry require(String key, String expected) {
        Entry e = entries.get(key);
        if (e == null) {
            throw new GgufMetadataException(key, key + ": expected " + expected + ", but the key is missing (in " + source + ")");
        }
        return e;
    }

    private long integerValue(String key, Entry e, String expected) {
        if (!e.type().isInteger()) {
            throw wrongType(key, expected, e);
        }
        long v = ((Number) e.value()).longValue();
        if (e.type() == GgufValueType.UINT64 && v < 0) {
            throw new GgufMetadataException(key, key + ": expected an integer that fits in long, found UINT64 value "
                    + Long.toUnsignedString(v) + " (in " + source + ")");
        }
        return v;
    }

    private double floatValue(String key, Entry e) {
        if (!e.type().isFloat()) {
            throw wrongType(key, "a float", e);
        }
        return ((Number) e.value()).doubleValue();
    }

    private GgufMetadataException wrongType(String key, String expected, Entry e) {
        String found = e.type() == GgufValueType.ARRAY ? "ARRAY of " + ((GgufArray) e.value()).elementType() : e.type().name();
        return new GgufMetadataException(key, key + ": expected " + expected + ", found " + found + " (in " + source + ")");
    }

    private GgufMetadataException wrongArray(String key, String expected, GgufArray a) {
        return new GgufMetadataException(key, key + ": expected " + expected + ", found ARRAY of " + a.elementType()
                + " (in " + source + ")");
    }

    private static String describe(Entry e) {
        return e.type().isInteger() ? unsignedIfNeeded(e.type(), ((Number) e.value()).longValue()) : String.valueOf(e.value());
    }

    private static String unsignedIfNeeded(GgufValueType t, long v) {
        return t == GgufValueType.UINT64 ? Long.toUnsignedString(v) : Long.toString(v);
    }
}
