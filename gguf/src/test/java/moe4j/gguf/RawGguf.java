package moe4j.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/** Writes GGUF bytes field by field, so tests can craft files no well-behaved writer would produce. */
final class RawGguf {
    private byte[] buf = new byte[256];
    private int len;

    /** Current length: the offset the next field will have. */
    long pos() { return len; }

    RawGguf header(int version, long nTensors, long nKv) {
        return bytes("GGUF".getBytes(StandardCharsets.US_ASCII)).i32(version).i64(nTensors).i64(nKv);
    }

    RawGguf u8(int v) {
        ensure(1);
        buf[len++] = (byte) v;
        return this;
    }

    RawGguf i32(int v) {
        for (int s = 0; s < 32; s += 8) {
            u8(v >>> s);
        }
        return this;
    }

    RawGguf i64(long v) {
        for (int s = 0; s < 64; s += 8) {
            u8((int) (v >>> s));
        }
        return this;
    }

    RawGguf bytes(byte[] b) {
        for (byte x : b) {
            u8(x);
        }
        return this;
    }

    RawGguf string(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return i64(b.length).bytes(b);
    }

    RawGguf kvU32(String key, int v) {
        return string(key).i32(GgufValueType.UINT32.id()).i32(v);
    }

    RawGguf kvString(String key, String v) {
        return string(key).i32(GgufValueType.STRING.id()).string(v);
    }

    /** A tensor-info record. */
    RawGguf tensor(String name, int typeId, long offset, long... dims) {
        string(name).i32(dims.length);
        for (long d : dims) {
            i64(d);
        }
        return i32(typeId).i64(offset);
    }

    RawGguf padTo(long alignment) {
        while (len % alignment != 0) {
            u8(0);
        }
        return this;
    }

    RawGguf zeros(int n) {
        for (int i = 0; i < n; i++) {
            u8(0);
        }
        return this;
    }

    byte[] toBytes() { return Arrays.copyOf(buf, len); }

    Path write(Path dir, String name) {
        try {
            return Files.write(dir.resolve(name), toBytes());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private void ensure(int n) {
        if (len + n > buf.length) {
            buf = Arrays.copyOf(buf, Math.max(buf.length * 2, len + n));
        }
    }
}
