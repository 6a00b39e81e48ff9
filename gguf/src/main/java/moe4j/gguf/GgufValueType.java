package moe4j.gguf;

/** The type ids a GGUF metadata value (or array element) may carry, with their on-disk sizes. */
public enum GgufValueType {
    UINT8(0, 1),
    INT8(1, 1),
    UINT16(2, 2),
    INT16(3, 2),
    UINT32(4, 4),
    INT32(5, 4),
    FLOAT32(6, 4),
    BOOL(7, 1),
    STRING(8, 0),
    ARRAY(9, 0),
    UINT64(10, 8),
    INT64(11, 8),
    FLOAT64(12, 8);

    private static final GgufValueType[] BY_ID = values();

    private final int id;
    private final int fixedSize;

    GgufValueType(int id, int fixedSize) {
        this.id = id;
        this.fixedSize = fixedSize;
    }

    /** The id stored in the file. */
    public int id() { return id; }

    /** Bytes one value occupies on disk, or 0 for the variable-length STRING and ARRAY. */
    public int fixedSize() { return fixedSize; }

    /** Smallest possible encoding of one value: what a reader may demand per declared element before allocating. */
    public int minEncodedSize() {
        return switch (this) {
            case STRING -> 8;       // uint64 length, possibly empty
            case ARRAY -> 4 + 8;    // element type + count, possibly empty
            default -> fixedSize;
        };
    }

    public boolean isInteger() {
        return switch (this) {
            case UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64 -> true;
            default -> false;
        };
    }

    public boolean isFloat() { return this == FLOAT32 || this == FLOAT64; }

    /** @throws IllegalArgumentException for an id outside the table */
    public static GgufValueType byId(int id) {
        GgufValueType t = byIdOrNull(id);
        if (t == null) {
            throw new IllegalArgumentException("unknown GGUF value type id " + id);
        }
        return t;
    }

    public static GgufValueType byIdOrNull(int id) {
        return id >= 0 && id < BY_ID.length ? BY_ID[id] : null;
    }
}
