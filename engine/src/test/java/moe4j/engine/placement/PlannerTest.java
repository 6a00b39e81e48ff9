package moe4j.engine.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.placement.ModelFootprint.Part;
import moe4j.engine.placement.ModelFootprint.TensorFootprint;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.InterleavedRows;

class PlannerTest {

    private static final long KIB = 1024;
    private static final long MIB = 1024 * KIB;
    private static final long GIB = 1024 * MIB;

    // A hand-sized MoE model: embd 64, q 64, kv 32, 4 experts (2 used) of FFN 32, vocabulary 1000.
    private static final long EMBEDDING = 2 * MIB;
    private static final long HEAD = 2 * MIB;
    private static final long OUTPUT_NORM = KIB;
    private static final long ATTENTION = 4 * MIB;          // q, k, v, output: 1 MiB each
    private static final long ATTENTION_BLOCK = ATTENTION + KIB;   // and the 1 KiB attention norm
    private static final long EXPERTS = 24 * MIB;           // gate, up, down: 8 MiB each
    private static final long FFN_NORM_AND_ROUTER = 5 * KIB;       // a 1 KiB norm, a 4 KiB router
    /** What runs where the experts run. */
    private static final long FFN_BLOCK = EXPERTS + FFN_NORM_AND_ROUTER;
    private static final int CTX = 1024;
    private static final long KV = 2L * CTX * 32 * 2;       // keys and values, f16
    /** Batch 1, every kind of part (see Planner.scratchBytes): hidden, normed, block out, q/k/v/out,
     * router logits and choices, expert buffers, head input and logits. */
    private static final long SCRATCH_ALL = 64 * 4 + 2 * 64 * 4 + (2 * 64 + 2 * 32) * 4 + 4 * 4 + 2 * 8
            + 2 * (2 * 64 + 2 * 32) * 4 + (64 + 1000) * 4;
    /**
     * A GPU's scratch beyond the workspace's: its copies of a batched product's widest input (64 values) rounded to
     * 8 bits, as floats and as int8 with a float per 256 values and an int per 16; with the experts, the int8 copy
     * holds a token's 2 experts' inputs (2 x 64).
     */
    private static final long GPU_ROUNDED = 64 * 4 + (64 + 64 / 64 + 64 / 4);
    private static final long GPU_SCRATCH_ALL = SCRATCH_ALL + 64 * 4 + (128 + 128 / 64 + 128 / 4);
    private static final long MARGIN = 64 * MIB;
    private static final SystemMemory DDR = SystemMemory.DEFAULT;

    static ModelFootprint synthetic(int layers, boolean tied) {
        List<TensorFootprint> t = new ArrayList<>();
        t.add(ModelFootprint.classify("token_embd.weight", EMBEDDING));
        for (int l = 0; l < layers; l++) {
            String p = "blk." + l + ".";
            t.add(ModelFootprint.classify(p + "attn_norm.weight", KIB));
            for (String n : List.of("attn_q", "attn_k", "attn_v", "attn_output")) {
                t.add(ModelFootprint.classify(p + n + ".weight", MIB));
            }
            t.add(ModelFootprint.classify(p + "ffn_norm.weight", KIB));
            t.add(ModelFootprint.classify(p + "ffn_gate_inp.weight", 4 * KIB));
            for (String n : List.of("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")) {
                t.add(ModelFootprint.classify(p + n + ".weight", 8 * MIB));
            }
        }
        t.add(ModelFootprint.classify("output_norm.weight", OUTPUT_NORM));
        if (!tied) {
            t.add(ModelFootprint.classify("output.weight", HEAD));
        }
        return new ModelFootprint("synthetic", layers, 64, 64, 32, 4, 2, 32, 0, 1000, 4096, tied, t);
    }

    private static PlanRequest request() {
        return PlanRequest.defaults(CTX).withBatchSize(1).withMargin(MARGIN);
    }

    private static DeviceSpec gpu(int i, long capacity) {
        return DeviceSpec.gpu(i, "GPU", capacity, 1000, HostLink.PCIE4_X16);
    }

    private static long total(ModelFootprint m) {
        return EMBEDDING + m.layers() * (ATTENTION_BLOCK + FFN_BLOCK) + OUTPUT_NORM + (m.tiedEmbeddings() ? 0 : HEAD);
    }

