package moe4j.engine;

import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;

import moe4j.engine.placement.PlanRequest;
import moe4j.engine.placement.TensorOverride;

/**
 * How to spread a model over several devices, llama.cpp style; {@link #NONE} runs it whole on
 * {@link LoadOptions#device()} as a single device.
 *
 * <p>The CPU named {@code cpu} (system RAM, which holds the token embedding) is always one of the devices, listed or
 * not. {@code cpu} may be listed more than once: each entry is its own CPU backend instance, the first the system
 * RAM's {@code cpu}, the others {@code cpu:1}, {@code cpu:2}... (which take layers as a GPU does), so that the
 * multi-device path runs on any machine.
 *
 * @param devices   the devices in order ({@code cuda:N}, {@code cpu}); empty = {@link LoadOptions#device()}
 * @param split     proportions of the layers, one per listed device (the CPU's share being the first layers), or one
 *                  per device other than the CPU (llama.cpp's {@code --tensor-split}); empty = automatic
 * @param gpuLayers how many layers (the last ones) go to the devices other than {@code cpu}; {@link #AUTO} = as many
 *                  as fit
 * @param nCpuMoe   layers (the first ones) whose experts stay on {@code cpu}; {@link #ALL_LAYERS} = every layer's
 *                  ({@code --cpu-moe}); {@link #AUTO} = as many expert blocks leave the CPU as fit
 * @param overrides tensor-name patterns pinned to devices, first match wins
 * @param fit       place automatically even with a single device: what does not fit on it stays on the CPU
 */
public record PlacementOptions(List<Device> devices, List<Double> split, int gpuLayers, int nCpuMoe,
                               List<TensorOverride> overrides, boolean fit, int stageBatch) {

    public static final int AUTO = PlanRequest.AUTO;
    public static final int ALL_LAYERS = Integer.MAX_VALUE;
    /**
     * Batches of at least this many tokens run a feed-forward block placed away from its layer's attention (experts
     * in system RAM) on the attention's device, its weights copied there for the batch, as llama.cpp does from 32.
     */
    public static final int DEFAULT_STAGE_BATCH = PlanRequest.DEFAULT_STAGE_BATCH;

    /** A single device, no planning. */
    public static final PlacementOptions NONE = new PlacementOptions(List.of(), List.of(), AUTO, AUTO, List.of(), false,
            DEFAULT_STAGE_BATCH);

    public PlacementOptions {
        devices = List.copyOf(devices);
        split = List.copyOf(split);
        overrides = List.copyOf(overrides);
        Set<Device> gpus = new HashSet<>();
        for (Device d : devices) {
            Objects.requireNonNull(d, "device");
            if (d.kind() == Device.Kind.CUDA && !gpus.add(d)) {
                throw new IllegalArgumentException("device " + d + " is listed twice");
            }
        }
        if (gpuLayers < AUTO || nCpuMoe < AUTO) {
            throw new IllegalArgumentException("gpuLayers and nCpuMoe must be AUTO (-1) or at least 0");
        }
        PlanRequest.requireStageBatch(stageBatch);
    }

    /** True when nothing asks for more than one device: the model runs whole on one backend. */
    public boolean isSingleDevice() {
        return devices.size() <= 1 && split.isEmpty() && gpuLayers == AUTO && nCpuMoe == AUTO && overrides.isEmpty()
                && !fit;
    }

    public PlacementOptions withDevices(List<Device> d) {
        return new PlacementOptions(d, split, gpuLayers, nCpuMoe, overrides, fit, stageBatch);
    }

    public PlacementOptions withSplit(List<Double> proportions) {
        return new PlacementOptions(devices, proportions, gpuLayers, nCpuMoe, overrides, fit, stageBatch);
    }

    public PlacementOptions withGpuLayers(int n) {
        return new PlacementOptions(devices, split, n, nCpuMoe, overrides, fit, stageBatch);
    }

    public PlacementOptions withNCpuMoe(int n) {
        return new PlacementOptions(devices, split, gpuLayers, n, overrides, fit, stageBatch);
    }

    /** Every layer's experts on the CPU, attention on the other devices: llama.cpp's {@code --cpu-moe}. */
    public PlacementOptions withCpuMoe() {
        return withNCpuMoe(ALL_LAYERS);
    }

    public PlacementOptions withOverrides(List<TensorOverride> o) {
        return new PlacementOptions(devices, split, gpuLayers, nCpuMoe, o, fit, stageBatch);
    }

    /** From which batch size CPU-placed feed-forward blocks run on their layer's attention device; 0 never. */
    public PlacementOptions withStageBatch(int tokens) {
        return new PlacementOptions(devices, split, gpuLayers, nCpuMoe, overrides, fit, tokens);
    }

    public PlacementOptions withFit(boolean f) {
        return new PlacementOptions(devices, split, gpuLayers, nCpuMoe, overrides, f, stageBatch);
    }
}
