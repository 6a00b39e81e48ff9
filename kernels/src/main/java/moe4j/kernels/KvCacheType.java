package moe4j.kernels;

/** Storage type of the attention key/value cache. */
public enum KvCacheType {
    /** Full precision; the most exact and the largest. */
    F32(4.0),
    /** IEEE half precision, as llama.cpp stores it by default. */
    F16(2.0),
    /** Blocks of 32 bytes with one fp16 scale (34 bytes per 32 values). */
    Q8_0(34.0 / 32.0);

    private final double bytesPerValue;

    KvCacheType(double bytesPerValue) {
        this.bytesPerValue = bytesPerValue;
    }

    /** Average storage cost of one cached value. */
    public double bytesPerValue() { return bytesPerValue; }

    /** Parses a user-supplied name such as {@code f16} or {@code Q8_0}. */
    public static KvCacheType parse(String name) {
        for (KvCacheType t : values()) {
            if (t.name().equalsIgnoreCase(name.trim())) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown KV cache type '" + name + "' (expected f32, f16 or q8_0)");
    }
}
