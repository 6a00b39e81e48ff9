package moe4j.cli;

import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Callable;

import moe4j.cli.server.OpenAiServer;
import moe4j.cli.server.ServerConfig;
import moe4j.engine.Model;
import moe4j.engine.embedding.Pooling;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe4j serve}: an OpenAI-compatible HTTP server for one model, until Ctrl-C. */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serves the model over an OpenAI-compatible HTTP API.",
                "Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both also",
                "  streaming), POST /v1/embeddings (models with a pooling), GET /health.",
                "Logs one line per request on stderr; Ctrl-C stops it. The sampling options",
                "are the defaults of requests that do not set them."})
final class ServeCommand implements Callable<Integer> {

    @Spec
    private CommandLine.Model.CommandSpec spec;

    @Option(names = "--host", paramLabel = "ADDR", defaultValue = ServerConfig.DEFAULT_HOST,
            description = "address to listen on (default: ${DEFAULT-VALUE}, this machine only; 0.0.0.0 for all)")
    private String host;

    @Option(names = "--port", paramLabel = "N", defaultValue = "" + ServerConfig.DEFAULT_PORT,
            description = "TCP port; 0 picks a free one (default: ${DEFAULT-VALUE})")
    private int port;

    @Option(names = {"-np", "--parallel"}, paramLabel = "N", defaultValue = "1",
            description = "requests generating at once, each with its own KV cache of --ctx-size (default: ${DEFAULT-VALUE})")
    private int parallel;

    @Option(names = "--queue", paramLabel = "N", defaultValue = "" + ServerConfig.DEFAULT_QUEUE_LIMIT,
            description = "requests that may wait for a free slot; more get 503 (default: ${DEFAULT-VALUE})")
    private int queue;

    @Option(names = "--api-key", paramLabel = "KEY", defaultValue = "${env:MOE4J_API_KEY}",
            description = "require 'Authorization: Bearer KEY' (default: $MOE4J_API_KEY if set, else none)")
    private String apiKey;

    @Option(names = "--alias", paramLabel = "NAME",
            description = "model id shown to clients (default: the file name without .gguf)")
    private String alias;

    @Option(names = "--pooling", paramLabel = "TYPE",
            description = "pooling for /v1/embeddings: mean, cls or last (default: the model's; none disables)")
    private Pooling pooling;

    @Option(names = "--max-body", paramLabel = "BYTES", defaultValue = "" + ServerConfig.DEFAULT_MAX_BODY_BYTES,
            description = "largest request body accepted (default: ${DEFAULT-VALUE})")
    private int maxBody;

    @Mixin
    private WarmUpOption warmUp;

    @Mixin
    private ModelOptions modelOptions;

    @Mixin
    private SamplingOptions sampling;

    @Override
    public Integer call() throws Exception {
        CommandLine cl = spec.commandLine();
        Path path = modelOptions.requireModel(cl);
        ServerConfig config;
        try {
            config = new ServerConfig(host, port, parallel, queue, Optional.ofNullable(apiKey), maxBody,
                    alias != null ? alias : modelId(path), sampling.settings(cl),
                    sampling.seed != null ? OptionalLong.of(sampling.seed) : OptionalLong.empty(), line -> { });
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
        PrintWriter err = cl.getErr();
        boolean loopback = isLoopback(host, cl);
        try (Model model = warmUp.apply(ModelLoader.load(path, modelOptions, cl), err);
             OpenAiServer server = OpenAiServer.start(model, config.withLog(line -> {
                 synchronized (err) {
                     err.println(line);
                     err.flush();
                 }
             }), Optional.ofNullable(pooling))) {
            CountDownLatch stopped = new CountDownLatch(1);
            Thread hook = Thread.ofPlatform().unstarted(() -> {
                err.println("stopping the server ...");
                err.flush();
                server.close();
                stopped.countDown();
            });
            Runtime.getRuntime().addShutdownHook(hook);
            err.printf("serving %s with %d slot(s) of %d tokens%s; Ctrl-C stops%n", config.modelId(), parallel,
                    model.contextLength(), server.providesEmbeddings() ? ", embeddings on" : "");
            if (!loopback && config.apiKey().isEmpty()) {
                err.println("warning: listening on " + host + " without --api-key: anyone who can reach it may use it");
            }
            err.println("listening on " + server.baseUri() + "/v1");
            err.flush();
            stopped.await();
        }
        return 0;
    }

    /** The file name without {@code .gguf} (and without a split suffix's part number). */
    static String modelId(Path path) {
        String name = path.getFileName().toString();
        name = name.replaceFirst("(?i)\\.gguf$", "");
        return name.replaceFirst("-00001-of-\\d{5}$", "");
    }

    private static boolean isLoopback(String host, CommandLine cl) {
        try {
            return InetAddress.getByName(host).isLoopbackAddress();
        } catch (UnknownHostException e) {
            throw new CommandLine.ParameterException(cl, "--host: unknown host " + host);
        }
    }
}
