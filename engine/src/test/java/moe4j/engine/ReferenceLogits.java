package moe4j.engine;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A llama.cpp reference file ({@code shared/fixtures/reference/NAME.PROMPT.bin}): int32 n_tokens,
 * int32 dim, int32 tokens[n], float32 data (logits of every position for language models),
 * little-endian.
 */
record ReferenceLogits(int[] tokens, int dim, float[][] logits) {

    static ReferenceLogits read(Path file) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        int n = b.getInt();
        int dim = b.getInt();
        if (n <= 0 || dim <= 0 || b.remaining() != 4L * n + 4L * n * dim) {
            throw new IOException(file + ": header says " + n + " tokens x " + dim + " but " + b.remaining()
                    + " bytes follow (expected per-position logits)");
        }
        int[] tokens = new int[n];
        for (int i = 0; i < n; i++) {
            tokens[i] = b.getInt();
        }
        float[][] logits = new float[n][dim];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < dim; j++) {
                logits[i][j] = b.getFloat();
            }
        }
        return new ReferenceLogits(tokens, dim, logits);
    }
}
