package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A file in the fixtures' format, as {@code logits --out} and {@code embed --out} write it and llama.cpp's
 * reference files hold it: int32 n, int32 dim, int32 tokens[n], then float32 rows of {@code dim} values.
 */
record FixtureFile(int[] tokens, float[][] rows) {

    static FixtureFile read(Path file) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        int n = b.getInt();
        int dim = b.getInt();
        int[] tokens = new int[n];
        for (int i = 0; i < n; i++) {
            tokens[i] = b.getInt();
        }
        assertEquals(0, b.remaining() % (4 * dim), "whole rows of " + dim + " values follow the tokens");
        float[][] rows = new float[b.remaining() / (4 * dim)][dim];
        for (float[] row : rows) {
            for (int i = 0; i < dim; i++) {
                row[i] = b.getFloat();
            }
        }
        return new FixtureFile(tokens, rows);
    }

    /** A logits file: exactly one row of logits per token. */
    static FixtureFile readLogits(Path file) throws IOException {
        FixtureFile f = read(file);
        assertEquals(f.tokens.length, f.rows.length, "one row of logits per token");
        return f;
    }
}
