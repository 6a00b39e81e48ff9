package moe4j.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.Callable;

import moe4j.engine.Model;
import moe4j.engine.Session;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe4j logits}: the logits of every position of a prompt, in the conformance fixtures' format
 * (little-endian {@code int32 n_tokens, int32 n_vocab, int32 tokens[n_tokens], float32 logits[n_tokens][n_vocab]}).
 */
@Command(name = "logits", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Writes the logits of every position of a prompt to a binary file.",
                "The format is that of the llama.cpp reference files: little-endian int32 n_tokens, int32 n_vocab,"
                + " int32 tokens[n_tokens], float32 logits[n_tokens][n_vocab].",
                "The prompt is tokenized as by tokenize. -m is required; without -c the context holds exactly the"
                + " prompt."})
final class LogitsCommand implements Callable<Integer> {

    private static final int BUFFER_BYTES = 1 << 20;

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @ArgGroup(exclusive = true, multiplicity = "1")
    private PromptSource prompt;

    @Option(names = {"-o", "--out"}, required = true, paramLabel = "OUT.bin", description = "output file (replaced)")
    private Path output;

    @Option(names = "--one-by-one",
            description = "evaluate one token per step (the decode path) instead of in batches (the prompt path)")
    private boolean oneByOne;

    @Mixin
    private ModelOptions modelOptions;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        Path path = modelOptions.requireModel(cl);
        String text = prompt.read();
        PrintWriter err = cl.getErr();
        try (Model model = ModelLoader.load(path, modelOptions, cl)) {
            int[] tokens = model.tokenizer().encode(text);
            if (tokens.length == 0) {
                throw new IllegalArgumentException("the prompt is empty");
            }
            int context = modelOptions.contextLength;
            if (context > 0 && tokens.length > context) {
                throw new IllegalArgumentException("the prompt is " + tokens.length + " tokens but --ctx-size is "
                        + context);
            }
            if (tokens.length > model.config().contextLength()) {
                err.println("warning: the prompt (" + tokens.length + " tokens) is longer than the context the model"
                        + " was trained on (" + model.config().contextLength() + ")");
            }
            // without -c the cache holds exactly the prompt
            try (Session session = ModelLoader.newSession(model, context > 0 ? context : tokens.length, err)) {
                long start = System.nanoTime();
                write(session, tokens, model.options().batchSize());
                double seconds = (System.nanoTime() - start) / 1e9;
                long size = Files.size(output);
                err.printf(Locale.ROOT, "wrote %s: %d tokens x %d logits (%s) in %.2f s, %.1f tok/s, %s%n", output,
                        tokens.length, session.vocabularySize(), Sizes.bytes(size), seconds, tokens.length / seconds,
                        oneByOne ? "one token per step" : "batches of " + model.options().batchSize());
                err.flush();
            }
        }
        return 0;
    }

    /** Evaluates and streams the rows out as they come; a failed write leaves no partial file. */
    private void write(Session session, int[] tokens, int batch) throws IOException {
        int vocab = session.vocabularySize();
        boolean done = false;
        try (FileChannel ch = FileChannel.open(output, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            Out out = new Out(ch);
            out.putInt(tokens.length);
            out.putInt(vocab);
            for (int t : tokens) {
                out.putInt(t);
            }
            if (oneByOne) {
                float[] row = new float[vocab];
                for (int i = 0; i < tokens.length; i++) {
                    session.evaluate(tokens, i, 1, row);
                    out.putFloats(row);
                }
            } else {
                for (int from = 0; from < tokens.length; from += batch) {
                    float[][] rows = session.evaluateAll(Arrays.copyOfRange(tokens, from, Math.min(tokens.length, from + batch)));
                    for (float[] row : rows) {
                        out.putFloats(row);
                    }
                }
            }
            out.flush();
            done = true;
        } finally {
            if (!done) {
                Files.deleteIfExists(output);
            }
        }
    }

    /** A little-endian write buffer in front of a channel. */
    private static final class Out {
        private final FileChannel channel;
        private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);

        Out(FileChannel channel) {
            this.channel = channel;
        }

        void putInt(int v) throws IOException {
            if (buffer.remaining() < Integer.BYTES) {
                flush();
            }
            buffer.putInt(v);
        }

        void putFloats(float[] values) throws IOException {
            for (int i = 0; i < values.length; ) {
                if (buffer.remaining() < Float.BYTES) {
                    flush();
                }
                int n = Math.min(values.length - i, buffer.remaining() / Float.BYTES);
                buffer.asFloatBuffer().put(values, i, n);
                buffer.position(buffer.position() + n * Float.BYTES);
                i += n;
            }
        }

        void flush() throws IOException {
            buffer.flip();
            while (buffer.hasRemaining()) {
                channel.write(buffer);
            }
            buffer.clear();
        }
    }
}
