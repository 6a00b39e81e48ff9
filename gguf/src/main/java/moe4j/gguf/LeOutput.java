package moe4j.gguf;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** A growable little-endian byte buffer for GGUF headers (metadata and tensor infos, never tensor data). */
final class LeOutput {
    private byte[] buf = new byte[4096];
    private int len;

    int size() { return len; }

    byte[] array() { return buf; }

    void u8(int v) {
        ensure(1);
        buf[len++] = (byte) v;
    }

    void i16(int v) {
        ensure(2);
        buf[len++] = (byte) v;
        buf[len++] = (byte) (v >>> 8);
    }

    void i32(int v) {
        ensure(4);
        for (int s = 0; s < 32; s += 8) {
            buf[len++] = (byte) (v >>> s);
        }
    }

    void i64(long v) {
        ensure(8);
        for (int s = 0; s < 64; s += 8) {
            buf[len++] = (byte) (v >>> s);
        }
    }

    void string(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        i64(b.length);
        ensure(b.length);
        System.arraycopy(b, 0, buf, len, b.length);
        len += b.length;
    }

    void segment(MemorySegment s) {
        if (s.byteSize() > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException("metadata value of " + s.byteSize() + " bytes is too large");
        }
        int n = (int) s.byteSize();
        ensure(n);
        MemorySegment.copy(s, ValueLayout.JAVA_BYTE, 0, buf, len, n);
        len += n;
    }

    private void ensure(int n) {
        if (n > buf.length - len) {
            long want = Math.max(2L * buf.length, (long) len + n);
            if (want > Integer.MAX_VALUE - 16) {
                if ((long) len + n > Integer.MAX_VALUE - 16) {
                    throw new IllegalArgumentException("GGUF header exceeds 2 GiB");
                }
                want = Integer.MAX_VALUE - 16;
            }
            buf = Arrays.copyOf(buf, (int) want);
        }
    }
}
