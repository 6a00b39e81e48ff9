package moe4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import java.util.stream.IntStream;

import com.fasterxml.jackson.databind.ObjectMapper;

import moe4j.engine.tokenizer.Tokenizer;
import moe4j.gguf.GgufFile;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j tokenize}: the token ids of a text, as the other commands see a prompt. */
@Command(name = "tokenize", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Prints the token ids of a text.",
                "The text is tokenized as generate and logits tokenize a prompt: special tokens written"
                + " in the text (e.g. <|im_start|>) are recognized, and BOS is added only if the model asks for it."
                + " Only the vocabulary is read; the weights are not loaded."})
final class TokenizeCommand implements Callable<Integer> {

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "FILE", description = "GGUF model (or vocabulary) file")
    private Path model;

    @ArgGroup(exclusive = true, multiplicity = "1")
    private PromptSource prompt;

    @Option(names = "--json", description = "print a JSON array (of objects with --show-pieces)")
    private boolean json;

    @Option(names = "--show-pieces", description = "also print the text of each token, one token per line")
    private boolean showPieces;

    @Option(names = Main.VERBOSE, description = "stack trace on errors")
    private boolean verbose;

    @Override
    public Integer call() throws Exception {
        String text = prompt.read();
        int[] ids;
        Tokenizer tokenizer;
        try (GgufFile file = GgufFile.open(model)) {
            tokenizer = Tokenizer.fromGguf(file.metadata());
        }
        ids = tokenizer.encode(text);
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            Object value = showPieces ? pieces(tokenizer, ids) : ids;
            out.println(new ObjectMapper().writeValueAsString(value));
        } else if (showPieces) {
            for (int id : ids) {
                out.println(id + "\t" + quote(piece(tokenizer, id)));
            }
        } else {
            out.println(IntStream.of(ids).mapToObj(Integer::toString).collect(Collectors.joining(" ")));
        }
        out.flush();
        return 0;
    }

    private static List<Map<String, Object>> pieces(Tokenizer tokenizer, int[] ids) {
        List<Map<String, Object>> list = new ArrayList<>(ids.length);
        for (int id : ids) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("id", id);
            m.put("piece", piece(tokenizer, id));
            list.add(m);
        }
        return list;
    }

    /** The text a token stands for, special tokens included (part of a character shows as U+FFFD). */
    private static String piece(Tokenizer tokenizer, int id) {
        return tokenizer.decode(new int[] {id}, true);
    }

    /** In single quotes, with line breaks, tabs and other control characters escaped. */
    static String quote(String s) {
        StringBuilder b = new StringBuilder("'");
        s.codePoints().forEach(cp -> {
            switch (cp) {
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\\' -> b.append("\\\\");
                case '\'' -> b.append("\\'");
                default -> {
                    if (Character.isISOControl(cp)) {
                        b.append(String.format("\\u%04x", cp));
                    } else {
                        b.appendCodePoint(cp);
                    }
                }
            }
        });
        return b.append('\'').toString();
    }
}
