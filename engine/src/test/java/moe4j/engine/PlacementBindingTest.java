package moe4j.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.engine.placement.DeviceLoad;
import moe4j.engine.placement.LayerPlacement;
import moe4j.engine.placement.Placement;
import moe4j.engine.placement.TensorOverride;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufTensor;
import moe4j.kernels.Backend;
import moe4j.kernels.KvCacheType;
import moe4j.kernels.cpu.CpuBackend;

/**
 * The planner's per-device figures are those of what the engine binds and allocates on each backend: a placement
 * that counted a tensor on one device while the graph bound it on another would misjudge whether a model fits (the
 * FFN norm and router used to be counted with the attention but run with the experts).
 */
class PlacementBindingTest {

    @TempDir
    static Path dir;
    static Path moe;
    static Path dense;

    private static final List<Device> TWO_CPUS = List.of(Device.CPU, Device.CPU);
    private static final int CONTEXT = 64;
    private static final int BATCH = 8;

    @BeforeAll
    static void models() {
        moe = TestModels.generate(dir, ModelShape.tiny().withLayers(4), TensorMix.Q4_K_M, 3);
        dense = TestModels.generate(dir, ModelShape.tinyDense().withLayers(3), TensorMix.Q8_0, 3);
    }

    /** A CPU backend that records what is bound on it and what it allocates. */
    private static final class Recorder implements InvocationHandler {
        final Backend cpu;
        /** Tensor name -> bytes bound, in name order (a name bound twice counts twice). */
        final Map<String, Long> bound = new TreeMap<>();
        long activationBytes;
        /** The chosen experts' ids and weights (the routing's per-token arrays). */
        long routingBytes;
        long kvBytes;

        Recorder(int threads) {
            this.cpu = new CpuBackend(threads);
        }

        @Override
        public Object invoke(Object proxy, Method method, Object[] args) throws Throwable {
            switch (method.getName()) {
                case "bind" -> {
                    // what the backend holds: its repacked copy where it makes one, else the file's bytes
                    GgufTensor t = (GgufTensor) args[0];
                    long before = cpu.repackedBytes();
                    Object weight = call(method, args);
                    long copy = cpu.repackedBytes() - before;
                    bound.merge(t.name(), copy > 0 ? copy : t.byteSize(), Long::sum);
                    return weight;
                }
                case "bindForLookup" -> {
                    GgufTensor t = (GgufTensor) args[0];
                    bound.merge(t.name(), t.byteSize(), Long::sum);
                }
                case "allocate" -> activationBytes += (long) (int) args[0] * (int) args[1] * Float.BYTES;
                case "allocateRouting" -> routingBytes += (long) (int) args[1] * (int) args[2]
                        * (Integer.BYTES + Float.BYTES);
                case "allocateKvCache" -> {
                    assertEquals(KvCacheType.F16, args[4]);
                    // keys and values of (layers x context x heads x head size), f16
                    kvBytes += 2L * (int) args[0] * (int) args[1] * (int) args[2] * (int) args[3] * 2;
                }
                default -> { }
            }
            return call(method, args);
        }

        private Object call(Method method, Object[] args) throws Throwable {
            try {
                return method.invoke(cpu, args);
            } catch (InvocationTargetException e) {
                throw e.getCause();
            }
        }

        long boundBytes() {
            return bound.values().stream().mapToLong(Long::longValue).sum();
        }
    }

    /** The recorders of one load, in the order its devices were opened (the planner's names of the listed devices). */
    private record Loaded(Placement placement, Map<String, Recorder> byDevice) {}

