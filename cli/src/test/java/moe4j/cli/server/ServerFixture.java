package moe4j.cli.server;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Optional;
import java.util.function.BooleanSupplier;
import java.util.function.UnaryOperator;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.embedding.Pooling;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.generation.StopReason;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;

/**
 * A tiny random model, servers on free loopback ports, clients for them, and the reference: what the
 * engine generates for the same prompt without the server.
 */
final class ServerFixture implements AutoCloseable {

    static final int CONTEXT = 2048;
    static final String MODEL_ID = "tiny-moe";
    static final Duration TIMEOUT = Duration.ofSeconds(60);
    static final ObjectMapper JSON = new ObjectMapper();

    final Model model;
    final List<String> log = Collections.synchronizedList(new ArrayList<>());
    private final List<AutoCloseable> open = new ArrayList<>();

    private ServerFixture(Model model) {
        this.model = model;
    }

    /** Writes the {@code tiny} preset (F32, ChatML) into {@code dir} and loads it with a context of {@link #CONTEXT}. */
    static ServerFixture create(Path dir) throws IOException {
        Path file = dir.resolve(MODEL_ID + ".gguf");
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.F32, 7, file);
        return new ServerFixture(Model.load(file, LoadOptions.defaults().withContextLength(CONTEXT).withThreads(2)));
    }

    /** A server on a free loopback port with the given changes to the defaults; closed by {@link #closeServers}. */
    OpenAiServer start(UnaryOperator<ServerConfig> changes) throws IOException {
        ServerConfig config = changes.apply(ServerConfig.defaults(MODEL_ID).withAddress("127.0.0.1", 0).withLog(log::add));
        OpenAiServer server = OpenAiServer.start(model, config);
        open.add(server);
        return server;
    }

    OpenAiServer start(UnaryOperator<ServerConfig> changes, Pooling pooling) throws IOException {
        ServerConfig config = changes.apply(ServerConfig.defaults(MODEL_ID).withAddress("127.0.0.1", 0).withLog(log::add));
        OpenAiServer server = OpenAiServer.start(model, config, Optional.of(pooling));
        open.add(server);
        return server;
    }

    /** The official OpenAI client for {@code server}, without retries (a 503 must show, not be retried). */
    OpenAIClient client(OpenAiServer server, String apiKey) {
        OpenAIClient client = OpenAIOkHttpClient.builder().baseUrl(server.baseUri() + "/v1").apiKey(apiKey)
                .maxRetries(0).timeout(TIMEOUT).build();
        open.add(client::close);
        return client;
    }

    OpenAIClient client(OpenAiServer server) {
        return client(server, "unused");
    }

    /** Closes the servers and clients of one test. */
    void closeServers() throws Exception {
        for (AutoCloseable c : open.reversed()) {
            c.close();
        }
        open.clear();
        log.clear();
    }

    @Override
    public void close() throws Exception {
        closeServers();
        model.close();
    }

    // ------------------------------------------------------------------------------------- reference

    /** A prompt and what greedy generation without the server makes of it. */
    record Reference(int promptTokens, GenerationResult result) {
        String text() { return result.text(); }

        int completionTokens() { return result.tokens().length; }

        String finishReason() {
            return switch (result.stopReason()) {
                case MAX_TOKENS, CONTEXT_FULL -> "length";
                default -> "stop";
            };
        }
    }

    /** Greedy generation for a chat, as the server renders and tokenizes it, on a fresh session. */
    Reference chatReference(List<ChatMessage> messages, int maxTokens) {
        String text = ChatTemplates.fromGguf(model.file().metadata()).render(messages, true, true);
        return reference(model.tokenizer().encode(text, true, true), maxTokens);
    }

    /** Greedy generation for a text prompt on a fresh session. */
    Reference completionReference(String prompt, int maxTokens) {
        return reference(model.tokenizer().encode(prompt), maxTokens);
    }

    private Reference reference(int[] prompt, int maxTokens) {
        try (Session session = model.newSession()) {
            GenerationResult r = new Generator(session, new Sampler(SamplerSettings.greedy(), session.vocabularySize()),
                    model.tokenizer()).generate(prompt, GenerationOptions.maxTokens(maxTokens), GenerationListener.NONE);
            return new Reference(prompt.length, r);
        }
    }

    /**
     * A user message whose greedy reply runs at least {@code tokens} tokens (a random model may end a
     * reply at any point; the search is deterministic for the fixed model).
     */
    String longReplyPrompt(int tokens) {
        for (int i = 0; i < 32; i++) {
            String prompt = "Tell me a long story, part " + i;
            if (chatReference(List.of(ChatMessage.user(prompt)), tokens).result().stopReason() == StopReason.MAX_TOKENS) {
                return prompt;
            }
        }
        return fail("no prompt found whose reply runs " + tokens + " tokens");
    }

    // ----------------------------------------------------------------------------------- raw HTTP

    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(TIMEOUT).version(HttpClient.Version.HTTP_1_1)
            .build();

    static HttpResponse<String> post(OpenAiServer server, String path, String body) throws IOException, InterruptedException {
        return HTTP.send(HttpRequest.newBuilder(server.baseUri().resolve(path)).timeout(TIMEOUT)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(OpenAiServer server, String path) throws IOException, InterruptedException {
        return HTTP.send(HttpRequest.newBuilder(server.baseUri().resolve(path)).timeout(TIMEOUT).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }

    static JsonNode json(HttpResponse<String> response) throws IOException {
        return JSON.readTree(response.body());
    }

    /**
     * A streaming chat request on a plain socket, read up to the first chunk that carries text (so the
     * generation is surely under way); the caller closes the socket to disconnect mid-stream.
     */
    static Socket openStream(OpenAiServer server, String userMessage, int maxTokens) throws IOException {
        String body = JSON.writeValueAsString(JSON.createObjectNode()
                .put("model", MODEL_ID).put("stream", true).put("temperature", 0).put("max_tokens", maxTokens)
                .set("messages", JSON.createArrayNode().add(JSON.createObjectNode().put("role", "user")
                        .put("content", userMessage))));
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        Socket socket = new Socket(InetAddress.getLoopbackAddress(), server.port());
        socket.setSoTimeout((int) TIMEOUT.toMillis());
        OutputStream out = socket.getOutputStream();
        out.write(("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: " + bytes.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        out.write(bytes);
        out.flush();
        InputStream in = socket.getInputStream();
        StringBuilder line = new StringBuilder();
        // bounded: the read timeout ends a stalled stream, the byte budget a runaway one
        for (int read = 0; read < 1 << 20; read++) {
            int b = in.read();
            if (b < 0) {
                break;
            }
            if (b != '\n') {
                line.append((char) b);
                continue;
            }
            String l = line.toString().strip();
            line.setLength(0);
            if (l.startsWith("data: {")) {
                JsonNode content = JSON.readTree(l.substring(6)).path("choices").path(0).path("delta").path("content");
                if (content.isTextual() && !content.textValue().isEmpty()) {
                    return socket;
                }
            }
        }
        socket.close();
        return fail("the stream ended before any text");
    }

    /** Waits (bounded) until {@code condition} holds. */
    static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out waiting until " + what);
            }
            Thread.sleep(20);
        }
    }

}
