package moe4j.engine;

import java.io.IOException;
import java.nio.file.Path;

import moe4j.engine.testmodel.SyntheticModel;
import moe4j.engine.testmodel.TensorMix;

/**
 * The model a benchmark main ({@link GpuBench}, {@link GpuProfile}) runs: a GGUF file, or
 * {@code synthetic:PRESET[:TYPE][/LAYERS]} built in memory as {@code bench --synthetic} builds it (make-test-model's
 * default seed, so the same bytes as the file it would write), which spares a GPU machine writing and reading
 * back a file of tens of GB.
 */
final class BenchModels {

    private static final String SYNTHETIC = "synthetic:";
    /** make-test-model's default seed. */
    private static final long SEED = 42;

    private BenchModels() {}

    static Model load(String source, LoadOptions options) throws IOException {
        if (!source.startsWith(SYNTHETIC)) {
            return Model.load(Path.of(source), options);
        }
        String spec = source.substring(SYNTHETIC.length());
        int slash = spec.indexOf('/');
        SyntheticModel.Spec s = SyntheticModel.Spec.parse(slash < 0 ? spec : spec.substring(0, slash),
                TensorMix.Q4_K_M);
        if (slash >= 0) {
            s = s.withLayers(Integer.parseInt(spec.substring(slash + 1).strip()));
        }
        options.requireUsableDevices();
        return Model.load(SyntheticModel.build(s, SEED), options);
    }

    /** The name a benchmark prints for {@code source}. */
    static String name(String source) {
        return source.startsWith(SYNTHETIC) ? source : Path.of(source).getFileName().toString();
    }
}
