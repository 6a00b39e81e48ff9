package moe4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;

import moe4j.gguf.GgmlType;
import moe4j.gguf.GgufArray;
import moe4j.gguf.GgufFile;
import moe4j.gguf.GgufMetadata;
import moe4j.gguf.GgufTensor;
import moe4j.gguf.GgufValueType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j info}: what a GGUF model file contains. */
@Command(name = "info", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Shows a GGUF model's architecture, hyperparameters, tokenizer, tensor types and sizes.",
                "For a split model pass the first part (-00001-of-0000N.gguf); the others are found beside it.",
                "With --devices: lists the devices models can run on instead."})
final class InfoCommand implements Callable<Integer> {

    private static final int LABEL_WIDTH = 17;
    private static final int ARRAY_PREVIEW = 8;

    @Spec
    private picocli.CommandLine.Model.CommandSpec spec;

    @Option(names = {"-m", "--model"}, paramLabel = "FILE", description = "GGUF model file")
    private Path model;

    @Option(names = "--devices", description = "list the devices moe4j can run models on (for --device) instead")
    private boolean devices;

    @Option(names = "--json", description = "print one JSON object instead of text")
    private boolean json;

    @Option(names = "--tensors", description = "also list every tensor (name, type, shape, offset, bytes)")
    private boolean tensors;

    @Option(names = Main.VERBOSE, description = "also print every metadata key; stack trace on errors")
    private boolean verbose;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        if (devices) {
            DeviceList.print(out);
            out.flush();
            return 0;
        }
        if (model == null) {
            throw new picocli.CommandLine.MissingParameterException(spec.commandLine(), spec.findOption("--model"),
                    "Missing required option: '--model=FILE' (or --devices)");
        }
        try (GgufFile file = GgufFile.open(model)) {
            ModelSummary s = ModelSummary.of(file);
            if (json) {
                ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
                out.println(mapper.writeValueAsString(s.toJson(tensors)));
            } else {
                printText(out, s);
                if (verbose) {
                    printMetadata(out, file.metadata());
                }
                if (tensors) {
                    printTensors(out, s);
                }
            }
        }
        out.flush();
        return 0;
    }

    private static void printText(PrintWriter out, ModelSummary s) {
        if (s.files().size() == 1) {
            line(out, "file", s.files().getFirst().toString());
        } else {
            for (int i = 0; i < s.files().size(); i++) {
                line(out, "part " + (i + 1) + "/" + s.files().size(), s.files().get(i) + " (" + Sizes.bytes(s.fileSizes().get(i)) + ")");
            }
        }
        line(out, "file size", Sizes.bytes(s.fileSize()) + " (" + s.fileSize() + " bytes)");
        line(out, "gguf", "version " + s.ggufVersion() + ", alignment " + s.alignment() + ", " + s.metadataCount()
                + " metadata keys");
        line(out, "architecture", s.architecture() == null ? "(general.architecture missing)" : s.architecture());
        if (s.name() != null) {
            line(out, "name", s.name());
        }
        for (ModelSummary.Hyperparameter h : ModelSummary.HYPERPARAMETERS) {
            Object v = s.hyperparameters().get(h.jsonKey());
            if (v != null) {
                line(out, h.label(), format(v));
            }
        }
        if (s.vocabSize() != null) {
            line(out, "vocab size", s.vocabSize().toString());
        }
        if (s.tokenizerModel() != null) {
            line(out, "tokenizer", s.tokenizerModel() + (s.tokenizerPre() != null ? " (pre " + s.tokenizerPre() + ")" : ""));
        }
        line(out, "tensors", Integer.toString(s.tensors().size()));
        line(out, "parameters", Sizes.count(s.parameterCount()) + " (" + s.parameterCount() + ")");
        line(out, "tensor data", Sizes.bytes(s.tensorBytes()) + String.format(Locale.ROOT, ", %.2f bits per weight",
                s.bitsPerWeight()));
        out.println("tensor types:");
        for (Map.Entry<GgmlType, Integer> e : s.typeCounts().entrySet()) {
            long bytes = s.typeBytes().get(e.getKey());
            out.printf(Locale.ROOT, "  %-8s %5d tensors %12s%n", e.getKey(), e.getValue(), Sizes.bytes(bytes));
        }
    }

    private static void printMetadata(PrintWriter out, GgufMetadata md) {
        out.println("metadata:");
        for (String key : md.keys()) {
            GgufValueType type = md.type(key);
            String value;
            if (type == GgufValueType.ARRAY) {
                GgufArray a = md.getArray(key);
                StringBuilder b = new StringBuilder("[");
                for (int i = 0; i < Math.min(a.length(), ARRAY_PREVIEW); i++) {
                    b.append(i > 0 ? ", " : "").append(quoteIfString(a.get(i)));
                }
                value = b.append(a.length() > ARRAY_PREVIEW ? ", ...]" : "]") + " (" + a.elementType() + " x "
                        + a.length() + ")";
            } else {
                value = quoteIfString(md.get(key)) + " (" + type + ")";
            }
            out.println("  " + key + " = " + value);
        }
    }

    private static void printTensors(PrintWriter out, ModelSummary s) {
        int width = s.tensors().stream().mapToInt(t -> t.name().length()).max().orElse(4);
        boolean split = s.files().size() > 1;
        out.printf(Locale.ROOT, "%-" + width + "s  %-7s %-22s %14s %14s%s%n", "tensor", "type", "shape", "offset",
                "bytes", split ? "  file" : "");
        for (GgufTensor t : s.tensors()) {
            out.printf(Locale.ROOT, "%-" + width + "s  %-7s %-22s %14d %14d%s%n", t.name(), t.type(),
                    Arrays.toString(t.dims()), t.fileOffset(), t.byteSize(), split ? "  " + t.file().getFileName() : "");
        }
    }

    private static String format(Object v) {
        return v instanceof Double d && d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString(d.longValue())
                : String.valueOf(v);
    }

    private static String quoteIfString(Object v) {
        if (!(v instanceof String s)) {
            return String.valueOf(v);
        }
        String shown = s.length() > 60 ? s.substring(0, 60) + "..." : s;
        return '"' + shown.replace("\\", "\\\\").replace("\n", "\\n").replace("\"", "\\\"") + '"';
    }

    private static void line(PrintWriter out, String label, String value) {
        out.printf("%-" + LABEL_WIDTH + "s %s%n", label + ":", value);
    }
}