    /**
     * A GPU holds Q3_K matrices padded (112 bytes a block, rows 16 bytes more; CudaBackend.heldBytes), which the
     * planner counts where a GPU holds them: the Qwen3-235B-A22B Q3_K_M preset's gate and up experts are Q3_K.
     */
    @Test
    void whatAGpuHoldsOfQ3kMatricesIsTheirPaddedSize() {
        ModelFootprint m = ModelFootprint.preset("qwen3-235b-a22b:Q3_K_M");
        TensorFootprint gate = m.tensors().stream().filter(t -> t.name().equals("blk.0.ffn_gate_exps.weight"))
                .findFirst().orElseThrow();
        long rows = 1536L * 128;
        assertEquals(rows * 16 * 110, gate.bytes(), "the file's bytes: 16 blocks of 110 a row");
        assertEquals(rows * (16 * 112 + 16), gate.gpuBytes(), "on a GPU: 16 blocks of 112 and 16 bytes a row");
        TensorFootprint norm = m.tensors().stream().filter(t -> t.name().equals("blk.0.attn_norm.weight"))
                .findFirst().orElseThrow();
        assertEquals(norm.bytes(), norm.gpuBytes(), "an f32 vector as it is");
        long gpuTotal = m.tensors().stream().mapToLong(TensorFootprint::gpuBytes).sum();
        long fileTotal = m.tensors().stream().mapToLong(TensorFootprint::bytes).sum();
        assertTrue(gpuTotal > fileTotal && gpuTotal < fileTotal * 1.03, fileTotal + " -> " + gpuTotal);
    }

    @Test
    void classifiesTensorsByName() {
        assertEquals(Part.TOKEN_EMBEDDING, ModelFootprint.classify("token_embd.weight", 1).part());
        assertEquals(Part.OUTPUT, ModelFootprint.classify("output.weight", 1).part());
        assertEquals(Part.OUTPUT_NORM, ModelFootprint.classify("output_norm.weight", 1).part());
        TensorFootprint q = ModelFootprint.classify("blk.12.attn_q.weight", 1);
        assertEquals(12, q.layer());
        assertEquals(Part.ATTENTION, q.part());
        assertEquals(Part.NORM, ModelFootprint.classify("blk.0.attn_k_norm.weight", 1).part());
        assertEquals(Part.NORM, ModelFootprint.classify("blk.0.attn_norm.weight", 1).part());
        assertEquals(Part.FFN_NORM, ModelFootprint.classify("blk.0.ffn_norm.weight", 1).part());
        assertTrue(Part.FFN_NORM.feedForward() && Part.ROUTER.feedForward() && Part.EXPERTS.feedForward()
                && Part.DENSE_FFN.feedForward());
        assertFalse(Part.NORM.feedForward() || Part.ATTENTION.feedForward() || Part.OUTPUT_NORM.feedForward());
        assertEquals(Part.ROUTER, ModelFootprint.classify("blk.0.ffn_gate_inp.weight", 1).part());
        assertEquals(Part.EXPERTS, ModelFootprint.classify("blk.0.ffn_down_exps.weight", 1).part());
        assertEquals(Part.DENSE_FFN, ModelFootprint.classify("blk.0.ffn_up.weight", 1).part());
        assertEquals(Part.OTHER, ModelFootprint.classify("rope_freqs.weight", 1).part());
    }

    @Test
    void ramOnlyFitsExactlyAndReportsTheExactShortfall() {
        ModelFootprint m = synthetic(4, false);
        long needs = total(m) + 4 * KV + SCRATCH_ALL;

        Placement fits = Planner.plan(m, List.of(DeviceSpec.cpu(needs + MARGIN, DDR)), request());
        assertTrue(fits.fits(), fits.message());
        DeviceLoad cpu = fits.device("cpu");
        assertEquals(total(m), cpu.weightsBytes());
        assertEquals(4 * KV, cpu.kvBytes());
        assertEquals(SCRATCH_ALL, cpu.scratchBytes());
        assertEquals(0, cpu.freeBytes());
        assertEquals("", fits.message());

        Placement shortBy1MiB = Planner.plan(m, List.of(DeviceSpec.cpu(needs + MARGIN - MIB, DDR)), request());
        assertFalse(shortBy1MiB.fits());
        assertEquals(-MIB, shortBy1MiB.device("cpu").freeBytes());
        assertTrue(shortBy1MiB.message().startsWith("cpu (DDR5-5600 x2) is short by 1.00 MiB: it needs "),
                shortBy1MiB.message());
    }

