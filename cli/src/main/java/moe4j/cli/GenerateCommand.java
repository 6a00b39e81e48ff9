package moe4j.cli;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.tokenizer.Tokenizer;
import picocli.CommandLine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j generate}: continues a prompt, streaming the text to stdout. */
@Command(name = "generate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Continues a prompt, streaming the text to stdout.",
                "A summary (tokens, speed, why it stopped) goes to stderr.",
                "Without -m a small random-weight demo model is created once and used."})
final class GenerateCommand implements Callable<Integer> {

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @ArgGroup(exclusive = true, multiplicity = "1")
    private PromptSource prompt;

    @Option(names = {"-n", "--n-predict"}, paramLabel = "N", defaultValue = "256",
            description = "most tokens to generate (default: ${DEFAULT-VALUE})")
    private int maxTokens;

    @Option(names = "--stop", paramLabel = "STR", description = "stop when the text contains STR (repeatable)")
    private List<String> stops = List.of();

    @Option(names = "--chat", description = "wrap the prompt in the model's chat template as a user turn")
    private boolean chat;

    @Option(names = "--no-think", description = "with --chat: ask a reasoning model to answer without thinking")
    private boolean noThink;

    @Mixin
    private WarmUpOption warmUp;

    @Mixin
    private ModelOptions modelOptions;

    @Mixin
    private SamplingOptions sampling;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        if (maxTokens < 0) {
            throw new CommandLine.ParameterException(cl, "--n-predict must not be negative, got " + maxTokens);
        }
        if (noThink && !chat) {
            throw new CommandLine.ParameterException(cl, "--no-think needs --chat");
        }
        if (stops.stream().anyMatch(String::isEmpty)) {
            throw new CommandLine.ParameterException(cl, "--stop needs a non-empty string");
        }
        var settings = sampling.settings(cl);
        String text = prompt.read();
        PrintWriter out = cl.getOut();
        PrintWriter err = cl.getErr();
        Path path = modelOptions.model != null ? modelOptions.model : DemoModel.ensure(err);
        try (Model model = warmUp.apply(ModelLoader.load(path, modelOptions, cl), err);
             Session session = ModelLoader.newSession(model, 0, err)) {
            Tokenizer tokenizer = model.tokenizer();
            if (chat) {
                text = ChatTemplates.fromGguf(model.file().metadata()).render(List.of(ChatMessage.user(text)), true, !noThink);
            }
            int[] tokens = tokenizer.encode(text);
            if (tokens.length == 0) {
                throw new IllegalArgumentException("the prompt is empty");
            }
            if (tokens.length > session.contextLength()) {
                throw new IllegalArgumentException("the prompt is " + tokens.length + " tokens but the context holds "
                        + session.contextLength() + "; use a larger --ctx-size or a shorter prompt");
            }
            boolean[] endsWithNewline = {true};
            GenerationTimer timer = new GenerationTimer(new GenerationListener() {
                @Override
                public void onText(String piece) {
                    out.print(piece);
                    out.flush();
                    endsWithNewline[0] = piece.endsWith("\n");
                }
            });
            GenerationOptions options = GenerationOptions.maxTokens(maxTokens).withStopStrings(stops);
            Generator generator = new Generator(session, new Sampler(settings, session.vocabularySize()), tokenizer);
            timer.start();
            GenerationResult result = generator.generate(tokens, options, timer);
            GenerationTimer.Summary summary = timer.finish(result);
            if (!endsWithNewline[0]) {
                out.println();
            }
            out.flush();
            err.println(summary + (settings.isGreedy() ? "" : "; seed " + settings.seed()));
            err.flush();
        }
        return 0;
    }
}
