package moe4j.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import moe4j.engine.Device;
import moe4j.engine.LoadListener;
import moe4j.engine.LoadOptions;
import moe4j.engine.PlacementOptions;
import moe4j.engine.placement.TensorOverride;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.InterleavedRows;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * The options of the commands that load a model and evaluate it: file, threads, context, KV cache type, device, and
 * the placement across devices.
 */
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

    @Option(names = "--devices", paramLabel = "LIST", split = ",",
            description = "run across these devices, e.g. cuda:0,cuda:1,cpu; cpu may repeat (cpu,cpu: two CPU backends,"
                    + " the second named cpu:1); the CPU (system RAM, holding the token embedding) is always one")
    List<String> devices = new ArrayList<>();

    @Option(names = "--split", paramLabel = "LIST", split = ",",
            description = "proportions of the layers per listed device, e.g. 3,1 (or one per device besides the CPU);"
                    + " default: by the memory each has")
    List<Double> split = new ArrayList<>();

    @Option(names = {"-ngl", "--gpu-layers"}, paramLabel = "N",
            description = "put the last N layers on the devices other than the CPU (default: as many as fit)")
    Integer gpuLayers;

    @Option(names = "--cpu-moe", description = "keep every layer's experts on the CPU, attention on the other devices")
    boolean cpuMoe;

    @Option(names = "--n-cpu-moe", paramLabel = "N", description = "keep the experts of the first N layers on the CPU")
    Integer nCpuMoe;

    @Option(names = {"-ot", "--override-tensor"}, paramLabel = "REGEX=DEVICE",
            description = "put tensors whose name matches REGEX on DEVICE (cpu, cpu:N, cuda:N; also CPU, CUDA0);"
                    + " repeatable, first match wins; e.g. exps=cpu")
    List<String> overrides = new ArrayList<>();

    @Option(names = "--stage-batch", paramLabel = "N", defaultValue = "" + PlacementOptions.DEFAULT_STAGE_BATCH,
            description = "batches of at least N tokens run experts placed in system RAM on their layer's GPU, the"
                    + " weights copied there for the batch (llama.cpp's op offload); 0 never (default: ${DEFAULT-VALUE})")
    int stageBatch;

    @Option(names = "--fit", description = "place automatically (the default across devices); with one --device, what"
            + " does not fit on it stays on the CPU")
    boolean fit;

    @Option(names = "--no-mmap", description = "read the model into memory instead of mapping it (as llama.cpp's"
            + " --no-mmap): loading takes longer and a copy of the file in RAM; on Linux, in huge pages, generation is"
            + " a few percent faster")
    boolean noMmap;

    @Option(names = {"-nr", "--no-repack"}, description = "multiply the weights as the file holds them (as llama.cpp's"
            + " --no-repack): by default the CPU repacks " + InterleavedRows.TYPES
            + " matrices (and Q3_K's where its vectors are 256 bits) at load into groups of 16 rows, which takes"
            + " their size again in memory and makes generation faster")
    boolean noRepack;

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
                .withListener(listener).withDevice(where).withPlacement(placement(cl)).withInMemory(noMmap)
                .withRepack(!noRepack);
    }

    /**
     * The checks of the placement flags that the commands running a model and {@code plan} share, each naming its flag.
     *
     * @throws IllegalArgumentException for the first flag out of range
     */
    static void checkPlacementFlags(Integer gpuLayers, Integer nCpuMoe, boolean cpuMoe, int stageBatch) {
        if (gpuLayers != null && gpuLayers < 0) {
            throw new IllegalArgumentException("--gpu-layers must not be negative, got " + gpuLayers);
        }
        if (nCpuMoe != null && nCpuMoe < 0) {
            throw new IllegalArgumentException("--n-cpu-moe must not be negative, got " + nCpuMoe);
        }
        if (cpuMoe && nCpuMoe != null) {
            throw new IllegalArgumentException("--cpu-moe and --n-cpu-moe exclude each other");
        }
        if (stageBatch < 0 || stageBatch == 1) {
            throw new IllegalArgumentException("--stage-batch must be 0 (never) or at least 2, got " + stageBatch);
        }
    }

    private PlacementOptions placement(CommandLine cl) {
        try {
            if (!devices.isEmpty() && cl.getParseResult().hasMatchedOption("--device")) {
                throw new IllegalArgumentException("--device and --devices exclude each other");
            }
            checkPlacementFlags(gpuLayers, nCpuMoe, cpuMoe, stageBatch);
            PlacementOptions p = PlacementOptions.NONE
                    .withStageBatch(stageBatch)
                    .withDevices(devices.stream().map(Device::parse).toList())
                    .withSplit(split)
                    .withOverrides(overrides.stream().map(TensorOverride::parse).toList())
                    .withFit(fit);
            if (gpuLayers != null) {
                p = p.withGpuLayers(gpuLayers);
            }
            return cpuMoe ? p.withCpuMoe() : nCpuMoe != null ? p.withNCpuMoe(nCpuMoe) : p;
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
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