    @Test
    void aBigGpuTakesEverythingButTheTokenEmbedding() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), request());
        assertTrue(p.fits());
        DeviceLoad g = p.device("cuda:0");
        assertEquals(total(m) - EMBEDDING, g.weightsBytes());
        assertEquals(4 * KV, g.kvBytes());
        assertEquals(List.of(0, 1, 2, 3), g.attentionLayers());
        assertEquals(List.of(0, 1, 2, 3), g.expertLayers());
        assertEquals(GPU_SCRATCH_ALL, g.scratchBytes());
        assertEquals("cpu", p.deviceOf("token_embd.weight"));
        assertEquals("cuda:0", p.deviceOf("output.weight"));
        DeviceLoad cpu = p.device("cpu");
        assertEquals(EMBEDDING, cpu.weightsBytes());
        assertEquals(64 * 4, cpu.scratchBytes(), "the embedding's output rows only");
        // embedding -> GPU, logits -> host
        assertEquals(2, p.transfersPerToken());
    }

    @Test
    void gpusGetWhatEveryTokenReadsBeforeExperts() {
        ModelFootprint m = synthetic(4, false);
        long fixed = GPU_SCRATCH_ALL + HEAD + OUTPUT_NORM;
        long capacity = MARGIN + fixed + 4 * (ATTENTION_BLOCK + KV) + FFN_BLOCK + EXPERTS / 2;   // one FFN block
        Placement p = Planner.plan(m, List.of(gpu(0, capacity), DeviceSpec.cpu(GIB, DDR)), request());
        assertTrue(p.fits(), p.message());
        assertEquals(List.of(0, 1, 2, 3), p.device("cuda:0").attentionLayers());
        assertEquals(List.of(0), p.device("cuda:0").expertLayers());
        assertEquals(List.of(1, 2, 3), p.device("cpu").expertLayers());
        assertEquals("cpu", p.deviceOf("blk.1.ffn_up_exps.weight"));
        assertEquals("cuda:0", p.deviceOf("blk.1.attn_q.weight"));
        assertEquals(EXPERTS / 2, p.device("cuda:0").freeBytes());
        // per CPU-expert layer the hidden state goes to the CPU and back, plus embedding in and logits out
        assertEquals(3 * 2 + 2, p.transfersPerToken());
    }

    @Test
    void layersThatDoNotFitStayOnTheCpuAndAreTheFirstOnes() {
        ModelFootprint m = synthetic(4, false);
        long capacity = MARGIN + GPU_SCRATCH_ALL + HEAD + OUTPUT_NORM + 2 * (ATTENTION_BLOCK + KV) + MIB;
        Placement p = Planner.plan(m, List.of(gpu(0, capacity), DeviceSpec.cpu(GIB, DDR)), request());
        assertTrue(p.fits(), p.message());
        assertEquals(List.of(2, 3), p.device("cuda:0").attentionLayers());
        assertEquals(List.of(0, 1), p.device("cpu").attentionLayers());
        assertEquals(List.of(0, 1, 2, 3), p.device("cpu").expertLayers());
        assertEquals(2 * KV, p.device("cpu").kvBytes());
    }

    @Test
    void aGpuTooSmallForAnythingIsLeftEmpty() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(gpu(0, MARGIN + MIB), DeviceSpec.cpu(GIB, DDR)), request());
        assertTrue(p.fits());
        assertEquals(0, p.device("cuda:0").totalBytes());
        assertEquals(total(m), p.device("cpu").weightsBytes());
        assertEquals("cpu", p.deviceOf("output.weight"));
        assertEquals(0, p.transfersPerToken());
    }

    @Test
    void defaultSplitIsByFreeMemoryAndManualSplitByProportion() {
        ModelFootprint m = synthetic(8, false);
        List<DeviceSpec> two = List.of(gpu(0, GIB), gpu(1, GIB), DeviceSpec.cpu(GIB, DDR));
        Placement even = Planner.plan(m, two, request());
        assertEquals(List.of(0, 1, 2, 3), even.device("cuda:0").attentionLayers());
        assertEquals(List.of(4, 5, 6, 7), even.device("cuda:1").attentionLayers());
        assertEquals("cuda:1", even.deviceOf("output.weight"), "the head goes with the last layer");

        Placement threeToOne = Planner.plan(m, two, request().withSplit(List.of(3.0, 1.0)));
        assertEquals(List.of(0, 1, 2, 3, 4, 5), threeToOne.device("cuda:0").attentionLayers());
        assertEquals(List.of(6, 7), threeToOne.device("cuda:1").attentionLayers());
        assertEquals(6 * KV, threeToOne.device("cuda:0").kvBytes());

        List<DeviceSpec> unequal = List.of(gpu(0, 3 * MARGIN), gpu(1, MARGIN + 40 * MIB), DeviceSpec.cpu(GIB, DDR));
        Placement byMemory = Planner.plan(m, unequal, request().withCpuMoe());
        assertTrue(byMemory.device("cuda:0").attentionLayers().size() > byMemory.device("cuda:1").attentionLayers().size());

        assertThrows(IllegalArgumentException.class, () -> Planner.plan(m, two, request().withSplit(List.of(1.0))));
    }

    /**
     * Batches of 32 tokens or more copy a block placed in RAM to the GPU of its layer's attention: that GPU keeps room
     * for two blocks (five tensors each at 256-byte boundaries, copied in turn) with the blocks' buffers, or one when
     * a single layer's block lies in RAM; a GPU that holds every block keeps none, and a batch size under the
     * threshold none either.
     */
    @Test
    void aGpuWhoseLayersHaveExpertsInRamKeepsRoomForStagingTwoBlocks() {
        ModelFootprint m = synthetic(4, false);
        PlanRequest batch64 = request().withBatchSize(64);
        Placement hybrid = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), batch64.withCpuMoe());
        Placement plain = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)),
                batch64.withCpuMoe().withStageBatch(0));
        long buffers = Planner.scratchBytes(m, 64, EnumSet.of(Part.FFN_NORM, Part.ROUTER, Part.EXPERTS,
                Part.ATTENTION, Part.NORM, Part.OUTPUT, Part.OUTPUT_NORM), true)
                - Planner.scratchBytes(m, 64, EnumSet.of(Part.ATTENTION, Part.NORM, Part.OUTPUT, Part.OUTPUT_NORM), true);
        assertEquals(2 * (FFN_BLOCK + 5 * 256) + buffers,
                hybrid.device("cuda:0").scratchBytes() - plain.device("cuda:0").scratchBytes(),
                "two blocks' room and their buffers");
        Placement oneLayer = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), batch64.withNCpuMoe(1));
        assertEquals(List.of(1, 2, 3), oneLayer.device("cuda:0").expertLayers());
        assertEquals(FFN_BLOCK + 5 * 256, oneLayer.device("cuda:0").scratchBytes()
                - Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), batch64.withNCpuMoe(1)
                        .withStageBatch(0)).device("cuda:0").scratchBytes(),
                "one layer stages: one block's room (the GPU has the blocks' buffers for its own experts)");
        assertEquals(plain.device("cpu").scratchBytes(), hybrid.device("cpu").scratchBytes(), "nothing on the CPU");
        Placement whole = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), batch64);
        assertEquals(List.of(0, 1, 2, 3), whole.device("cuda:0").expertLayers());
        assertEquals(whole.device("cuda:0").scratchBytes(), Planner.plan(m, List.of(gpu(0, GIB),
                DeviceSpec.cpu(GIB, DDR)), batch64.withStageBatch(0)).device("cuda:0").scratchBytes(),
                "every block on the GPU: nothing to stage");
        Placement small = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)),
                request().withBatchSize(16).withCpuMoe());
        assertEquals(Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)),
                request().withBatchSize(16).withCpuMoe().withStageBatch(0)).device("cuda:0").scratchBytes(),
                small.device("cuda:0").scratchBytes(), "batches of 16 never reach 32 tokens");
    }

    /** A single token is computed where its experts lie: staging batches of 1 is refused, as a negative threshold. */
    @Test
    void stagingSingleTokensIsRefused() {
        for (int bad : new int[] {-1, 1}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> request().withStageBatch(bad));
            assertTrue(e.getMessage().contains("stageBatch must be 0 (never) or at least 2"), e.getMessage());
        }
    }

    @Test
    void cpuMoeKeepsAttentionOnTheGpuAndExpertsInRam() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), request().withCpuMoe());
        DeviceLoad g = p.device("cuda:0");
        assertEquals(List.of(0, 1, 2, 3), g.attentionLayers());
        assertEquals(List.of(), g.expertLayers());
        // the FFN norm and router run with the experts: their bytes, scratch and reads are the CPU's
        assertEquals(4 * ATTENTION_BLOCK + HEAD + OUTPUT_NORM, g.weightsBytes());
        DeviceLoad cpu = p.device("cpu");
        assertEquals(EMBEDDING + 4 * FFN_BLOCK, cpu.weightsBytes());
        long hiddenNormedOut = 3 * 64 * 4;
        assertEquals(hiddenNormedOut + (2 * 64 + 2 * 32) * 4 + (64 + 1000) * 4 + GPU_ROUNDED, g.scratchBytes(),
                "attention and head buffers, no router's");
        assertEquals(hiddenNormedOut + 4 * 4 + 2 * 8 + 2 * (2 * 64 + 2 * 32) * 4, cpu.scratchBytes(),
                "router logits and choices, expert buffers");
        assertEquals(4 * ATTENTION_BLOCK + HEAD + OUTPUT_NORM, g.weightsReadPerToken());
        assertEquals(EMBEDDING / 1000 + 4 * (FFN_NORM_AND_ROUTER + EXPERTS * 2 / 4), cpu.weightsReadPerToken());
        for (LayerPlacement l : p.layers()) {
            assertEquals("cuda:0", l.attention());
            assertEquals("cpu", l.experts());
            assertEquals("cpu", l.ffn());
            assertEquals("cpu", p.deviceOf("blk." + l.layer() + ".ffn_norm.weight"));
            assertEquals("cpu", p.deviceOf("blk." + l.layer() + ".ffn_gate_inp.weight"));
            assertEquals("cuda:0", p.deviceOf("blk." + l.layer() + ".attn_norm.weight"));
        }
        // embedding in, then to the CPU and back for each layer's FFN block, and the logits out
        assertEquals(1 + 4 * 2 + 1, p.transfersPerToken());
    }

    @Test
    void nCpuMoeKeepsTheFirstLayersExpertsInRam() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), request().withNCpuMoe(1));
        assertEquals(List.of(1, 2, 3), p.device("cuda:0").expertLayers());
        assertEquals(List.of(0), p.device("cpu").expertLayers());
        assertEquals(EMBEDDING + FFN_BLOCK, p.device("cpu").weightsBytes());
    }

    @Test
    void manualGpuLayersThatDoNotFitSayWhichGpuIsShortAndByHowMuch() {
        ModelFootprint m = synthetic(4, false);
        long capacity = MARGIN + GPU_SCRATCH_ALL + HEAD + OUTPUT_NORM + 2 * (ATTENTION_BLOCK + KV + FFN_BLOCK);
        List<DeviceSpec> devices = List.of(gpu(0, capacity), DeviceSpec.cpu(GIB, DDR));
        Placement manual = Planner.plan(m, devices, request().withGpuLayers(4).withNCpuMoe(0));
        assertFalse(manual.fits());
        DeviceLoad g = manual.device("cuda:0");
        long twoLayers = 2 * (ATTENTION_BLOCK + KV + FFN_BLOCK);
        assertEquals(-twoLayers, g.freeBytes());
        assertTrue(manual.message().startsWith("cuda:0 (GPU) is short by " + ByteSize.format(twoLayers)),
                manual.message());
        assertTrue(manual.message().contains("but has " + ByteSize.format(capacity - MARGIN) + " usable"));

        Placement auto = Planner.plan(m, devices, request());
        assertTrue(auto.fits(), auto.message());
        assertEquals(List.of(0, 1, 2, 3), auto.device("cuda:0").attentionLayers());
    }

    @Test
    void overridePatternsPinTensorsFirst() {
        ModelFootprint m = synthetic(4, false);
        List<DeviceSpec> devices = List.of(gpu(0, GIB), gpu(1, GIB), DeviceSpec.cpu(GIB, DDR));
        Placement exps = Planner.plan(m, devices, request().withOverrides(List.of(TensorOverride.parse("exps=CPU"))));
        Placement cpuMoe = Planner.plan(m, devices, request().withCpuMoe());
        assertEquals(cpuMoe.tensorDevices(), exps.tensorDevices());
        assertEquals("cpu", exps.deviceOf("blk.0.ffn_gate_inp.weight"), "the router follows the pinned experts");
        assertEquals("cpu", exps.deviceOf("blk.0.ffn_norm.weight"));

        Placement layer0 = Planner.plan(m, devices, request().withOverrides(List.of(
                TensorOverride.parse("blk\\.0\\.ffn_=cpu"), TensorOverride.parse("blk\\.0\\.=CUDA1"))));
        assertEquals("cpu", layer0.deviceOf("blk.0.ffn_down_exps.weight"), "first match wins");
        assertEquals("cpu", layer0.deviceOf("blk.0.ffn_norm.weight"));
        assertEquals("cuda:1", layer0.deviceOf("blk.0.attn_norm.weight"));
        assertEquals("cuda:1", layer0.deviceOf("blk.0.attn_q.weight"));
        assertEquals("cuda:1", layer0.layers().get(0).attention());
        assertEquals("cpu", layer0.layers().get(0).ffn());
        assertTrue(layer0.device("cuda:1").attentionLayers().contains(0));

        // experts pinned to the other GPU take their FFN norm and router along, and that GPU's fit counts them
        Placement moved = Planner.plan(m, devices, request().withOverrides(List.of(
                TensorOverride.parse("blk\\.0\\.ffn_.*_exps=cuda:1"))));
        assertEquals("cuda:0", moved.layers().get(0).attention(), moved.summary());
        assertEquals("cuda:1", moved.layers().get(0).ffn(), moved.summary());
        assertEquals("cuda:1", moved.deviceOf("blk.0.ffn_gate_inp.weight"));
        assertEquals(2 * ATTENTION_BLOCK + FFN_BLOCK, moved.device("cuda:0").weightsBytes());
        assertEquals(2 * (ATTENTION_BLOCK + FFN_BLOCK) + FFN_BLOCK + HEAD + OUTPUT_NORM,
                moved.device("cuda:1").weightsBytes());

        // the engine runs a block on one device: an override that would split one is refused
        IllegalArgumentException split = assertThrows(IllegalArgumentException.class, () -> Planner.plan(m, devices,
                request().withCpuMoe().withOverrides(List.of(TensorOverride.parse("ffn_gate_inp=CUDA0")))));
        assertTrue(split.getMessage().startsWith("Layer 0's feed-forward block runs on one device, but"
                + " blk.0.ffn_gate_inp.weight would be on cuda:0 (tensor override 'ffn_gate_inp=cuda:0') and"
                + " blk.0.ffn_gate_exps.weight on cpu (placed by the planner)"), split.getMessage());
        split = assertThrows(IllegalArgumentException.class, () -> Planner.plan(m, devices, request().withOverrides(
                List.of(TensorOverride.parse("blk\\.1\\.ffn_down_exps=cpu"),
                        TensorOverride.parse("blk\\.1\\.=CUDA1")))));
        assertTrue(split.getMessage().contains("blk.1.ffn_down_exps.weight would be on cpu (tensor override"
                + " 'blk\\.1\\.ffn_down_exps=cpu') and blk.1.ffn_gate_exps.weight on cuda:1 (tensor override"
                + " 'blk\\.1\\.=cuda:1')"), split.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Planner.plan(m, devices,
                request().withOverrides(List.of(TensorOverride.parse("^output_norm=cpu")))));

        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Planner.plan(m, devices,
                request().withOverrides(List.of(TensorOverride.parse("exps=cuda:7")))));
        assertTrue(e.getMessage().contains("cuda:7"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> TensorOverride.parse("exps"));
        assertThrows(IllegalArgumentException.class, () -> TensorOverride.parse("[=cpu"));
    }

    @Test
    void kvCacheBytesMatchHandComputation() {
        ModelFootprint m = ModelFootprint.preset("qwen3-235b-a22b:Q4_K_M");
        assertEquals(512, m.kvDim());
        assertEquals(64 * MIB, m.kvBytesPerLayer(32768, KvCacheType.F16));
        assertEquals(128 * MIB, m.kvBytesPerLayer(32768, KvCacheType.F32));
        assertEquals(2L * 32768 * (512 / 32) * 34, m.kvBytesPerLayer(32768, KvCacheType.Q8_0));

        Placement p = Planner.plan(m, List.of(DeviceSpec.gpu(0, GpuCard.RTX_5090), DeviceSpec.cpu(256 * GIB, DDR)),
                PlanRequest.defaults(32768));
        long kv = p.devices().stream().mapToLong(DeviceLoad::kvBytes).sum();
        assertEquals(94 * 64 * MIB, kv);
        for (DeviceLoad d : p.devices()) {
            assertEquals(d.attentionLayers().size() * 64 * MIB, d.kvBytes(), d.device().name());
        }
    }

    @Test
    void byteTotalsEqualTheGgufTensorSizes(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("tiny.gguf");
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.Q4_K_M, 3, file);
        try (GgufFile f = GgufFile.open(file)) {
            ModelFootprint fromFile = ModelFootprint.of(f);
            long sum = f.tensors().stream().mapToLong(GgufTensor::byteSize).sum();
            assertEquals(sum, fromFile.totalBytes());
            assertEquals(f.tensors().size(), fromFile.tensors().size());

            ModelFootprint preset = ModelFootprint.preset("TINY:q4_k_m");
            assertEquals(fromFile.tensors(), preset.tensors());
            assertEquals(fromFile.kvDim(), preset.kvDim());

            for (long gpuBytes : new long[] {MIB, 600 * KIB, 4 * MIB}) {
                Placement p = Planner.plan(fromFile, List.of(gpu(0, gpuBytes + MARGIN), DeviceSpec.cpu(GIB, DDR)),
                        request());
                assertEquals(sum, p.devices().stream().mapToLong(DeviceLoad::weightsBytes).sum(), "GPU " + gpuBytes);
            }
        }
    }

    @Test
    void aTiedHeadOnAGpuIsASecondCopyOfTheEmbedding() {
        ModelFootprint m = synthetic(2, true);
        Placement gpuHead = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), request());
        assertEquals(total(m) + EMBEDDING, gpuHead.devices().stream().mapToLong(DeviceLoad::weightsBytes).sum());
        assertTrue(gpuHead.device("cuda:0").globals().contains("token_embd.weight (LM head copy)"));

        Placement ramOnly = Planner.plan(m, List.of(DeviceSpec.cpu(GIB, DDR)), request());
        assertEquals(total(m), ramOnly.device("cpu").weightsBytes());
    }

    /**
     * A CPU backend that repacks holds its Q4_K matrices in groups of 16 rows, 2432 bytes for every 16 x 144 of the
     * file's (Q6_K: 3392 for 16 x 210): system RAM is planned with those bytes, a GPU with the file's, and the token embedding, which the CPU
     * reads a row at a time as the file has it, stays at its size.
     */
    @Test
    void aCpuThatRepacksHoldsItsQ4_KMatricesInTheirRepackedSize() {
        ModelFootprint m = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M");
        TensorFootprint q = m.tensors().stream().filter(t -> t.name().equals("blk.0.attn_q.weight")).findFirst()
                .orElseThrow();
        assertEquals(q.bytes() / 2304 * 2432, q.repackedBytes(), "attn_q is Q4_K, 4096 rows of 2048");
        TensorFootprint head = m.tensors().stream().filter(t -> t.part() == Part.OUTPUT).findFirst().orElseThrow();
        assertEquals(head.bytes() / 3360 * 3392, head.repackedBytes(), "the head is Q6_K, 151936 rows of 2048");
        long repackedAll = m.tensors().stream()
                .mapToLong(t -> t.part() == Part.TOKEN_EMBEDDING ? t.bytes() : t.repackedBytes()).sum();
        assertTrue(repackedAll > m.totalBytes() * 1.03, repackedAll + " against " + m.totalBytes());

        List<DeviceSpec> ram = List.of(DeviceSpec.cpu(64 * GIB, DDR));
        PlanRequest r = PlanRequest.defaults(4096);
        DeviceLoad asFile = Planner.plan(m, ram, r).device("cpu");
        DeviceLoad repacked = Planner.plan(m, ram, r.withCpuRepack(true)).device("cpu");
        assertEquals(m.totalBytes(), asFile.weightsBytes());
        assertEquals(repackedAll, repacked.weightsBytes());
        assertEquals(asFile.freeBytes() - (repackedAll - m.totalBytes()), repacked.freeBytes());
        assertTrue(repacked.weightsReadPerToken() > asFile.weightsReadPerToken());

        // attention on the GPU at the file's size; only the experts left in RAM are repacked
        List<DeviceSpec> hybrid = List.of(DeviceSpec.gpu(0, "GPU", 80 * GIB, 2000, HostLink.PCIE5_X16),
                DeviceSpec.cpu(64 * GIB, DDR));
        Placement p = Planner.plan(m, hybrid, r.withCpuMoe().withCpuRepack(true));
        Placement plain = Planner.plan(m, hybrid, r.withCpuMoe());
        assertEquals(plain.device("cuda:0").weightsBytes(), p.device("cuda:0").weightsBytes());
        long experts = m.tensors().stream().filter(t -> t.part() == Part.EXPERTS)
                .mapToLong(t -> t.repackedBytes() - t.bytes()).sum();
        assertTrue(experts > 0);
        assertEquals(plain.device("cpu").weightsBytes() + experts, p.device("cpu").weightsBytes());
        assertTrue(p.explain().contains(InterleavedRows.types() + " matrices repacked in RAM"), p.explain());
    }

    /** A further CPU instance takes layers as a GPU does, counted at what it holds: Q4_K matrices repacked. */
    @Test
    void aFurtherCpuInstanceIsFilledWithWhatItHoldsRepacked() {
        ModelFootprint m = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M");
        List<DeviceSpec> devices = List.of(DeviceSpec.cpuInstance(1, m.totalBytes() / 2, DDR),
                DeviceSpec.cpu(64 * GIB, DDR));
        Placement p = Planner.plan(m, devices, PlanRequest.defaults(4096).withCpuRepack(true));
        assertTrue(p.fits(), p.message());
        DeviceLoad one = p.device("cpu:1");
        assertFalse(one.attentionLayers().isEmpty());
        long held = m.tensors().stream().filter(t -> p.deviceOf(t.name()).equals("cpu:1"))
                .mapToLong(TensorFootprint::repackedBytes).sum();
        assertEquals(held, one.weightsBytes());
        assertTrue(one.freeBytes() >= 0, p.summary());
    }

    @Test
    void decodeEstimateIsBandwidthOverBytesRead() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(DeviceSpec.cpu(GIB, DDR)), request());
        long read = EMBEDDING / 1000 + 4 * (ATTENTION_BLOCK + FFN_NORM_AND_ROUTER + EXPERTS * 2 / 4) + OUTPUT_NORM
                + HEAD;
        assertEquals(read, p.device("cpu").weightsReadPerToken());
        assertEquals(DDR.bandwidthGBps() * 1e9 / read, p.estimatedDecodeTokensPerSecond(), 1e-9);
        double atFull = DDR.bandwidthGBps() * 1e9 / (read + (double) 4 * KV);
        assertEquals(atFull, p.estimatedDecodeTokensPerSecond(CTX), 1e-9);
    }

    @Test
    void decodeEstimateGrowsWithBandwidthAndShrinksWithCachedPositions() {
        ModelFootprint m = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M");
        long capacity = 12 * GIB;
        double previous = 0;
        for (double gbps : new double[] {300, 900, 2000, 4000}) {
            Placement p = Planner.plan(m, List.of(DeviceSpec.gpu(0, "GPU", capacity, gbps, HostLink.PCIE4_X16),
                    DeviceSpec.cpu(64 * GIB, DDR)), PlanRequest.defaults(4096));
            double tps = p.estimatedDecodeTokensPerSecond();
            assertTrue(tps > previous, gbps + " GB/s: " + tps + " <= " + previous);
            assertTrue(p.estimatedDecodeTokensPerSecond(4096) < tps);
            previous = tps;
        }
        double slowRam = Planner.plan(m, List.of(DeviceSpec.cpu(64 * GIB, SystemMemory.parse("ddr4-3200", 2))),
                PlanRequest.defaults(4096)).estimatedDecodeTokensPerSecond();
        double fastRam = Planner.plan(m, List.of(DeviceSpec.cpu(64 * GIB, SystemMemory.parse("ddr5-4800", 12))),
                PlanRequest.defaults(4096)).estimatedDecodeTokensPerSecond();
        assertTrue(fastRam > slowRam);
    }

    @Test
    void presetsCoverTheQwen3MoeModelsAtTheCommonMixes() {
        for (String model : List.of("qwen3-235b-a22b", "qwen3-30b-a3b")) {
            long previous = 0;
            for (String mix : List.of("Q2_K", "Q3_K_M", "Q4_K_M", "Q8_0")) {
                ModelFootprint f = ModelFootprint.preset(model + ":" + mix);
                assertTrue(f.totalBytes() > previous, model + ":" + mix);
                previous = f.totalBytes();
                assertEquals(128, f.experts());
                assertEquals(8, f.expertsUsed());
            }
        }
        assertEquals(94, ModelFootprint.preset("qwen3-235b-a22b:Q4_K_M").layers());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ModelFootprint.preset("qwen3-235b-a22b:Q9"));
        assertTrue(e.getMessage().contains("Q9"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ModelFootprint.preset("nope:Q4_K_M"));
        assertThrows(IllegalArgumentException.class, () -> ModelFootprint.preset("qwen3-235b-a22b"));
    }

    @Test
    void rangesAreCompact() {
        assertEquals("-", Placement.ranges(List.of()));
        assertEquals("0-2, 5, 7-8", Placement.ranges(List.of(0, 1, 2, 5, 7, 8)));
        assertEquals("3", Placement.ranges(List.of(3)));
        assertEquals("0-93", Placement.ranges(IntStream.range(0, 94).boxed().toList()));
    }

    @Test
    void explainNamesEveryDeviceAndTheVerdict() {
        ModelFootprint m = synthetic(4, false);
        Placement p = Planner.plan(m, List.of(gpu(0, GIB), DeviceSpec.cpu(GIB, DDR)), request());
        String text = p.explain();
        assertTrue(text.contains("cuda:0"), text);
        assertTrue(text.contains("cpu"), text);
        assertTrue(text.contains("fits: yes"), text);
        Placement no = Planner.plan(m, List.of(DeviceSpec.cpu(MIB, DDR)), request());
        assertTrue(no.explain().contains("fits: NO: cpu (DDR5-5600 x2) is short by"), no.explain());
        assertEquals(0, no.device("cpu").usableBytes(), "a margin above the capacity leaves nothing");
        assertEquals(-no.device("cpu").totalBytes(), no.device("cpu").freeBytes());
    }
}
