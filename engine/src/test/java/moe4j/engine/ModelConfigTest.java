package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadataException;
import moe4j.gguf.GgufValueType;
import moe4j.gguf.TensorSource;
import moe4j.kernels.Rope;

class ModelConfigTest {

    @TempDir
    static Path dir;
    static Path moe;
    static Path dense;

    @BeforeAll
    static void models() {
        moe = TestModels.generate(dir, ModelShape.tiny(), TensorMix.F32, 1);
        dense = TestModels.generate(dir, ModelShape.tinyDense(), TensorMix.F32, 1);
    }

    private static ModelConfig config(Path p) throws IOException {
        try (GgufFile f = GgufFile.open(p)) {
            return ModelConfig.from(f);
        }
    }

    @Test
    void readsTheHyperparametersOfBothArchitectures() throws IOException {
        ModelShape s = ModelShape.tiny();
        ModelConfig c = config(moe);
        assertEquals("qwen3moe", c.architecture());
        assertEquals(s.layers(), c.layers());
        assertEquals(s.embd(), c.embd());
        assertEquals(s.heads(), c.heads());
        assertEquals(s.kvHeads(), c.kvHeads());
        assertEquals(s.headDim(), c.headDim());
        assertEquals(s.experts(), c.experts());
        assertEquals(s.expertsUsed(), c.expertsUsed());
        assertEquals(s.expertFfn(), c.expertFfn());
        assertEquals(s.vocab(), c.vocab());
        assertEquals(s.context(), c.contextLength());
        assertEquals(s.ropeBase(), c.ropeBase());
        assertEquals(s.rmsEps(), c.rmsEps());
        assertEquals(s.tiedEmbeddings(), c.tiedEmbeddings());
        assertTrue(c.ropeScaling().isIdentity());

        ModelConfig d = config(dense);
        assertEquals("qwen3", d.architecture());
        assertFalse(d.isMoe());
        assertEquals(ModelShape.tinyDense().ffn(), d.ffn());
        assertTrue(d.tiedEmbeddings());
    }

    @Test
    void missingRequiredKeyIsNamed() throws IOException {
        Path p = TestModels.rewrite(moe, dir.resolve("no-eps.gguf"), n -> true,
                w -> w.remove("qwen3moe.attention.layer_norm_rms_epsilon"));
        GgufMetadataException e = assertThrows(GgufMetadataException.class,
                () -> Model.load(p, LoadOptions.defaults().withThreads(1)));
        assertEquals("qwen3moe.attention.layer_norm_rms_epsilon", e.key());
    }

    @Test
    void unsupportedArchitectureIsRejected() throws IOException {
        Path p = TestModels.rewrite(moe, dir.resolve("llama.gguf"), n -> true,
                w -> w.putString("general.architecture", "llama"));
        UnsupportedModelException e = assertThrows(UnsupportedModelException.class,
                () -> Model.load(p, LoadOptions.defaults().withThreads(1)));
        assertTrue(e.getMessage().contains("architecture 'llama' is not supported"), e.getMessage());
    }

    @Test
    void fusedQkvAndBiasesAreRejectedByName() throws IOException {
        int embd = ModelShape.tiny().embd();
        Path bias = TestModels.rewrite(moe, dir.resolve("bias.gguf"), n -> true,
                w -> w.addTensor("blk.0.attn_q.bias", GgmlType.F32, new long[] {256},
                        TensorSource.ofFloats(new float[256])));
        UnsupportedModelException e = assertThrows(UnsupportedModelException.class,
                () -> Model.load(bias, LoadOptions.defaults().withThreads(1)));
        assertTrue(e.getMessage().contains("blk.0.attn_q.bias") && e.getMessage().contains("bias"), e.getMessage());

        int qkv = 256 + 2 * 128;
        Path fused = TestModels.rewrite(moe, dir.resolve("fused.gguf"), n -> !n.startsWith("blk.0.attn_q.weight"),
                w -> w.addTensor("blk.0.attn_qkv.weight", GgmlType.F32, new long[] {embd, qkv},
                        TensorSource.ofFloats(new float[embd * qkv])));
        e = assertThrows(UnsupportedModelException.class, () -> Model.load(fused, LoadOptions.defaults().withThreads(1)));
        assertTrue(e.getMessage().contains("blk.0.attn_qkv.weight"), e.getMessage());
    }

    @Test
    void tensorShapeContradictingTheMetadataIsNamed() throws IOException {
        Path p = TestModels.rewrite(moe, dir.resolve("heads.gguf"), n -> true,
                w -> w.putUInt32("qwen3moe.attention.head_count", 2));
        UnsupportedModelException e = assertThrows(UnsupportedModelException.class,
                () -> Model.load(p, LoadOptions.defaults().withThreads(1)));
        assertTrue(e.getMessage().contains("blk.0.attn_q.weight"), e.getMessage());
    }

    @Test
    void missingTensorIsNamed() throws IOException {
        Path p = TestModels.rewrite(moe, dir.resolve("no-down.gguf"), n -> !n.equals("blk.1.ffn_down_exps.weight"),
                w -> { });
        RuntimeException e = assertThrows(RuntimeException.class,
                () -> Model.load(p, LoadOptions.defaults().withThreads(1)));
        assertTrue(e.getMessage().contains("blk.1.ffn_down_exps.weight"), e.getMessage());
    }

    @Test
    void perLayerArraysMustAgree() throws IOException {
        Path same = TestModels.rewrite(moe, dir.resolve("arr-same.gguf"), n -> true,
                w -> w.putUInt32Array("qwen3moe.attention.head_count_kv", 2, 2));
        assertEquals(2, config(same).kvHeads());
        Path differ = TestModels.rewrite(moe, dir.resolve("arr-differ.gguf"), n -> true,
                w -> w.putUInt32Array("qwen3moe.attention.head_count_kv", 2, 1));
        UnsupportedModelException e = assertThrows(UnsupportedModelException.class, () -> config(differ));
        assertTrue(e.getMessage().contains("qwen3moe.attention.head_count_kv"), e.getMessage());
    }

    @Test
    void yarnScalingDerivesLlamaCppParameters() throws IOException {
        Path p = TestModels.rewrite(moe, dir.resolve("yarn.gguf"), n -> true, w -> w
                .putString("qwen3moe.rope.scaling.type", "yarn")
                .putFloat32("qwen3moe.rope.scaling.factor", 4f)
                .putUInt32("qwen3moe.rope.scaling.original_context_length", 1024));
        ModelConfig c = config(p);
        assertEquals(RopeScaling.Type.YARN, c.ropeScaling().type());
        Rope rope = c.rope(Rope.Style.NEOX);
        assertEquals(0.25f, rope.freqScale());
        assertEquals(1f, rope.extFactor());
        assertEquals(1f, rope.attnFactor(), 1e-6f);
        assertEquals(1024, rope.origContext());
        try (Model m = Model.load(p, LoadOptions.defaults().withThreads(1)); Session s = m.newSession(16)) {
            float[] logits = s.evaluate(new int[] {1, 2, 3});
            for (float v : logits) {
                assertTrue(Float.isFinite(v));
            }
        }

        Path longrope = TestModels.rewrite(moe, dir.resolve("longrope.gguf"), n -> true,
                w -> w.put("qwen3moe.rope.scaling.type", GgufValueType.STRING, "longrope"));
        UnsupportedModelException e = assertThrows(UnsupportedModelException.class, () -> config(longrope));
        assertTrue(e.getMessage().contains("longrope"), e.getMessage());
    }
}
