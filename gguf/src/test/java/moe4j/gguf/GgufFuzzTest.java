package moe4j.gguf;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Corrupts real files (one made by GgufWriter, plus every fixture model when present) byte by byte and by
 * truncation, with a fixed seed: each attempt must either open cleanly or fail with GgufFormatException.
 */
class GgufFuzzTest {

    private static final long SEED = 0x6767_7566L;
    private static final int MUTATIONS_PER_FILE = 600;
    private static final int TRUNCATIONS_PER_FILE = 40;
    /** Values that probe count, length and offset fields. */
    private static final long[] INTERESTING = {0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF_FFFFL, 0x8000_0000L, 0xFFFF_FFFFL,
            Long.MAX_VALUE, Long.MIN_VALUE, 1L << 32, 1L << 30, 63, 64, 4, 5, 9, 13, 43};

    @TempDir
    Path dir;

    private int opened;
    private int rejected;

    @Test
    void corruptedFilesOpenOrFailWithAFormatException() throws IOException {
        Path made = dir.resolve("made.gguf");
        GgufWriter w = GgufRoundTripTest.everyValueType();
        w.addTensor("a", GgmlType.F32, new long[] {8, 2}, TensorSource.ofFloats(new float[16]));
        w.addTensor("b", GgmlType.Q4_K, new long[] {256}, t -> t.fill((byte) 3));
        w.addTensor("c", GgmlType.I8, new long[] {3, 1, 2}, t -> { });
        w.write(made);

        List<Path> inputs = new ArrayList<>(List.of(made));
        inputs.addAll(Fixtures.allModels());
        Random random = new Random(SEED);
        for (Path input : inputs) {
            fuzz(input, random);
        }
        assertTrue(rejected > 0 && opened > 0, "mutations both kept and broke files: opened " + opened + ", rejected " + rejected);
    }

    private void fuzz(Path input, Random random) throws IOException {
        byte[] original = Files.readAllBytes(input);
        long headerEnd;
        try (GgufFile f = GgufFile.open(input)) {
            headerEnd = f.dataStart();
        }
        Path target = dir.resolve("fuzz-" + input.getFileName());
        Files.write(target, original);
        try (FileChannel ch = FileChannel.open(target, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            for (int i = 0; i < MUTATIONS_PER_FILE; i++) {
                // Mostly hit the header, where the structure is; sometimes the data, which must not matter.
                long limit = random.nextInt(10) == 0 ? original.length : Math.min(original.length, headerEnd + 64);
                int at = (int) (random.nextDouble() * limit);
                byte[] patch = random.nextBoolean() ? randomBytes(random) : interesting(random);
                int n = Math.min(patch.length, original.length - at);
                ch.write(ByteBuffer.wrap(patch, 0, n), at);
                int index = i;
                attempt(target, () -> "mutation " + index + " of " + input.getFileName() + ": " + n + " bytes at " + at);
                ch.write(ByteBuffer.wrap(original, at, n), at);
            }
        }
        for (int i = 0; i < TRUNCATIONS_PER_FILE; i++) {
            long limit = random.nextBoolean() ? original.length : Math.min(original.length, headerEnd + 64);
            int length = (int) (random.nextDouble() * limit);
            Files.write(target, java.util.Arrays.copyOf(original, length));
            int index = i;
            attempt(target, () -> "truncation " + index + " of " + input.getFileName() + " to " + length + " bytes");
        }
        Files.delete(target);
    }

    private static byte[] randomBytes(Random random) {
        byte[] b = new byte[1 + random.nextInt(4)];
        random.nextBytes(b);
        return b;
    }

    private static byte[] interesting(Random random) {
        long v = INTERESTING[random.nextInt(INTERESTING.length)];
        int width = random.nextBoolean() ? 8 : 4;
        byte[] b = new byte[width];
        for (int i = 0; i < width; i++) {
            b[i] = (byte) (v >>> (8 * i));
        }
        return b;
    }

    private void attempt(Path file, java.util.function.Supplier<String> what) {
        try (GgufFile f = GgufFile.open(file)) {
            for (GgufTensor t : f.tensors()) {
                if (t.byteSize() > 0) {
                    t.data().get(ValueLayout.JAVA_BYTE, 0);
                    t.data().get(ValueLayout.JAVA_BYTE, t.byteSize() - 1);
                }
            }
            for (String key : f.metadata().keys()) {
                if (f.metadata().get(key) instanceof GgufArray a && a.length() > 0) {
                    a.get(a.length() - 1);
                }
            }
            opened++;
        } catch (GgufFormatException expected) {
            rejected++;
        } catch (Throwable t) {
            fail(what.get() + ": unexpected " + t, t);
        }
    }
}
