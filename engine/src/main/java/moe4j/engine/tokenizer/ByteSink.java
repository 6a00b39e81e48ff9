package moe4j.engine.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** Growable byte buffer for decoded token pieces. */
final class ByteSink {
    private byte[] data = new byte[64];
    private int size;

    int size() {
        return size;
    }

    void add(int b) {
        ensure(size + 1);
        data[size++] = (byte) b;
    }

    void addUtf8(String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        ensure(size + bytes.length);
        System.arraycopy(bytes, 0, data, size, bytes.length);
        size += bytes.length;
    }

    byte at(int i) {
        return data[i];
    }

    /** The first {@code length} bytes as UTF-8 text (malformed input becomes U+FFFD). */
    String toString(int length) {
        return new String(data, 0, length, StandardCharsets.UTF_8);
    }

    /** Drops the first {@code length} bytes. */
    void discard(int length) {
        System.arraycopy(data, length, data, 0, size - length);
        size -= length;
    }

    private void ensure(int capacity) {
        if (capacity > data.length) {
            data = Arrays.copyOf(data, Math.max(capacity, data.length * 2));
        }
    }
}
