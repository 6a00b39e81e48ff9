package moe4j.cli;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplate;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.generation.CancellationToken;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.generation.StopReason;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;
import moe4j.engine.tokenizer.Tokenizer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe4j chat}: a conversation on stdin/stdout. The conversation stays in the session's KV cache:
 * each turn evaluates only its own tokens (the end of the previous reply, the user's message, the
 * opening of the next reply), rendered with the model's chat template.
 */
@Command(name = "chat", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Interactive chat with the model's chat template.",
                "Type a message and press Enter. /reset starts a new conversation, /exit (or end of input) quits;"
                + " Ctrl-C stops the current reply.",
                "Without -m a small random-weight demo model is created once and used."})
final class ChatCommand implements Callable<Integer> {

    private static final String HELP = "commands: /reset starts a new conversation, /exit quits; Ctrl-C stops a reply";

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = "--system", paramLabel = "TEXT", description = "system message that opens the conversation")
    private String system;

    @Option(names = {"-n", "--n-predict"}, paramLabel = "N",
            description = "most tokens per reply (default: until the reply ends or the context is full)")
    private Integer maxTokens;

    @Option(names = "--no-think", description = "ask a reasoning model to answer without thinking")
    private boolean noThink;

    @Option(names = "--hide-thinking", description = "do not print the reasoning (<think>...</think>)")
    private boolean hideThinking;

    @Mixin
    private WarmUpOption warmUp;

    @Mixin
    private ModelOptions modelOptions;

    @Mixin
    private SamplingOptions sampling;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        if (maxTokens != null && maxTokens <= 0) {
            throw new CommandLine.ParameterException(cl, "--n-predict must be positive, got " + maxTokens);
        }
        SamplerSettings settings = sampling.settings(cl);
        PrintWriter out = cl.getOut();
        PrintWriter err = cl.getErr();
        boolean interactive = Terminal.isInteractive();
        Path path = modelOptions.model != null ? modelOptions.model : DemoModel.ensure(err);
        try (Model model = warmUp.apply(ModelLoader.load(path, modelOptions, cl), err);
             Session session = ModelLoader.newSession(model, 0, err);
             InterruptHandler interrupts = InterruptHandler.install()) {
            ChatTemplate template = ChatTemplates.fromGguf(model.file().metadata());
            Tokenizer tokenizer = model.tokenizer();
            Sampler sampler = new Sampler(settings, session.vocabularySize());
            Generator generator = new Generator(session, sampler, tokenizer);
            String endOfReply = endOfAssistantTurn(template);
            err.println("chat template " + template.name() + "; " + HELP);
            err.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            boolean newConversation = true;
            while (true) {
                if (interactive) {
                    out.print("> ");
                    out.flush();
                }
                String line = in.readLine();
                if (line == null || line.strip().equals("/exit")) {
                    break;
                }
                line = line.strip();
                if (line.isEmpty()) {
                    continue;
                }
                if (line.equals("/reset")) {
                    session.reset();
                    sampler.reset();
                    newConversation = true;
                    err.println("(new conversation)");
                    err.flush();
                    continue;
                }
                if (line.startsWith("/")) {
                    err.println("unknown command " + line + "; " + HELP);
                    err.flush();
                    continue;
                }
                List<ChatMessage> turn = new ArrayList<>();
                if (newConversation && system != null) {
                    turn.add(ChatMessage.system(system));
                }
                turn.add(ChatMessage.user(line));
                String text = (newConversation ? "" : endOfReply) + template.render(turn, true, !noThink);
                int[] tokens = tokenizer.encode(text, newConversation, true);
                if (tokens.length > session.remaining()) {
                    err.println("the context is full (" + session.position() + " of " + session.contextLength()
                            + " tokens used, this message needs " + tokens.length + "): type /reset to start a new"
                            + " conversation" + (newConversation ? " or use a larger --ctx-size" : ""));
                    err.flush();
                    continue;
                }
                reply(generator, tokens, session, interrupts, out, err, interactive);
                newConversation = false;
            }
        }
        return 0;
    }

    /** Generates and prints one reply, then a line of statistics on stderr. */
    private void reply(Generator generator, int[] tokens, Session session, InterruptHandler interrupts,
                       PrintWriter out, PrintWriter err, boolean interactive) {
        ReplyPrinter printer = new ReplyPrinter(out, hideThinking, interactive && !hideThinking);
        ThinkingFilter filter = new ThinkingFilter(printer);
        GenerationTimer timer = new GenerationTimer(new GenerationListener() {
            @Override
            public void onText(String text) {
                filter.accept(text);
            }
        });
        CancellationToken cancel = new CancellationToken();
        GenerationOptions options = GenerationOptions.maxTokens(maxTokens != null ? maxTokens : Integer.MAX_VALUE)
                .withCancellation(cancel);
        GenerationResult result;
        interrupts.arm(cancel);
        try {
            timer.start();
            result = generator.generate(tokens, options, timer);
        } finally {
            interrupts.disarm();
        }
        GenerationTimer.Summary summary = timer.finish(result);
        filter.finish();
        printer.finish();
        if (result.stopReason() == StopReason.CONTEXT_FULL) {
            err.println("the context is full (" + session.contextLength() + " tokens): type /reset to start a new"
                    + " conversation");
        }
        err.println("[" + summary + "; context: " + session.position() + "/" + session.contextLength() + "]");
        err.flush();
    }

    /**
     * What the template writes after an assistant message's text, e.g. {@code <|im_end|>\n}: the reply's
     * end-of-turn token is sampled but not evaluated, so the next turn starts with this.
     */
    static String endOfAssistantTurn(ChatTemplate template) {
        String marker = "\u0001moe4j-reply\u0001";
        String rendered = template.render(List.of(ChatMessage.assistant(marker)), false, true);
        int at = rendered.lastIndexOf(marker);
        if (at < 0) {
            throw new IllegalStateException("chat template " + template.name() + " does not render assistant messages");
        }
        return rendered.substring(at + marker.length());
    }

    /** Prints a reply: reasoning faint (on a terminal), hidden (--hide-thinking) or as is. */
    private static final class ReplyPrinter implements ThinkingFilter.Sink {
        private final PrintWriter out;
        private final boolean hide;
        private final boolean faint;
        private boolean faintOn;
        private boolean afterHiddenThinking;
        private boolean endsWithNewline = true;

        ReplyPrinter(PrintWriter out, boolean hide, boolean faint) {
            this.out = out;
            this.hide = hide;
            this.faint = faint;
        }

        @Override
        public void text(String text, boolean thinking) {
            if (thinking && hide) {
                afterHiddenThinking = true;
                return;
            }
            if (!thinking && afterHiddenThinking) {
                // the template separates reasoning and answer with blank lines; without the reasoning they only push the answer down
                text = text.replaceFirst("^\\n+", "");
                afterHiddenThinking = text.isEmpty();
            }
            if (text.isEmpty()) {
                return;
            }
            if (faint && thinking != faintOn) {
                out.print(thinking ? Terminal.FAINT : Terminal.NORMAL_INTENSITY);
                faintOn = thinking;
            }
            out.print(text);
            out.flush();
            endsWithNewline = text.endsWith("\n");
        }

        void finish() {
            if (faintOn) {
                out.print(Terminal.NORMAL_INTENSITY);
                faintOn = false;
            }
            if (!endsWithNewline) {
                out.println();
            }
            out.flush();
        }
    }
}
