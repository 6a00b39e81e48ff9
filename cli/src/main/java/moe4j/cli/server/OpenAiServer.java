package moe4j.cli.server;

import java.io.IOException;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import moe4j.engine.Model;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.embedding.EmbeddingOptions;
import moe4j.engine.embedding.Embedder;
import moe4j.engine.embedding.Pooling;
import moe4j.engine.generation.CancellationToken;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.generation.StopReason;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.tokenizer.Tokenizer;

/**
 * An OpenAI-compatible HTTP server for one model, on the JDK's built-in HTTP server:
 * {@code GET /v1/models}, {@code POST /v1/chat/completions}, {@code POST /v1/completions} (both with
 * server-sent-event streaming), {@code POST /v1/embeddings} (for a model with a pooling) and
 * {@code GET /health}.
 *
 * <p>Scheduling: {@link ServerConfig#parallel()} generations run at once, each in its own session; up to
 * {@link ServerConfig#queueLimit()} more wait, and beyond that requests get 503. Requests are read and
 * validated on their own (virtual) threads before they take a place in the queue, and generations never
 * write to a socket: a streaming request's tokens are handed to its request thread, so a slow or vanished
 * client cannot hold a session. A client that disconnects mid-stream is noticed at the next write and
 * its generation is cancelled.
 *
 * <p>Every error is an OpenAI-style JSON body {@code {"error": {"message", "type", "param", "code"}}}:
 * bad requests get 4xx, never 500.
 */
