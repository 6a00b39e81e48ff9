package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.Placement;
import moe4j.gguf.Fixtures;
import moe4j.kernels.cuda.GpuTests;

/**
 * A GPU and the CPU together: {@code cuda:0,cpu} with every layer's experts on the CPU ({@code --cpu-moe}), and with
 * the layers split between the two, against llama.cpp's logits (the engine's bounds) and the CPU backend's (the
 * bounds of {@link CudaReferenceTest}), through the batched and the one-token paths.
 */
@Tag(GpuTests.TAG)
class CudaHybridTest {

    private static final List<Device> GPU_AND_CPU = List.of(Device.cuda(0), Device.CPU);

    @BeforeEach
    void requireGpu() {
        GpuTests.assumeCuda();
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-qwen3moe-Q4_K_M", "tiny-qwen3moe-F32", "tiny-qwen3-tied-F16"})
    void expertsOnTheCpuAttentionOnTheGpu(String model) throws IOException {
        check(model, PlacementOptions.NONE.withDevices(GPU_AND_CPU).withCpuMoe(), p -> {
            for (LayerPlacement l : p.layers()) {
                assertEquals("cuda:0", l.attention(), "attention of layer " + l.layer() + "\n" + p.summary());
                assertEquals(p.model().isMoe() ? "cpu" : "cuda:0", l.experts(), "experts of layer " + l.layer());
            }
        });
    }

    @ParameterizedTest
    @ValueSource(strings = {"tiny-qwen3moe-Q4_K_M", "tiny-qwen3-tied-F16"})
    void layersSplitBetweenTheCpuAndTheGpu(String model) throws IOException {
        check(model, PlacementOptions.NONE.withDevices(GPU_AND_CPU).withSplit(List.of(1.0, 1.0)), p -> {
            assertEquals("cpu", p.layers().getFirst().attention(), p.summary());
            assertEquals("cuda:0", p.layers().getLast().attention(), p.summary());
        });
    }

    private static void check(String model, PlacementOptions placement, java.util.function.Consumer<Placement> where)
            throws IOException {
        Path modelFile = Fixtures.model(model + ".gguf");
        Path refFile = Fixtures.fixturesDir().resolve("reference").resolve(model + ".p1.bin");
        assumeTrue(Files.isRegularFile(refFile), "reference " + refFile + " not found: skipping");
        ReferenceLogits ref = ReferenceLogits.read(refFile);
        int[] tokens = ref.tokens();
        LoadOptions options = LoadOptions.defaults().withThreads(2);

        float[][] cpu;
        try (Model m = Model.load(modelFile, options); Session s = m.newSession()) {
            cpu = s.evaluateAll(tokens);
        }
        float[][] batched;
        float[][] oneByOne = new float[tokens.length][];
        try (Model m = Model.load(modelFile, options.withPlacement(placement))) {
            where.accept(m.placement().orElseThrow());
            try (Session s = m.newSession()) {
                batched = s.evaluateAll(tokens);
            }
            try (Session s = m.newSession()) {
                for (int i = 0; i < tokens.length; i++) {
                    oneByOne[i] = s.evaluate(new int[] {tokens[i]});
                }
            }
        }
        boolean floatModel = LlamaCppReferenceTest.isFloatModel(model);
        double klBar = floatModel ? 1e-3 : 0.05;
        double top1Bar = floatModel ? 0.97 : 0.85;
        for (var e : List.of(java.util.Map.entry("batched vs llama.cpp", LogitStats.compare(ref.logits(), batched)),
                java.util.Map.entry("one-by-one vs llama.cpp", LogitStats.compare(ref.logits(), oneByOne)),
                java.util.Map.entry("batched vs the CPU backend", LogitStats.compare(cpu, batched)))) {
            LogitStats st = e.getValue();
            assertTrue(st.meanKl() <= klBar, model + " " + e.getKey() + ": mean KL " + st.meanKl() + " > " + klBar);
            assertTrue(st.top1() >= top1Bar, model + " " + e.getKey() + ": top-1 " + st.top1() + " < " + top1Bar);
        }
        LogitStats paths = LogitStats.compare(batched, oneByOne);
        double pathsKlBar = LlamaCppReferenceTest.gpuPathsKlBar(model);
        double pathsTop1Bar = LlamaCppReferenceTest.gpuPathsTop1Bar(model);
        assertTrue(paths.meanKl() <= pathsKlBar, model + " batched vs one-by-one: mean KL " + paths.meanKl());
        assertTrue(paths.top1() >= pathsTop1Bar, model + " batched vs one-by-one: top-1 " + paths.top1());
    }
}
