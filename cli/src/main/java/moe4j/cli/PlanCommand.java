package moe4j.cli;

import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import moe4j.engine.LoadOptions;
import moe4j.engine.placement.ByteSize;
import moe4j.engine.placement.DeviceLoad;
import moe4j.engine.placement.DeviceSpec;
import moe4j.engine.placement.HostLink;
import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.ModelFootprint;
import moe4j.engine.placement.PlanRequest;
import moe4j.engine.placement.Placement;
import moe4j.engine.placement.Planner;
import moe4j.engine.placement.SystemMemory;
import moe4j.engine.placement.TensorOverride;
import moe4j.gguf.GgufFile;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.quant.InterleavedRows;
import moe4j.gguf.PhysicalMemory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j plan}: where a model's layers and experts would go on given GPUs and RAM, and how fast it would decode. */
@Command(name = "plan", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Plans where a model's layers and experts go on GPUs and system RAM.",
                "Whether it fits, the memory per device (weights, KV cache, scratch), and the decode",
                "speed the memory bandwidths allow (a ceiling). Nothing is loaded or run.",
                "Sizes take binary units: 24G = 24GB = 24GiB = 24 x 2^30 bytes; 512M; 1.5T."})
final class PlanCommand implements Callable<Integer> {

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "FILE|PRESET:TYPE",
            description = "a GGUF model, or a preset shape with a tensor mix, e.g. qwen3-235b-a22b:Q4_K_M"
                    + " (presets as make-test-model's --preset, types as its --type)")
    private String model;

    @Option(names = "--gpu", paramLabel = "LIST", split = ",",
            description = "the GPUs, cuda:0 first: a card (" + "rtx3090, rtx3090ti, rtx4090, rtx5090, a100-40g, a100-80g,"
                    + " h100-pcie, h100, h200), CARD:FREE (e.g. rtx4090:22G), or a size (24G, bandwidth --gpu-bw);"
                    + " NxENTRY repeats, e.g. 3xrtx3090")
    private List<String> gpus = new ArrayList<>();

    @Option(names = "--gpu-bw", paramLabel = "GB/s", defaultValue = "936",
            description = "memory bandwidth of GPUs given only by size (default: ${DEFAULT-VALUE}, an RTX 3090's)")
    private double gpuBandwidth;

    @Option(names = "--link", paramLabel = "LINK",
            description = "host link of every GPU: pcie3, pcie4 or pcie5 (default: the card's; pcie4 for a size)")
    private String link;

    @Option(names = "--ram", paramLabel = "SIZE", converter = SizeConverter.class,
            description = "system RAM moe4j may use (default: this machine's physical memory)")
    private Long ram;

    @Option(names = "--ram-type", paramLabel = "DDRn-SPEED", defaultValue = "ddr5-5600",
            description = "system memory type, e.g. ddr4-3200, ddr5-6000 (default: ${DEFAULT-VALUE})")
    private String ramType;

    @Option(names = "--ram-channels", paramLabel = "N", defaultValue = "2",
            description = "populated memory channels (default: ${DEFAULT-VALUE}; servers have 8 or 12)")
    private int ramChannels;

    @Option(names = "--ram-bw", paramLabel = "GB/s", description = "system memory bandwidth (overrides --ram-type and"
            + " --ram-channels)")
    private Double ramBandwidth;

    @Option(names = {"-c", "--ctx", "--ctx-size"}, paramLabel = "N",
            description = "context length (default: the model's, at most " + LoadOptions.DEFAULT_CONTEXT_CAP + ")")
    private Integer ctx;

    @Option(names = {"--kv", "--kv-type"}, paramLabel = "TYPE", defaultValue = "f16",
            description = "KV cache type: f16, f32 or q8_0 (default: ${DEFAULT-VALUE})")
    private KvCacheType kvType;

    @Option(names = {"-b", "--batch-size"}, paramLabel = "N", defaultValue = "" + LoadOptions.DEFAULT_BATCH_SIZE,
            description = "tokens per prompt-processing step, which sizes the scratch buffers (default: ${DEFAULT-VALUE})")
    private int batchSize;

    @Option(names = "--split", paramLabel = "LIST", split = ",",
            description = "proportions of the GPU layers per GPU, e.g. 3,1 (default: by the memory each has left)")
    private List<Double> split = new ArrayList<>();

    @Option(names = {"-ngl", "--gpu-layers"}, paramLabel = "N",
            description = "put the last N layers on the GPUs (default: as many as fit)")
    private Integer gpuLayers;

    @Option(names = "--cpu-moe", description = "keep every layer's experts in system RAM, attention on the GPUs")
    private boolean cpuMoe;

    @Option(names = "--n-cpu-moe", paramLabel = "N", description = "keep the experts of the first N layers in system RAM")
    private Integer nCpuMoe;

    @Option(names = "--stage-batch", paramLabel = "N", defaultValue = "" + PlanRequest.DEFAULT_STAGE_BATCH,
            description = "batches of at least N tokens copy experts kept in system RAM to their layer's GPU, which"
                    + " keeps room for two blocks; 0 never, that room going to experts (default: ${DEFAULT-VALUE})")
    private int stageBatch;

    @Option(names = {"-ot", "--override-tensor"}, paramLabel = "REGEX=DEVICE",
            description = "put tensors whose name matches REGEX on DEVICE (cpu, cuda:N; also llama.cpp's CPU, CUDA0);"
                    + " repeatable, first match wins; e.g. exps=cpu")
    private List<String> overrides = new ArrayList<>();

    @Option(names = "--margin", paramLabel = "SIZE", converter = SizeConverter.class,
            description = "memory kept free on every device (default: 512M)")
    private Long margin;

    @Option(names = "--repack", negatable = true, description = "plan system RAM with the CPU's repacked copy of "
            + InterleavedRows.TYPES + " matrices (1-5.6%% larger than the file's; Q3_K's too, 5.5%%, on a CPU with 256-bit"
            + " vectors), as the engine makes it by default on a CPU with 512- or 256-bit vectors; --no-repack plans the"
            + " file's bytes (default: as this machine would run)")
    private Boolean repack;

    @Option(names = "--json", description = "print one JSON object instead of text")
    private boolean json;

    @Option(names = Main.VERBOSE, description = "stack trace on errors")
    private boolean verbose;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        ModelFootprint footprint = footprint();
        List<DeviceSpec> devices = devices(cl);
        PlanRequest request = request(cl, footprint);
        Placement placement;
        try {
            placement = Planner.plan(footprint, devices, request);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
        PrintWriter out = cl.getOut();
        if (json) {
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(toJson(placement)));
        } else {
            out.print(placement.explain());
        }
        out.flush();
        return 0;
    }

    /** A file when it exists, otherwise a PRESET:TYPE (a usage error if it is neither). */
    private ModelFootprint footprint() throws Exception {
        Path path = Path.of(model);
        if (Files.exists(path) || !model.contains(":") || model.toLowerCase(Locale.ROOT).endsWith(".gguf")) {
            try (GgufFile file = GgufFile.open(path)) {
                return ModelFootprint.of(file);
            }
        }
        try {
            return ModelFootprint.preset(model);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--model: " + e.getMessage()
                    + " (or a GGUF file; no file " + model + " exists)", e);
        }
    }

    private List<DeviceSpec> devices(CommandLine cl) {
        List<DeviceSpec> devices = new ArrayList<>();
        try {
            HostLink forced = link == null ? null : HostLink.parse(link);
            if (!(gpuBandwidth > 0)) {
                throw new IllegalArgumentException("--gpu-bw must be positive, got " + gpuBandwidth);
            }
            if (!gpus.isEmpty()) {
                for (DeviceSpec d : DeviceSpec.parseGpus(String.join(",", gpus), gpuBandwidth,
                        forced != null ? forced : HostLink.PCIE4_X16)) {
                    devices.add(forced != null ? d.withLink(forced) : d);
                }
            }
            SystemMemory memory = SystemMemory.parse(ramType, ramChannels);
            DeviceSpec cpu = DeviceSpec.cpu(ram != null ? ram : PhysicalMemory.bytes(), memory);
            if (ramBandwidth != null) {
                cpu = cpu.withMemoryGBps(ramBandwidth);
            }
            devices.add(cpu);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
        return devices;
    }

    private PlanRequest request(CommandLine cl, ModelFootprint footprint) {
        try {
            if (ctx != null && ctx <= 0) {
                throw new IllegalArgumentException("--ctx must be positive, got " + ctx);
            }
            ModelOptions.checkPlacementFlags(gpuLayers, nCpuMoe, cpuMoe, stageBatch);
            int context = ctx != null ? ctx : Math.min(footprint.contextLength(), LoadOptions.DEFAULT_CONTEXT_CAP);
            PlanRequest r = PlanRequest.defaults(context).withKvType(kvType).withBatchSize(batchSize).withSplit(split)
                    .withOverrides(overrides.stream().map(TensorOverride::parse).toList()).withStageBatch(stageBatch)
                    .withCpuRepack(repack != null ? repack : InterleavedRows.available());
            if (gpuLayers != null) {
                r = r.withGpuLayers(gpuLayers);
            }
            if (cpuMoe) {
                r = r.withCpuMoe();
            } else if (nCpuMoe != null) {
                r = r.withNCpuMoe(nCpuMoe);
            }
            return margin != null ? r.withMargin(margin) : r;
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
    }

    private static Map<String, Object> toJson(Placement p) {
        Map<String, Object> j = new LinkedHashMap<>();
        j.put("fits", p.fits());
        j.put("message", p.fits() ? null : p.message());
        j.put("estimated_tg_tok_s", round(p.estimatedDecodeTokensPerSecond()));
        j.put("estimated_tg_tok_s_full_context", round(p.estimatedDecodeTokensPerSecond(p.request().contextLength())));
        ModelFootprint m = p.model();
        Map<String, Object> model = new LinkedHashMap<>();
        model.put("name", m.name());
        model.put("layers", m.layers());
        model.put("experts", m.experts());
        model.put("experts_used", m.expertsUsed());
        model.put("weights_bytes", m.totalBytes());
        j.put("model", model);
        j.put("context", p.request().contextLength());
        j.put("kv_type", p.request().kvType().name().toLowerCase(Locale.ROOT));
        j.put("cpu_repack", p.request().cpuRepack());
        j.put("kv_bytes_per_layer", m.kvBytesPerLayer(p.request().contextLength(), p.request().kvType()));
        j.put("batch_size", p.request().batchSize());
        j.put("margin_bytes", p.request().marginBytes());
        j.put("transfers_per_token", p.transfersPerToken());
        List<Map<String, Object>> devices = new ArrayList<>();
        for (DeviceLoad d : p.devices()) {
            DeviceSpec s = d.device();
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("name", s.name());
            o.put("kind", s.kind().name().toLowerCase(Locale.ROOT));
            o.put("hardware", s.hardware());
            o.put("capacity_bytes", s.capacityBytes());
            o.put("memory_bandwidth_gbps", s.memoryGBps());
            o.put("link", s.isGpu() ? s.link().key() : null);
            o.put("link_bandwidth_gbps", s.isGpu() ? s.link().gigabytesPerSecond() : null);
            o.put("weights_bytes", d.weightsBytes());
            o.put("kv_bytes", d.kvBytes());
            o.put("scratch_bytes", d.scratchBytes());
            o.put("free_bytes", d.freeBytes());
            o.put("fits", d.fits());
            o.put("layers", d.attentionLayers());
            o.put("expert_layers", d.expertLayers());
            o.put("globals", d.globals());
            o.put("weights_read_per_token_bytes", d.weightsReadPerToken());
            devices.add(o);
        }
        j.put("devices", devices);
        List<Map<String, Object>> layers = new ArrayList<>();
        for (LayerPlacement l : p.layers()) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("layer", l.layer());
            o.put("attention", l.attention());
            o.put("experts", l.experts());
            layers.add(o);
        }
        j.put("layers", layers);
        return j;
    }

    private static double round(double tokensPerSecond) {
        return Math.round(tokensPerSecond * 100) / 100.0;
    }

    /** Sizes with binary units; a bad one is a usage error naming the option. */
    static final class SizeConverter implements CommandLine.ITypeConverter<Long> {
        @Override
        public Long convert(String value) {
            try {
                return ByteSize.parse(value);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }
}