public final class OpenAiServer implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(OpenAiServer.class.getName());

    /** How long a request thread waits for its generation's next event before checking it was dropped. */
    private static final long POLL_MILLIS = 200;
    /** How long {@link #close()} waits for the requests' last answers before closing their connections. */
    private static final int STOP_WAIT_SECONDS = 5;
    /** How long {@link #close()} waits for running generations to notice their cancellation. */
    private static final long SHUTDOWN_WAIT_SECONDS = 30;
    private static final String SSE_DONE = "data: [DONE]\n\n";

    private final ServerConfig config;
    private final Tokenizer tokenizer;
    private final GenerationRequest.Reader reader;
    private final SessionPool sessions;
    /** Null when the model has no pooling. */
    private final EmbeddingRequests embeddings;
    private final ThreadPoolExecutor generators;
    private final ExecutorService handlers;
    private final HttpServer http;
    private final long created = Instant.now().getEpochSecond();
    private final Set<CancellationToken> running = ConcurrentHashMap.newKeySet();
    private final AtomicInteger processing = new AtomicInteger();
    private final AtomicLong disconnects = new AtomicLong();
    private final AtomicBoolean closed = new AtomicBoolean();

    private OpenAiServer(Model model, ServerConfig config, Optional<Pooling> pooling) throws IOException {
        this.config = config;
        this.tokenizer = model.tokenizer();
        this.reader = new GenerationRequest.Reader(tokenizer, ChatTemplates.fromGguf(model.file().metadata()),
                model.contextLength(), config.sampling(), config.seed());
        Pooling effective = pooling.orElseGet(() -> Pooling.declaredBy(model));
        this.embeddings = effective == Pooling.NONE ? null : new EmbeddingRequests(
                Embedder.create(model, EmbeddingOptions.defaults().withPooling(effective)), model.contextLength());
        this.sessions = new SessionPool(model, config.parallel());
        AtomicInteger threadNumber = new AtomicInteger();
        this.generators = new ThreadPoolExecutor(config.parallel(), config.parallel(), 0, TimeUnit.SECONDS,
                config.queueLimit() == 0 ? new SynchronousQueue<>()
                        : new ArrayBlockingQueue<>(config.queueLimit()),
                r -> Thread.ofPlatform().daemon().name("moe4j-server-slot-" + threadNumber.incrementAndGet()).unstarted(r));
        this.handlers = Executors.newVirtualThreadPerTaskExecutor();
        try {
            this.http = HttpServer.create(new InetSocketAddress(config.host(), config.port()), 0);
        } catch (BindException e) {
            close(false);
            throw new BindException("cannot listen on " + config.host() + ":" + config.port() + ": " + e.getMessage());
        } catch (IOException | RuntimeException e) {
            close(false);
            throw e;
        }
        http.setExecutor(handlers);
        http.createContext("/", this::handle);
        http.start();
    }

    /**
     * Starts serving {@code model}, with the pooling the model declares for embeddings. The model stays
     * the caller's: close the server first, then the model.
     *
     * @throws IOException when the address cannot be bound (e.g. the port is in use)
     */
    public static OpenAiServer start(Model model, ServerConfig config) throws IOException {
        return start(model, config, Optional.empty());
    }

    /** As {@link #start(Model, ServerConfig)}; {@code pooling} overrides the model's for embeddings. */
    public static OpenAiServer start(Model model, ServerConfig config, Optional<Pooling> pooling) throws IOException {
        return new OpenAiServer(model, config, pooling);
    }

    /** The port listened on (the chosen one when the configuration said 0). */
    public int port() {
        return http.getAddress().getPort();
    }

    /** E.g. {@code http://127.0.0.1:8080}. */
    public URI baseUri() {
        String host = http.getAddress().getAddress().getHostAddress();
        return URI.create("http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port());
    }

    public ServerConfig config() { return config; }

    /** Whether {@code /v1/embeddings} is served (the model, or the start's override, has a pooling). */
    public boolean providesEmbeddings() { return embeddings != null; }

    /** Counts at this moment. */
    public Stats stats() {
        return new Stats(sessions.size(), processing.get(), generators.getQueue().size(), disconnects.get());
    }

    /**
     * @param slots       generations that can run at once
     * @param processing  requests generating (or embedding) now
     * @param queued      requests waiting for a slot
     * @param disconnects streams whose client went away before the end (their generation was cancelled)
     */
    public record Stats(int slots, int processing, int queued, long disconnects) {
    }

    /**
     * Stops listening, cancels running and queued generations (their clients get an error or a cut
     * stream), waits for them to stop and releases the sessions.
     */
    @Override
    public void close() {
        close(true);
    }

    private void close(boolean started) {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        running.forEach(CancellationToken::cancel);
        for (Runnable queued : generators.shutdownNow()) {
            if (queued instanceof Future<?> f) {
                f.cancel(false);
            }
        }
        if (started) {
            // returns as soon as the cancelled requests have sent their last bytes
            http.stop(STOP_WAIT_SECONDS);
        }
        boolean stopped;
        try {
            stopped = generators.awaitTermination(SHUTDOWN_WAIT_SECONDS, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            stopped = false;
        }
        handlers.shutdownNow();
        if (stopped) {
            sessions.close();
            if (embeddings != null) {
                embeddings.embedder().close();
            }
        } else {
            LOG.warning("generations still running after " + SHUTDOWN_WAIT_SECONDS + " s; their sessions stay open");
        }
    }

    // ---------------------------------------------------------------------------------- routing

    /** One request being answered: what the log line reports. */
    private static final class Call {
        final HttpExchange exchange;
        final long start = System.nanoTime();
        int status;
        String detail = "";
        boolean responded;

        Call(HttpExchange exchange) {
            this.exchange = exchange;
        }
    }

    private void handle(HttpExchange exchange) {
        Call call = new Call(exchange);
        try (exchange) {
            try {
                route(call);
            } catch (ApiException e) {
                fail(call, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                fail(call, shuttingDown());
            } catch (IOException e) {
                call.status = call.status == 0 ? 499 : call.status;
                call.detail = "client connection lost: " + e.getMessage();
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "request failed: " + exchange.getRequestURI(), e);
                fail(call, new ApiException(500, ApiException.SERVER_ERROR, null, null,
                        "Internal error: " + e.getMessage()));
            }
        } finally {
            logCall(call);
        }
    }

    private void route(Call call) throws IOException, InterruptedException {
        HttpExchange ex = call.exchange;
        String method = ex.getRequestMethod();
        String path = ex.getRequestURI().getPath();
        if (path.equals("/health")) {
            requireMethod(ex, "GET");
            health(call);
            return;
        }
        authorize(ex);
        switch (path) {
            case "/v1/models" -> {
                requireMethod(ex, "GET");
                respond(call, 200, new Api.ModelList("list", List.of(modelInfo())));
            }
            case "/v1/chat/completions" -> {
                requireMethod(ex, "POST");
                generate(call, reader.chat(RequestBodies.parse(ex, Api.ChatRequest.class, config.maxBodyBytes())));
            }
            case "/v1/completions" -> {
                requireMethod(ex, "POST");
                generate(call, reader.completion(RequestBodies.parse(ex, Api.CompletionRequest.class, config.maxBodyBytes())));
            }
            case "/v1/embeddings" -> {
                requireMethod(ex, "POST");
                embeddings(call, RequestBodies.parse(ex, Api.EmbeddingRequest.class, config.maxBodyBytes()));
            }
            default -> {
                if (path.startsWith("/v1/models/")) {
                    requireMethod(ex, "GET");
                    String id = path.substring("/v1/models/".length());
                    if (!id.equals(config.modelId())) {
                        throw new ApiException(404, ApiException.INVALID_REQUEST, "model", "model_not_found",
                                "The model '" + id + "' does not exist; this server has '" + config.modelId() + "'.");
                    }
                    respond(call, 200, modelInfo());
                    return;
                }
                throw new ApiException(404, ApiException.INVALID_REQUEST, null, "not_found",
                        "Unknown endpoint " + method + " " + path + ".");
            }
        }
    }

    private static void requireMethod(HttpExchange ex, String allowed) {
        String method = ex.getRequestMethod();
        if (!method.equals(allowed)) {
            ex.getResponseHeaders().set("Allow", allowed);
            throw new ApiException(405, ApiException.INVALID_REQUEST, null, "method_not_allowed",
                    "Method " + method + " is not allowed here; use " + allowed + ".");
        }
    }

    private void authorize(HttpExchange ex) {
        if (config.apiKey().isEmpty()) {
            return;
        }
        String header = ex.getRequestHeaders().getFirst("Authorization");
        String prefix = "Bearer ";
        boolean ok = header != null && header.regionMatches(true, 0, prefix, 0, prefix.length())
                && MessageDigest.isEqual(header.substring(prefix.length()).strip().getBytes(StandardCharsets.UTF_8),
                config.apiKey().get().getBytes(StandardCharsets.UTF_8));
        if (!ok) {
            ex.getResponseHeaders().set("WWW-Authenticate", "Bearer");
            throw new ApiException(401, ApiException.INVALID_REQUEST, null, "invalid_api_key", header == null
                    ? "No API key provided: send it in the header 'Authorization: Bearer KEY'."
                    : "Incorrect API key provided.");
        }
    }

    private Api.ModelInfo modelInfo() {
        return new Api.ModelInfo(config.modelId(), "model", created, "moe4j");
    }

    private void health(Call call) throws IOException {
        boolean up = !closed.get();
        int busy = processing.get();
        respond(call, up ? 200 : 503, new Api.Health(up ? "ok" : "shutting down", Math.max(0, sessions.size() - busy),
                busy, generators.getQueue().size()));
    }

    // --------------------------------------------------------------------------------- generation

    /** What a generation hands to its request thread. */
    private sealed interface Event {
    }

    private record Started(int cachedTokens) implements Event {
    }

    private record Text(String text) implements Event {
    }

    private record Done(GenerationResult result, int cachedTokens) implements Event {
    }

    private record Failed(RuntimeException error) implements Event {
    }

    /** One generation, run on a slot thread; reports through {@link #events}, never touches the client. */
    private final class Job implements Runnable {
        final GenerationRequest request;
        final CancellationToken cancel = new CancellationToken();
        final BlockingQueue<Event> events = new LinkedBlockingQueue<>();

        Job(GenerationRequest request) {
            this.request = request;
        }

        @Override
        public void run() {
            processing.incrementAndGet();
            try {
                SessionPool.Slot slot = sessions.acquire(request.prompt());
                try {
                    generate(slot);
                } catch (RuntimeException | Error e) {
                    slot.forget();
                    events.add(new Failed(e instanceof RuntimeException r ? r : new IllegalStateException(e.toString(), e)));
                } finally {
                    sessions.release(slot);
                }
            } finally {
                processing.decrementAndGet();
            }
        }

        private void generate(SessionPool.Slot slot) {
            int[] prompt = request.prompt();
            int cached = slot.reuse(prompt);
            Sampler sampler = new Sampler(request.sampling(), slot.session().vocabularySize());
            for (int i = 0; i < cached; i++) {
                sampler.accept(prompt[i]);
            }
            events.add(new Started(cached));
            GenerationOptions options = GenerationOptions.maxTokens(request.maxTokens())
                    .withStopStrings(request.stops()).withCancellation(cancel);
            GenerationResult result = new Generator(slot.session(), sampler, tokenizer).generate(
                    Arrays.copyOfRange(prompt, cached, prompt.length), options, new GenerationListener() {
                        @Override
                        public void onText(String text) {
                            events.add(new Text(text));
                        }
                    });
            slot.remember(prompt, result.tokens());
            events.add(new Done(result, cached));
        }
    }

    private void generate(Call call, GenerationRequest request) throws IOException, InterruptedException {
        Job job = new Job(request);
        running.add(job.cancel);
        try {
            if (closed.get()) {
                throw shuttingDown();
            }
            Future<?> future = submit(Executors.callable(job));
            Responder responder = new Responder(call, request);
            while (true) {
                Event event = job.events.poll(POLL_MILLIS, TimeUnit.MILLISECONDS);
                if (event == null) {
                    if (future.isDone() && job.events.isEmpty()) {
                        // cancelled in the queue by close()
                        throw shuttingDown();
                    }
                    continue;
                }
                switch (event) {
                    case Started s -> responder.started();
                    case Text t -> responder.text(t.text());
                    case Done d -> {
                        if (d.result().stopReason() == StopReason.CANCELLED && responder.clientConnected()) {
                            // only close() cancels a generation whose client is still there: do not pass it off as complete
                            throw shuttingDown();
                        }
                        responder.done(d.result(), d.cachedTokens());
                        return;
                    }
                    case Failed f -> throw f.error();
                }
                if (!responder.clientConnected() && !job.cancel.isCancelled()) {
                    job.cancel.cancel();
                    disconnects.incrementAndGet();
                }
            }
        } catch (InterruptedException e) {
            job.cancel.cancel();
            throw e;
        } finally {
            running.remove(job.cancel);
        }
    }

    /** Runs {@code task} on a slot thread, or throws 503 when the queue is full. */
    private <T> Future<T> submit(Callable<T> task) {
        try {
            return generators.submit(task);
        } catch (RejectedExecutionException e) {
            throw closed.get() ? shuttingDown() : overloaded();
        }
    }

    private ApiException overloaded() {
        return new ApiException(503, ApiException.SERVER_ERROR, null, "server_overloaded",
                "The server is busy: " + config.parallel() + " requests are running and " + config.queueLimit()
                        + " waiting. Retry later.");
    }

    private static ApiException shuttingDown() {
        return new ApiException(503, ApiException.SERVER_ERROR, null, "server_shutting_down",
                "The server is shutting down.");
    }

    /** Writes a generation's answer: one JSON object at the end, or a stream of chunks as it goes. */
    private final class Responder {
        private final Call call;
        private final GenerationRequest request;
        private final String id;
        private final long createdAt = Instant.now().getEpochSecond();
        private OutputStream stream;
        private boolean connected = true;

        Responder(Call call, GenerationRequest request) {
            this.call = call;
            this.request = request;
            byte[] random = new byte[12];
            ThreadLocalRandom.current().nextBytes(random);
            this.id = (request.chat() ? "chatcmpl-" : "cmpl-") + HexFormat.of().formatHex(random);
        }

        boolean clientConnected() {
            return connected;
        }

        void started() {
            if (!request.stream()) {
                return;
            }
            HttpExchange ex = call.exchange;
            ex.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
            ex.getResponseHeaders().set("Cache-Control", "no-cache");
            try {
                ex.sendResponseHeaders(200, 0);
                call.status = 200;
                call.responded = true;
                stream = ex.getResponseBody();
            } catch (IOException e) {
                connected = false;
                return;
            }
            if (request.chat()) {
                send(chatChunk(new Api.Delta("assistant", ""), null));
            }
        }

        void text(String text) {
            if (request.stream()) {
                send(request.chat() ? chatChunk(new Api.Delta(null, text), null) : completionChunk(text, null, null));
            }
        }

        void done(GenerationResult result, int cached) throws IOException {
            String finish = finishReason(result);
            Api.Usage usage = Api.Usage.of(request.prompt().length, result.tokens().length, cached);
            call.detail = String.format(Locale.ROOT, "prompt %d tokens (%d cached) + %d generated, %s%s",
                    usage.promptTokens(), cached, usage.completionTokens(), finish, connected ? "" : ", client gone");
            if (!request.stream()) {
                Object body = request.chat()
                        ? new Api.ChatCompletion(id, "chat.completion", createdAt, config.modelId(),
                        List.of(new Api.ChatChoice(0, new Api.AssistantMessage("assistant", result.text(), null), null,
                                finish)), usage)
                        : new Api.Completion(id, "text_completion", createdAt, config.modelId(),
                        List.of(new Api.CompletionChoice(result.text(), 0, null, finish)), usage);
                respond(call, 200, body);
                return;
            }
            send(request.chat() ? chatChunk(new Api.Delta(null, null), finish) : completionChunk("", finish, null));
            if (request.includeUsage()) {
                send(request.chat()
                        ? new Api.ChatChunk(id, "chat.completion.chunk", createdAt, config.modelId(), List.of(), usage)
                        : new Api.Completion(id, "text_completion", createdAt, config.modelId(), List.of(), usage));
            }
            write(SSE_DONE);
        }

        private Api.ChatChunk chatChunk(Api.Delta delta, String finish) {
            return new Api.ChatChunk(id, "chat.completion.chunk", createdAt, config.modelId(),
                    List.of(new Api.ChunkChoice(0, delta, null, finish)), null);
        }

        private Api.Completion completionChunk(String text, String finish, Api.Usage usage) {
            return new Api.Completion(id, "text_completion", createdAt, config.modelId(),
                    List.of(new Api.CompletionChoice(text, 0, null, finish)), usage);
        }

        private void send(Object chunk) {
            try {
                write("data: " + Api.JSON.writeValueAsString(chunk) + "\n\n");
            } catch (JsonProcessingException e) {
                throw new IllegalStateException("cannot serialize a response chunk", e);
            }
        }

        private void write(String event) {
            if (!connected || stream == null) {
                return;
            }
            try {
                stream.write(event.getBytes(StandardCharsets.UTF_8));
                stream.flush();
            } catch (IOException e) {
                connected = false;
            }
        }
    }

    private static String finishReason(GenerationResult result) {
        return switch (result.stopReason()) {
            case MAX_TOKENS, CONTEXT_FULL -> "length";
            case END_OF_GENERATION, STOP_STRING, CANCELLED -> "stop";
        };
    }

    // --------------------------------------------------------------------------------- embeddings

    private void embeddings(Call call, Api.EmbeddingRequest request) throws IOException, InterruptedException {
        if (embeddings == null) {
            throw new ApiException(400, ApiException.INVALID_REQUEST, "model", "embeddings_not_supported",
                    "The model '" + config.modelId() + "' does not provide embeddings: it declares no pooling."
                            + " Serve an embedding model, or choose a pooling when starting the server (--pooling).");
        }
        EmbeddingRequests.Plan plan = embeddings.read(request);
        if (closed.get()) {
            throw shuttingDown();
        }
        Future<List<float[]>> future = submit(() -> {
            processing.incrementAndGet();
            try {
                return embeddings.embedder().embedAllTokens(plan.inputs());
            } finally {
                processing.decrementAndGet();
            }
        });
        List<float[]> vectors;
        try {
            vectors = future.get();
        } catch (CancellationException e) {
            throw shuttingDown();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : new IllegalStateException(e.getCause());
        }
        call.detail = plan.inputs().size() + " inputs, " + plan.tokens() + " tokens";
        respond(call, 200, embeddings.response(plan, vectors, config.modelId()));
    }

    // ---------------------------------------------------------------------------------- responses

    private static void respond(Call call, int status, Object body) throws IOException {
        byte[] bytes = Api.JSON.writeValueAsBytes(body);
        HttpExchange ex = call.exchange;
        ex.getResponseHeaders().set("Content-Type", "application/json");
        call.status = status;
        call.responded = true;
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }

    /** Answers with the error, or, when a stream has begun, ends the stream with it. */
    private static void fail(Call call, ApiException e) {
        call.detail = e.getMessage();
        try {
            if (call.responded) {
                if (call.status == 200) {
                    OutputStream out = call.exchange.getResponseBody();
                    out.write(("data: " + Api.JSON.writeValueAsString(Api.ErrorBody.of(e)) + "\n\n")
                            .getBytes(StandardCharsets.UTF_8));
                    out.flush();
                }
                return;
            }
            if (e.status() == 503) {
                call.exchange.getResponseHeaders().set("Retry-After", "1");
            }
            respond(call, e.status(), Api.ErrorBody.of(e));
        } catch (IOException io) {
            call.detail += " (client connection lost)";
        }
    }

    private void logCall(Call call) {
        double seconds = (System.nanoTime() - call.start) / 1e9;
        config.log().accept(String.format(Locale.ROOT, "%s %s %d %.2f s%s", call.exchange.getRequestMethod(),
                call.exchange.getRequestURI().getPath(), call.status, seconds,
                call.detail.isEmpty() ? "" : ": " + call.detail));
    }
}
