package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Random;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufTensor;

/** {@link Session#evaluateHidden}: the final-norm hidden states that the LM head turns into logits. */
class HiddenStateTest {

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    static Path dir;
    static Path dense;
    static int[] tokens;

    @BeforeAll
    static void model() {
        dense = TestModels.generate(dir, ModelShape.tinyDense(), TensorMix.F32, 11);
        Random r = new Random(5);
        tokens = new int[23];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = r.nextInt(ModelShape.tinyDense().vocab());
        }
    }

    @Test
    void theLmHeadOfTheHiddenStatesGivesTheLogits() throws IOException {
        try (Model m = Model.load(dense, LoadOptions.defaults().withThreads(2))) {
            float[][] logits;
            try (Session s = m.newSession()) {
                logits = s.evaluateAll(tokens);
            }
            float[][] hidden = new float[tokens.length][m.config().embd()];
            try (Session s = m.newSession()) {
                assertEquals(m.config().embd(), s.hiddenSize());
                s.evaluateHidden(tokens, 0, tokens.length, hidden);
                assertEquals(tokens.length, s.position());
            }
            GgufTensor head = m.file().findTensor("output.weight").orElse(m.file().tensor("token_embd.weight"));
            assertEquals(GgmlType.F32, head.type(), "the test reads the LM head as F32");
            MemorySegment w = head.data();
            int embd = m.config().embd();
            for (int p = 0; p < tokens.length; p++) {
                for (int t = 0; t < m.config().vocab(); t++) {
                    double dot = 0;
                    for (int i = 0; i < embd; i++) {
                        dot += w.getAtIndex(F32, (long) t * embd + i) * hidden[p][i];
                    }
                    assertEquals(dot, logits[p][t], 1e-3 * (1 + Math.abs(dot)), "position " + p + " token " + t);
                }
            }
        }
    }

    @Test
    void batchesOfAnySizeGiveTheSameStates() throws IOException {
        float[][] whole = new float[tokens.length][ModelShape.tinyDense().embd()];
        float[][] chunked = new float[tokens.length][ModelShape.tinyDense().embd()];
        try (Model m = Model.load(dense, LoadOptions.defaults().withThreads(2)); Session s = m.newSession()) {
            s.evaluateHidden(tokens, 0, tokens.length, whole);
        }
        try (Model m = Model.load(dense, LoadOptions.defaults().withThreads(2).withBatchSize(4));
             Session s = m.newSession()) {
            // two calls: the second continues after the cached first part
            s.evaluateHidden(tokens, 0, 9, chunked);
            float[][] rest = new float[tokens.length - 9][m.config().embd()];
            s.evaluateHidden(tokens, 9, tokens.length - 9, rest);
            System.arraycopy(rest, 0, chunked, 9, rest.length);
        }
        for (int i = 0; i < tokens.length; i++) {
            assertArrayEquals(whole[i], chunked[i], 0f, "position " + i);
        }
    }

    @Test
    void undersizedOutputIsRejected() throws IOException {
        try (Model m = Model.load(dense, LoadOptions.defaults().withThreads(1)); Session s = m.newSession()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> s.evaluateHidden(tokens, 0, 3, new float[3][10]));
            assertEquals("hidden-state array 0 of 10 is shorter than the hidden size 256", e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> s.evaluateHidden(tokens, 0, 3, new float[2][256]));
            assertEquals(0, s.position(), "nothing was evaluated");
        }
    }
}
