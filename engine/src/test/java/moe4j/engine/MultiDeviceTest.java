package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.placement.DeviceLoad;
import moe4j.engine.placement.DeviceSpec;
import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.ModelFootprint;
import moe4j.engine.placement.Placement;
import moe4j.engine.placement.PlanRequest;
import moe4j.engine.placement.SystemMemory;
import moe4j.engine.placement.TensorOverride;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.gguf.Fixtures;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.StepRecorder;
import moe4j.kernels.cpu.CpuBackend;

/**
 * A model placed across several CPU backend instances computes what one CPU backend does, bit for bit: the CPU
 * backend is deterministic and crossing between backends copies float32 rows unchanged.
 */
class MultiDeviceTest {

    @TempDir
    static Path dir;
    static Path moe;
    static Path dense;
    static int[] tokens;

    private static final List<Device> TWO_CPUS = List.of(Device.CPU, Device.CPU);

    @BeforeAll
    static void models() {
        moe = TestModels.generate(dir, ModelShape.tiny().withLayers(4), TensorMix.Q8_0, 11);
        dense = TestModels.generate(dir, ModelShape.tinyDense().withLayers(3), TensorMix.Q4_K_M, 11);
        Random r = new Random(5);
        tokens = new int[23];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = r.nextInt(ModelShape.tiny().vocab());
        }
    }

    private static LoadOptions base() {
        // batches of 8: several batches per prompt, and a last one shorter
        return LoadOptions.defaults().withThreads(2).withContextLength(64).withBatchSize(8);
    }

    /** Logits of every token through the batched path, then one token at a time in a second session. */
    private record Run(float[][] batched, float[][] oneByOne, Placement placement) {}

    private static Run run(Path model, LoadOptions options) throws IOException {
        try (Model m = Model.load(model, options)) {
            return run(m);
        }
    }

    private static Run run(Model m) {
        float[][] batched;
        try (Session s = m.newSession()) {
            batched = s.evaluateAll(tokens);
        }
        float[][] oneByOne = new float[tokens.length][];
        try (Session s = m.newSession()) {
            for (int i = 0; i < tokens.length; i++) {
                oneByOne[i] = s.evaluate(new int[] {tokens[i]});
            }
        }
        return new Run(batched, oneByOne, m.placement().orElse(null));
    }

    private static void assertSameLogits(Run expected, Run actual, String what) {
        for (int i = 0; i < tokens.length; i++) {
            assertArrayEquals(expected.batched[i], actual.batched[i], 0f, what + ", batched, position " + i);
            assertArrayEquals(expected.oneByOne[i], actual.oneByOne[i], 0f, what + ", one by one, position " + i);
        }
    }

    @Test
    void aSplitOverTwoCpuBackendsEqualsOneCpu() throws IOException {
        for (Path model : new Path[] {moe, dense}) {
            Run single = run(model, base());
            assertEquals(null, single.placement, "a single device is not planned");
            Run split = run(model, base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS)
                    .withSplit(List.of(1.0, 1.0))));
            Placement p = split.placement;
            int layers = p.layers().size();
            for (LayerPlacement l : p.layers()) {
                String expected = l.layer() < Math.round(layers / 2.0) ? "cpu" : "cpu:1";
                assertEquals(expected, l.attention(), "attention of layer " + l.layer() + "\n" + p.summary());
                assertEquals(expected, l.experts(), "FFN of layer " + l.layer());
            }
            assertEquals("cpu", p.deviceOf("token_embd.weight"));
            assertSameLogits(single, split, model.getFileName() + " on cpu,cpu split 1,1");
        }
    }

    @Test
    void attentionAndExpertsOnDifferentCpuBackendsEqualOneCpu() throws IOException {
        Run single = run(moe, base());
        Run hybrid = run(moe, base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS).withCpuMoe()));
        for (LayerPlacement l : hybrid.placement.layers()) {
            assertEquals("cpu:1", l.attention(), "attention of layer " + l.layer() + "\n" + hybrid.placement.summary());
            assertEquals("cpu", l.experts(), "experts of layer " + l.layer());
        }
        assertSameLogits(single, hybrid, "--cpu-moe over cpu,cpu");
    }

    /**
     * With {@code --cpu-moe} over two CPU backends, the attention's of which says it copies weights in (as a GPU does),
     * batches of at least 8 tokens run each layer's experts on the attention's backend (cpu:1), their weights staged
     * there, shorter ones (the prompt's last batch of 7, single tokens) where the experts lie: the same logits.
     */
    @Test
    void largeBatchesRunTheExpertsOnTheAttentionsBackendAndEqualOneCpu() throws IOException {
        Run single = run(moe, base());
        List<int[]> staged = new ArrayList<>();   // per backend in the order opened, the tensors staged on it
        LoadOptions options = base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS).withCpuMoe()
                .withStageBatch(8));
        Run hybrid;
        try (Model m = Model.load(GgufFile.open(moe), options, (device, o) -> {
            // the second backend (cpu:1, the attention's) says it copies weights in, as a GPU does, so that the
            // graph stages blocks on it; the first (cpu, the experts') reads them in place
            Backend cpu = new CpuBackend(o.effectiveThreads());
            int[] count = new int[1];
            boolean copiesIn = !staged.isEmpty();
            staged.add(count);
            return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                    (proxy, method, args) -> {
                        switch (method.getName()) {
                            case "stagedBytes" -> {
                                return copiesIn ? ((GgufTensor) args[0]).byteSize() : 0L;
                            }
                            case "stage" -> count[0]++;
                            default -> { }
                        }
                        try {
                            return method.invoke(cpu, args);
                        } catch (InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
        })) {
            hybrid = run(m);
            assertTrue(m.placement().isPresent(), "a placement across cpu and cpu:1");
        }
        assertSameLogits(single, hybrid, "--cpu-moe over cpu,cpu, batches of 8 staged");
        // two full batches of 8 in 23 tokens, 4 layers, 5 tensors each (FFN norm, router, gate, up, down), all on
        // the attention's backend, cpu:1: the second listed, the second opened
        for (LayerPlacement l : hybrid.placement.layers()) {
            assertEquals("cpu:1", l.attention(), "attention of layer " + l.layer());
        }
        assertEquals(2, staged.size());
        assertEquals(0, staged.get(0)[0], "tensors staged on cpu");
        assertEquals(2 * 4 * 5, staged.get(1)[0], "tensors staged on cpu:1");
    }

    /**
     * A decode step across backends runs as segments, the operations on one backend between two copies of the
     * residual stream, each through its own recorder (which a GPU replays as a graph): every token runs the same
     * segments on the same backends, consecutive segments on different backends, and the result is one CPU's.
     */
    @Test
    void aDecodeStepAcrossBackendsRunsTheSameSegmentsEveryToken() throws IOException {
        Run single = run(moe, base());
        List<List<String>> perToken = new ArrayList<>();
        List<String> current = new ArrayList<>();
        int[] opened = new int[1];
        LoadOptions options = base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS).withCpuMoe());
        float[][] oneByOne = new float[tokens.length][];
        try (Model m = Model.load(GgufFile.open(moe), options, (device, o) -> {
            Backend cpu = new CpuBackend(o.effectiveThreads());
            String name = opened[0]++ == 0 ? "cpu" : "cpu:1";
            StepRecorder recorder = (key, token, position, step) -> {
                current.add(name + " " + key);
                step.run();
            };
            return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                    (proxy, method, args) -> {
                        if (method.getName().equals("stepRecorder")) {
                            return recorder;
                        }
                        try {
                            return method.invoke(cpu, args);
                        } catch (InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
        }); Session s = m.newSession()) {
            for (int i = 0; i < tokens.length; i++) {
                oneByOne[i] = s.evaluate(new int[] {tokens[i]});
                perToken.add(List.copyOf(current));
                current.clear();
            }
        }
        for (int i = 0; i < tokens.length; i++) {
            assertArrayEquals(single.oneByOne[i], oneByOne[i], 0f, "token " + i);
            assertEquals(perToken.getFirst(), perToken.get(i), "the segments of token " + i);
        }
        List<String> segments = perToken.getFirst();
        // embedding (cpu), then per layer attention (cpu:1) and experts (cpu), then the head (cpu:1)
        assertEquals(1 + 2 * 4 + 1, segments.size(), segments.toString());
        for (int i = 1; i < segments.size(); i++) {
            assertTrue(!segments.get(i).split(" ")[0].equals(segments.get(i - 1).split(" ")[0]),
                    "consecutive segments on one backend: " + segments);
        }
    }

    @Test
    void tensorOverridesMoveBlocksAndKeepTheResult() throws IOException {
        Run single = run(moe, base());
        // everything on cpu:1 but layer 2's experts and the LM head, pinned back to cpu
        Run pinned = run(moe, base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS).withOverrides(List.of(
                TensorOverride.parse("blk\\.2\\.ffn_.*_exps=cpu"), TensorOverride.parse("^output\\.=CPU")))));
        Placement p = pinned.placement;
        assertEquals("cpu", p.layers().get(2).experts(), p.summary());
        assertEquals("cpu:1", p.layers().get(2).attention(), p.summary());
        assertEquals("cpu:1", p.layers().get(3).experts(), p.summary());
        assertEquals("cpu", p.deviceOf("output.weight"), p.summary());
        assertSameLogits(single, pinned, "overrides over cpu,cpu");
    }

    @Test
    void aTiedLmHeadAwayFromTheEmbeddingAndHiddenStatesMatch() throws IOException {
        LoadOptions placed = base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS).withSplit(List.of(1.0, 2.0)));
        float[][] expected = new float[tokens.length][ModelShape.tinyDense().embd()];
        float[][] actual = new float[tokens.length][ModelShape.tinyDense().embd()];
        try (Model m = Model.load(dense, base()); Session s = m.newSession()) {
            s.evaluateHidden(tokens, 0, tokens.length, expected);
        }
        try (Model m = Model.load(dense, placed); Session s = m.newSession()) {
            Placement p = m.placement().orElseThrow();
            assertTrue(p.device("cpu:1").globals().stream().anyMatch(g -> g.contains("LM head copy")), p.summary());
            assertTrue(m.backendDescription().contains("cpu:1 = cpu (2 threads)"), m.backendDescription());
            s.evaluateHidden(tokens, 0, tokens.length, actual);
        }
        for (int i = 0; i < tokens.length; i++) {
            assertArrayEquals(expected[i], actual[i], 0f, "hidden state " + i);
        }
        assertSameLogits(run(dense, base()), run(dense, placed), "tied head on cpu:1");
    }

    @Test
    void sessionsOfAPlacedModelCacheEachBackendsLayersAndCanBeTruncated() throws IOException {
        try (Model single = Model.load(moe, base());
             Model placed = Model.load(moe, base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS)
                     .withSplit(List.of(3.0, 1.0))));
             Session a = single.newSession();
             Session b = placed.newSession()) {
            a.evaluate(tokens);
            b.evaluate(tokens);
            a.truncate(10);
            b.truncate(10);
            int[] next = {tokens[3], tokens[4]};
            assertArrayEquals(a.evaluate(next), b.evaluate(next), 0f, "continuing after truncation");
        }
    }

    @Test
    void aPlacementThatCannotBeMadeFailsWithThePlannersMessage() {
        LoadOptions unknown = base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS)
                .withOverrides(List.of(TensorOverride.parse("exps=cuda:3"))));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Model.load(moe, unknown));
        assertTrue(e.getMessage().contains("names device cuda:3, which is not one of: cpu, cpu:1"), e.getMessage());

        LoadOptions badSplit = base().withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS)
                .withSplit(List.of(1.0, 1.0, 1.0)));
        e = assertThrows(IllegalArgumentException.class, () -> Model.load(moe, badSplit));
        assertTrue(e.getMessage().contains("expected one per listed device (cpu, cpu:1) or one per device besides"
                + " cpu (1)"), e.getMessage());
    }

    @Test
    void aPlacementThatDoesNotFitIsRefusedNamingTheDevice() throws IOException {
        ModelFootprint footprint;
        try (GgufFile f = GgufFile.open(moe)) {
            footprint = ModelFootprint.of(f);
        }
        List<String> names = DevicePlan.names(TWO_CPUS);
        assertEquals(List.of("cpu", "cpu:1"), names);
        PlanRequest request = DevicePlan.request(PlacementOptions.NONE.withSplit(List.of(1.0, 1.0)), names, 2, 4, 64,
                KvCacheType.F16, 8).withMargin(0);
        long tiny = 1 << 16;
        List<DeviceSpec> specs = List.of(DeviceSpec.cpu(1L << 30, SystemMemory.DEFAULT),
                DeviceSpec.cpuInstance(1, tiny, SystemMemory.DEFAULT));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DevicePlan.plan(footprint, specs, request));
        assertTrue(e.getMessage().startsWith("the placement of " + moe.getFileName() + " does not fit: cpu:1 ("),
                e.getMessage());
        assertTrue(e.getMessage().contains("is short by"), e.getMessage());
    }

    /**
     * Where the CPUs' repacked copies of the Q4_K matrices are what does not fit, the file's bytes are planned (and
     * the model is then loaded without repacking); where those do not fit either, the refusal stands. The layers and
     * their experts are fixed here ({@code --split 1,1 --n-cpu-moe 0}), so that nothing else can make room.
     */
    @Test
    void whereOnlyTheRepackedCopyDoesNotFitTheFilesBytesArePlanned() {
        ModelFootprint footprint = ModelFootprint.preset("qwen3-30b-a3b:Q4_K_M");
        List<String> names = DevicePlan.names(TWO_CPUS);
        PlanRequest request = DevicePlan.request(PlacementOptions.NONE.withSplit(List.of(1.0, 1.0)).withNCpuMoe(0),
                names, 2, 48, 64, KvCacheType.F16, 8).withMargin(0).withCpuRepack(true);
        List<DeviceSpec> roomy = List.of(DeviceSpec.cpu(1L << 40, SystemMemory.DEFAULT),
                DeviceSpec.cpuInstance(1, 1L << 40, SystemMemory.DEFAULT));
        DeviceLoad repacked = DevicePlan.plan(footprint, roomy, request).device("cpu:1");
        DeviceLoad asFile = DevicePlan.plan(footprint, roomy, request.withCpuRepack(false)).device("cpu:1");
        long fileNeeds = asFile.weightsBytes() + asFile.kvBytes() + asFile.scratchBytes();
        assertTrue(repacked.weightsBytes() > asFile.weightsBytes() + (100L << 20), repacked.weightsBytes() + " against "
                + asFile.weightsBytes());

        List<DeviceSpec> tight = List.of(roomy.getFirst(), DeviceSpec.cpuInstance(1, fileNeeds, SystemMemory.DEFAULT));
        Placement p = DevicePlan.plan(footprint, tight, request);
        assertTrue(p.fits(), p.message());
        assertFalse(p.request().cpuRepack());
        assertEquals(0, p.device("cpu:1").freeBytes());

        List<DeviceSpec> tooSmall = List.of(roomy.getFirst(),
                DeviceSpec.cpuInstance(1, fileNeeds - 1, SystemMemory.DEFAULT));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DevicePlan.plan(footprint, tooSmall, request));
        assertTrue(e.getMessage().contains("cpu:1 (") && e.getMessage().contains("is short by"), e.getMessage());
    }

    @Test
    void aSplitWithTheCpusShareBecomesTheLayersOfTheOtherDevices() {
        PlacementOptions o = PlacementOptions.NONE.withSplit(List.of(3.0, 1.0));
        // cuda:0 listed first, the CPU second: 3/4 of 8 layers on the GPU
        PlanRequest r = DevicePlan.request(o, List.of("cuda:0", "cpu"), 2, 8, 64, KvCacheType.F16, 8);
        assertEquals(6, r.gpuLayers());
        assertEquals(List.of(3.0), r.split(), "the GPUs' own proportions");
        // one proportion per GPU is llama.cpp's --tensor-split, passed on as it is
        r = DevicePlan.request(o, List.of("cuda:0", "cuda:1", "cpu"), 2, 8, 64, KvCacheType.F16, 8);
        assertEquals(PlanRequest.AUTO, r.gpuLayers());
        assertEquals(List.of(3.0, 1.0), r.split());
        assertThrows(IllegalArgumentException.class, () -> DevicePlan.request(o.withGpuLayers(2),
                List.of("cpu", "cpu:1"), 2, 8, 64, KvCacheType.F16, 8));
    }

    @Test
    void aFixtureModelOnTwoCpuBackendsMatchesOneCpuAndLlamaCpp() throws IOException {
        String model = "tiny-qwen3moe-Q4_K_M";
        Path modelFile = Fixtures.model(model + ".gguf");
        Path refFile = Fixtures.fixturesDir().resolve("reference").resolve(model + ".p1.bin");
        assumeTrue(Files.isRegularFile(refFile), "reference " + refFile + " not found: skipping");
        ReferenceLogits ref = ReferenceLogits.read(refFile);
        LoadOptions options = LoadOptions.defaults().withThreads(2);
        float[][] single;
        try (Model m = Model.load(modelFile, options); Session s = m.newSession()) {
            single = s.evaluateAll(ref.tokens());
        }
        float[][] placed;
        try (Model m = Model.load(modelFile, options.withPlacement(PlacementOptions.NONE.withDevices(TWO_CPUS)
                .withSplit(List.of(1.0, 1.0))));
             Session s = m.newSession()) {
            placed = s.evaluateAll(ref.tokens());
        }
        for (int i = 0; i < single.length; i++) {
            assertArrayEquals(single[i], placed[i], 0f, "position " + i + ": cpu,cpu vs cpu");
        }
        LogitStats st = LogitStats.compare(ref.logits(), placed);
        assertTrue(st.meanKl() <= 0.05, "cpu,cpu vs llama.cpp: mean KL " + st.meanKl());
        assertTrue(st.top1() >= 0.85, "cpu,cpu vs llama.cpp: top-1 agreement " + st.top1());
    }
}