    private static Loaded load(Path model, PlacementOptions placement) throws IOException {
        List<Recorder> opened = new ArrayList<>();
        LoadOptions options = LoadOptions.defaults().withThreads(1).withContextLength(CONTEXT).withBatchSize(BATCH)
                .withPlacement(placement.withDevices(TWO_CPUS));
        try (Model m = Model.load(GgufFile.open(model), options, (device, o) -> {
            Recorder r = new Recorder(o.effectiveThreads());
            opened.add(r);
            return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class}, r);
        })) {
            // a session allocates the workspace and the KV cache
            try (Session s = m.newSession()) {
                s.evaluate(new int[] {1, 2, 3});
            }
            List<String> names = DevicePlan.names(TWO_CPUS);
            assertEquals(names.size(), opened.size());
            Map<String, Recorder> byDevice = new TreeMap<>();
            for (int i = 0; i < names.size(); i++) {
                byDevice.put(names.get(i), opened.get(i));
            }
            return new Loaded(m.placement().orElseThrow(), byDevice);
        }
    }

    /** Each device's weights, tensors, KV cache, scratch and bytes read per token are what runs there. */
    private static void assertPlanIsWhatIsBound(Loaded run, String what) {
        Placement p = run.placement();
        String context = what + "\n" + p.summary();
        for (Map.Entry<String, Recorder> e : run.byDevice().entrySet()) {
            String device = e.getKey();
            Recorder r = e.getValue();
            DeviceLoad d = p.device(device);
            Set<String> planned = new TreeSet<>();
            p.tensorDevices().forEach((tensor, on) -> {
                if (on.equals(device)) {
                    planned.add(tensor);
                }
            });
            if (d.globals().contains("token_embd.weight (LM head copy)")) {
                planned.add("token_embd.weight");
            }
            assertEquals(planned, r.bound.keySet(), "tensors bound on " + device + ", " + context);
            assertEquals(d.weightsBytes(), r.boundBytes(), "weights on " + device + ", " + context);
            assertEquals(d.kvBytes(), r.kvBytes, "KV cache on " + device + ", " + context);
            assertEquals(d.scratchBytes(), r.activationBytes + r.routingBytes, "scratch on " + device + ", " + context);
            assertEquals(d.weightsReadPerToken(), readPerToken(p, device, r), "read per token on " + device + ", "
                    + context);
        }
    }

    /** Bytes a token reads of what is bound on {@code device}: its experts' share, one embedding row, all else. */
    private static long readPerToken(Placement p, String device, Recorder r) {
        long read = 0;
        for (Map.Entry<String, Long> t : r.bound.entrySet()) {
            long bytes = t.getValue();
            if (t.getKey().contains("_exps.")) {
                read += Math.round((double) bytes * p.model().expertsUsed() / p.model().experts());
            } else if (t.getKey().equals("token_embd.weight")) {
                // bound once per backend: the lookup reads a row of it, a tied LM head all of it
                boolean lookup = p.deviceOf("token_embd.weight").equals(device);
                boolean head = p.model().tiedEmbeddings() && DevicePlan.headDevice(p).equals(device);
                read += (lookup ? bytes / p.model().vocab() : 0) + (head ? bytes : 0);
            } else {
                read += bytes;
            }
        }
        return read;
    }

    @Test
    void expertsAwayFromAttentionTakeTheirFfnNormAndRouterAlong() throws IOException {
        Loaded run = load(moe, PlacementOptions.NONE.withCpuMoe());
        Placement p = run.placement();
        for (LayerPlacement l : p.layers()) {
            assertEquals("cpu:1", l.attention(), p.summary());
            assertEquals("cpu", l.experts(), p.summary());
            assertEquals("cpu", l.ffn(), p.summary());
            String b = "blk." + l.layer() + ".";
            assertEquals("cpu", p.deviceOf(b + "ffn_norm.weight"));
            assertEquals("cpu", p.deviceOf(b + "ffn_gate_inp.weight"));
            assertEquals("cpu:1", p.deviceOf(b + "attn_norm.weight"));
            assertEquals("cpu:1", p.deviceOf(b + "attn_q_norm.weight"));
            assertEquals("cpu:1", p.deviceOf(b + "attn_k_norm.weight"));
            assertTrue(run.byDevice().get("cpu").bound.containsKey(b + "ffn_gate_inp.weight"));
        }
        assertPlanIsWhatIsBound(run, "--cpu-moe");
    }

    @Test
    void splitsAndOverridesOfWholeBlocksBindWhatThePlanCounts() throws IOException {
        assertPlanIsWhatIsBound(load(moe, PlacementOptions.NONE.withSplit(List.of(1.0, 1.0))), "split 1,1");
        assertPlanIsWhatIsBound(load(moe, PlacementOptions.NONE.withSplit(List.of(1.0, 1.0)).withNCpuMoe(3)),
                "split 1,1, --n-cpu-moe 3");

        // cpu with nothing but the embedding, then nothing but the LM head: no layer's block buffers there
        assertPlanIsWhatIsBound(load(moe, PlacementOptions.NONE.withSplit(List.of(0.0, 1.0))), "all layers on cpu:1");
        Loaded head = load(moe, PlacementOptions.NONE.withOverrides(List.of(TensorOverride.parse("token_embd=cpu:1"),
                TensorOverride.parse("^output=cpu"))));
        assertEquals(List.of("output_norm.weight", "output.weight"), head.placement().device("cpu").globals());
        assertPlanIsWhatIsBound(head, "only the LM head on cpu");

        // the experts pinned: their FFN norm and router follow them, away from the attention on cpu:1
        Loaded exps = load(moe, PlacementOptions.NONE.withSplit(List.of(0.0, 1.0))
                .withOverrides(List.of(TensorOverride.parse("exps=cpu"))));
        assertEquals("cpu", exps.placement().deviceOf("blk.3.ffn_gate_inp.weight"), exps.placement().summary());
        assertEquals("cpu:1", exps.placement().layers().get(3).attention(), exps.placement().summary());
        assertPlanIsWhatIsBound(exps, "-ot exps=cpu");

        // everything on cpu:1 but these blocks
        Loaded blocks = load(moe, PlacementOptions.NONE.withOverrides(List.of(
                TensorOverride.parse("blk\\.1\\.ffn_=cpu"), TensorOverride.parse("blk\\.2\\.attn=cpu"),
                TensorOverride.parse("^output\\.=cpu"))));
        Placement p = blocks.placement();
        assertEquals("cpu", p.layers().get(1).ffn(), p.summary());
        assertEquals("cpu:1", p.layers().get(1).attention(), p.summary());
        assertEquals("cpu", p.layers().get(2).attention(), p.summary());
        assertEquals("cpu:1", p.layers().get(2).ffn(), p.summary());
        assertEquals("cpu", p.deviceOf("output_norm.weight"), "the final norm follows the LM head");
        assertPlanIsWhatIsBound(blocks, "whole blocks pinned to cpu");
    }

    @Test
    void aDenseFfnPinnedAwayFromItsAttentionRunsWhereThePlanSays() throws IOException {
        Loaded run = load(dense, PlacementOptions.NONE.withOverrides(
                List.of(TensorOverride.parse("blk\\.1\\.ffn=cpu"))));
        Placement p = run.placement();
        assertEquals("cpu:1", p.layers().get(1).attention(), p.summary());
        assertEquals("cpu", p.layers().get(1).ffn(), p.summary());
        assertTrue(run.byDevice().get("cpu").bound.containsKey("blk.1.ffn_down.weight"));
        assertPlanIsWhatIsBound(run, "dense, layer 1's FFN on cpu:1");

        // a tied head away from the embedding is bound a second time, and counted so
        assertPlanIsWhatIsBound(load(dense, PlacementOptions.NONE.withSplit(List.of(1.0, 2.0))), "dense, split 1,2");
    }

    @Test
    void overridesThatWouldSplitABlockAreRefusedNamingTheTensors() {
        IllegalArgumentException router = assertThrows(IllegalArgumentException.class, () -> load(moe,
                PlacementOptions.NONE.withCpuMoe().withOverrides(List.of(TensorOverride.parse("ffn_gate_inp=cpu:1")))));
        assertTrue(router.getMessage().startsWith("Layer 0's feed-forward block runs on one device, but"
                + " blk.0.ffn_gate_inp.weight would be on cpu:1 (tensor override 'ffn_gate_inp=cpu:1') and"
                + " blk.0.ffn_gate_exps.weight on cpu (placed by the planner)"), router.getMessage());
        assertTrue(router.getMessage().endsWith("override all of the block's tensors (ffn_norm, ffn_gate_inp,"
                + " ffn_gate_exps, ffn_up_exps, ffn_down_exps) or none of them"), router.getMessage());

        // everything else on cpu:1
        IllegalArgumentException norm = assertThrows(IllegalArgumentException.class, () -> load(moe,
                PlacementOptions.NONE.withOverrides(List.of(TensorOverride.parse("blk\\.2\\.attn_norm=cpu")))));
        assertTrue(norm.getMessage().startsWith("Layer 2's attention block runs on one device, but"
                + " blk.2.attn_norm.weight would be on cpu (tensor override 'blk\\.2\\.attn_norm=cpu') and"
                + " blk.2.attn_q.weight on cpu:1 (placed by the planner)"), norm.getMessage());

        IllegalArgumentException head = assertThrows(IllegalArgumentException.class, () -> load(moe,
                PlacementOptions.NONE.withOverrides(List.of(TensorOverride.parse("output_norm=cpu")))));
        assertTrue(head.getMessage().startsWith("The LM head runs on one device, but output_norm.weight would be on"
                + " cpu"), head.getMessage());
        assertTrue(head.getMessage().endsWith("(output_norm, output) or none of them"), head.getMessage());
    }
}
