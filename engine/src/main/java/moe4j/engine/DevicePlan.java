package moe4j.engine;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

import moe4j.engine.placement.DeviceSpec;
import moe4j.engine.placement.HostLink;
import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.ModelFootprint;
import moe4j.engine.placement.Placement;
import moe4j.engine.placement.PlanRequest;
import moe4j.engine.placement.Planner;
import moe4j.engine.placement.SystemMemory;
import moe4j.kernels.KvCacheType;
import moe4j.gguf.PhysicalMemory;

/**
 * Between {@link PlacementOptions} and the {@link Planner}: names the listed devices as the planner does, turns the
 * options into a {@link PlanRequest}, and plans, refusing a placement that does not fit.
 */
final class DevicePlan {

    /**
     * Memory bandwidth given to a real GPU's spec: it only feeds the planner's speed estimate, which a run does not
     * report (an RTX 3090's, as {@code plan} assumes for a GPU given by size).
     */
    private static final double GPU_GBPS_UNKNOWN = 936;

    private DevicePlan() {}

    /**
     * The planner's name of each listed device, in order ({@code cuda:N}; the first {@code cpu} is {@code cpu}, the
     * next ones {@code cpu:1}, {@code cpu:2}...), with {@code cpu} appended when none is listed.
     */
    static List<String> names(List<Device> listed) {
        List<String> names = new ArrayList<>();
        int cpus = 0;
        for (Device d : listed) {
            if (d.kind() == Device.Kind.CPU) {
                names.add(cpus == 0 ? DeviceSpec.CPU_NAME : DeviceSpec.CPU_NAME + ":" + cpus);
                cpus++;
            } else {
                names.add(d.toString());
            }
        }
        if (cpus == 0) {
            names.add(DeviceSpec.CPU_NAME);
        }
        return names;
    }

    /**
     * The planner's request for {@code o} over {@code names} (of which the first {@code listed} were listed).
     *
     * @throws IllegalArgumentException when the split fits neither the listed devices nor those besides the CPU, or
     *                                  gives the CPU a share while {@code gpuLayers} is fixed too
     */
    static PlanRequest request(PlacementOptions o, List<String> names, int listed, int layers, int contextLength,
                               KvCacheType kvType, int batchSize) {
        PlanRequest r = PlanRequest.defaults(contextLength).withKvType(kvType).withBatchSize(batchSize)
                .withOverrides(o.overrides()).withNCpuMoe(o.nCpuMoe()).withStageBatch(o.stageBatch());
        int gpuLayers = o.gpuLayers();
        List<Double> split = o.split();
        int others = names.size() - 1;
        int cpuIndex = names.indexOf(DeviceSpec.CPU_NAME);
        if (!split.isEmpty() && split.size() != others) {
            if (split.size() != listed || cpuIndex >= listed) {
                throw new IllegalArgumentException("the split " + split + " has " + split.size() + " proportions; expected"
                        + " one per listed device (" + String.join(", ", names.subList(0, listed)) + ")"
                        + (others > 0 ? " or one per device besides cpu (" + others + ")" : ""));
            }
            if (gpuLayers != PlacementOptions.AUTO) {
                throw new IllegalArgumentException("the split " + split + " gives cpu a share of the layers, which"
                        + " --gpu-layers fixes too: give one or the other (or one proportion per device besides cpu)");
            }
            double total = split.stream().mapToDouble(Double::doubleValue).sum();
            List<Double> rest = new ArrayList<>(split);
            double cpuShare = rest.remove(cpuIndex);
            if (!(total > 0) || cpuShare < 0) {
                throw new IllegalArgumentException("split proportions must not be negative nor all 0, got " + split);
            }
            gpuLayers = layers - (int) Math.round(layers * cpuShare / total);
            split = rest.stream().mapToDouble(Double::doubleValue).sum() > 0 ? rest : List.of();
        }
        return r.withSplit(split).withGpuLayers(gpuLayers);
    }

    /** The spec of each named device: a GPU's whole memory, the RAM shared equally by the CPU instances. */
    static List<DeviceSpec> specs(List<String> names, List<Long> gpuMemory, List<String> gpuNames) {
        long cpus = names.stream().filter(n -> n.startsWith(DeviceSpec.CPU_NAME)).count();
        long ramShare = PhysicalMemory.bytes() / cpus;
        List<DeviceSpec> specs = new ArrayList<>();
        int gpu = 0;
        for (String name : names) {
            if (name.equals(DeviceSpec.CPU_NAME)) {
                specs.add(DeviceSpec.cpu(ramShare, SystemMemory.DEFAULT));
            } else if (name.startsWith(DeviceSpec.CPU_NAME + ":")) {
                specs.add(DeviceSpec.cpuInstance(Integer.parseInt(name.substring(4)), ramShare, SystemMemory.DEFAULT));
            } else {
                specs.add(new DeviceSpec(name, DeviceSpec.Kind.GPU, gpuNames.get(gpu), gpuMemory.get(gpu),
                        GPU_GBPS_UNKNOWN, HostLink.PCIE4_X16));
                gpu++;
            }
        }
        return specs;
    }

    /**
     * Plans {@code model} on {@code specs}. Where the CPUs' repacked copies ({@link PlanRequest#cpuRepack()}) are what
     * does not fit, the file's bytes are planned instead ({@code cpuRepack()} false in the placement's request): the
     * CPU backends must then multiply the weights as the file has them.
     *
     * @throws IllegalArgumentException with the planner's message when the devices or the request are inconsistent,
     *                                  or when the placement does not fit
     */
    static Placement plan(ModelFootprint model, List<DeviceSpec> specs, PlanRequest request) {
        Placement p = Planner.plan(model, specs, request);
        if (!p.fits() && request.cpuRepack()) {
            Placement asFile = Planner.plan(model, specs, request.withCpuRepack(false));
            if (asFile.fits()) {
                return asFile;
            }
        }
        if (!p.fits()) {
            throw new IllegalArgumentException("the placement of " + model.name() + " does not fit: " + p.message());
        }
        return p;
    }

    /** The devices the placement gives work: the token embedding, a layer's attention or FFN, the LM head. */
    static Set<String> used(Placement p) {
        Set<String> used = new LinkedHashSet<>();
        used.add(p.deviceOf("token_embd.weight"));
        for (LayerPlacement l : p.layers()) {
            used.add(l.attention());
            used.add(l.ffn());
        }
        used.add(headDevice(p));
        return used;
    }

    /** Where the final norm and the LM head run: with {@code output.weight}, or with the final norm when it is tied. */
    static String headDevice(Placement p) {
        String output = p.tensorDevices().get("output.weight");
        return output != null ? output : p.deviceOf("output_norm.weight");
    }
}
