package moe4j.cli;

import java.nio.file.Path;

import moe4j.engine.Device;
import moe4j.engine.LoadListener;
import moe4j.engine.LoadOptions;
import moe4j.kernels.KvCacheType;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/** The options of the commands that load a model and evaluate it: file, threads, context, KV cache type, device. */
final class ModelOptions {

    @Option(names = {"-m", "--model"}, paramLabel = "FILE", description = "GGUF model file")
    Path model;

    @Option(names = {"-t", "--threads"}, paramLabel = "N", defaultValue = "0",
            description = "CPU threads (default: one per processor)")
    int threads;

    @Option(names = {"-c", "--ctx-size"}, paramLabel = "N", defaultValue = "0",
            description = "context length in tokens (default: the model's, at most " + LoadOptions.DEFAULT_CONTEXT_CAP + ")")
    int contextLength;

    @Option(names = "--kv-type", paramLabel = "TYPE", defaultValue = "f16",
            description = "KV cache storage type: f32, f16 or q8_0 (default: ${DEFAULT-VALUE})")
    KvCacheType kvType;

    @Option(names = "--device", paramLabel = "DEVICE", defaultValue = "cpu",
            description = "where the model runs: cpu, cuda or cuda:N (default: ${DEFAULT-VALUE}; list: moe4j info --devices)")
    String device;

    @Option(names = Main.VERBOSE, description = "stack trace on errors")
    boolean verbose;

    /** The load options these flags ask for; invalid values are usage errors. */
    LoadOptions loadOptions(CommandLine cl, LoadListener listener) {
        if (threads < 0) {
            throw new CommandLine.ParameterException(cl, "--threads must be 0 (one per processor) or positive, got " + threads);
        }
        if (contextLength < 0) {
            throw new CommandLine.ParameterException(cl, "--ctx-size must be positive, got " + contextLength);
        }
        Device where;
        try {
            where = Device.parse(device);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, "--device: " + e.getMessage());
        }
        return LoadOptions.defaults().withThreads(threads).withContextLength(contextLength).withKvCacheType(kvType)
                .withListener(listener).withDevice(where);
    }

    /** The model file, required by commands without a demo model. */
    Path requireModel(CommandLine cl) {
        if (model == null) {
            throw new CommandLine.MissingParameterException(cl, cl.getCommandSpec().findOption("--model"),
                    "Missing required option: '--model=FILE'");
        }
        return model;
    }
}
