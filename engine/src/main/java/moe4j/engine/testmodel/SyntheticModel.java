package moe4j.engine.testmodel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;

import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufWriter;
import moe4j.gguf.HugePages;
import moe4j.gguf.TensorSource;
import moe4j.gguf.PhysicalMemory;

/**
 * A {@link TestModelGenerator} model built in memory instead of written to a file, so that full-size shapes can be
 * run where no such file fits on disk: the same metadata and the same tensor bytes as the file of the same shape,
 * mix and seed. Each tensor lives in its own off-heap allocation (never on the Java heap), filled in parallel;
 * {@link GgufFile#close()} frees them. The weights are held once, so they must fit in physical memory: that is
 * checked before anything is allocated.
 */
public final class SyntheticModel {

    /** Physical memory left besides the weights: the JVM itself, its heap, KV caches and workspaces. */
    static final long HOST_HEADROOM = 2L << 30;

    /** Data alignment of each tensor: a cache line, as the CPU kernels prefer (a file guarantees only 32). */
    private static final long TENSOR_ALIGNMENT = 64;

    /**
     * A preset shape with a tensor mix, as the command line names it: {@code PRESET[:TYPE]}, e.g.
     * {@code qwen3-235b-a22b:Q3_K_M}.
     *
     * @param preset the preset's name ({@link ModelShape#presets()})
     */
    public record Spec(String preset, ModelShape shape, TensorMix mix) {

        /**
         * Parses {@code PRESET[:TYPE]} (any case); without a type, {@code defaultMix}.
         *
         * @throws IllegalArgumentException naming the known presets or types when one is unknown
         */
        public static Spec parse(String spec, TensorMix defaultMix) {
            String s = spec.strip();
            int colon = s.indexOf(':');
            String preset = (colon < 0 ? s : s.substring(0, colon)).strip().toLowerCase(Locale.ROOT);
            TensorMix mix = colon < 0 ? defaultMix : TensorMix.parse(s.substring(colon + 1));
            return new Spec(preset, ModelShape.preset(preset), mix);
        }

        public Spec withLayers(int layers) {
            return new Spec(preset, shape.withLayers(layers), mix);
        }

        /** E.g. {@code synthetic-qwen3-235b-a22b-Q3_K_M}, with {@code -2L} when the layer count is not the preset's. */
        public String name() {
            boolean presetLayers = ModelShape.preset(preset).layers() == shape.layers();
            return "synthetic-" + preset + "-" + mix + (presetLayers ? "" : "-" + shape.layers() + "L");
        }
    }

    private SyntheticModel() {}

    /** Bytes of all the model's tensor data. */
    public static long weightBytes(ModelShape shape, TensorMix mix) {
        return TestModelGenerator.plan(shape, mix).stream().mapToLong(TestModelGenerator.TensorPlan::byteSize).sum();
    }

    /** The model of {@code spec}, named {@link Spec#name()}. */
    public static GgufFile build(Spec spec, long seed) {
        return build(spec.shape(), spec.mix(), seed, spec.name());
    }

    /**
     * Builds the model in memory; {@code name} stands for its file name in {@link GgufFile#paths()} and messages.
     *
     * @throws IllegalStateException when the weights do not fit in this machine's physical memory (before allocating)
     */
    public static GgufFile build(ModelShape shape, TensorMix mix, long seed, String name) {
        List<TestModelGenerator.TensorPlan> plan = TestModelGenerator.plan(shape, mix);
        TestModelGenerator.requireImplemented(plan, mix);
        requireFits(plan.stream().mapToLong(TestModelGenerator.TensorPlan::byteSize).sum(), PhysicalMemory.bytes(), name);
        GgufWriter w = new GgufWriter();
        TestModelGenerator.putMetadata(w, shape, mix, seed);
        Path path = Path.of(name);
        Arena arena = Arena.ofShared();
        try {
            // one block for all the weights, in huge pages where Linux gives them (as --no-mmap reads a file)
            long[] start = new long[plan.size() + 1];
            for (int i = 0; i < plan.size(); i++) {
                start[i + 1] = start[i] + (plan.get(i).byteSize() + TENSOR_ALIGNMENT - 1) / TENSOR_ALIGNMENT
                        * TENSOR_ALIGNMENT;
            }
            MemorySegment block = HugePages.allocateOrPlain(start[plan.size()], arena);
            MemorySegment[] data = new MemorySegment[plan.size()];
            for (int i = 0; i < data.length; i++) {
                data[i] = block.asSlice(start[i], plan.get(i).byteSize());
            }
            // each tensor's bytes depend only on the seed and the tensor, so the order of filling does not matter
            IntStream.range(0, data.length).parallel().forEach(i -> fill(plan.get(i), seed, data[i]));
            List<GgufTensor> tensors = new ArrayList<>(plan.size());
            long offset = 0;
            for (int i = 0; i < data.length; i++) {
                TestModelGenerator.TensorPlan t = plan.get(i);
                long[] dims = t.dims();
                long[] shape4 = Arrays.copyOf(dims, 4);
                Arrays.fill(shape4, dims.length, 4, 1L);
                tensors.add(new GgufTensor(t.name(), t.type(), shape4, dims.length, path, offset, data[i].asReadOnly()));
                offset += t.byteSize();
            }
            return GgufFile.inMemory(path, w.metadata(name), tensors, arena);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    /**
     * @throws IllegalStateException when {@code weightBytes} and {@link #HOST_HEADROOM} exceed {@code physicalBytes}
     */
    static void requireFits(long weightBytes, long physicalBytes, String name) {
        if (weightBytes > physicalBytes - HOST_HEADROOM) {
            throw new IllegalStateException(String.format(Locale.ROOT,
                    "%s needs %.1f GiB of memory for its weights (plus %.0f GiB headroom) but this machine has %.1f GiB;"
                            + " use fewer layers or a smaller type", name, gib(weightBytes), gib(HOST_HEADROOM),
                    gib(physicalBytes)));
        }
    }

    private static void fill(TestModelGenerator.TensorPlan t, long seed, MemorySegment target) {
        TensorSource source = TestModelGenerator.tensorSource(t, seed);
        try {
            source.fill(target);
        } catch (IOException e) {
            throw new UncheckedIOException("generating " + t.name(), e);
        }
    }

    private static double gib(long bytes) {
        return bytes / (double) (1L << 30);
    }
}
