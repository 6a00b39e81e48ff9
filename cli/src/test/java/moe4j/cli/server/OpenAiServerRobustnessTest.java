package moe4j.cli.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import com.fasterxml.jackson.databind.JsonNode;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Bad requests, overload, disconnecting clients and shutdown: 4xx/503 JSON errors, never a 500 or a hang. */
class OpenAiServerRobustnessTest {

    private static final String CHAT = "/v1/chat/completions";
    private static final String COMPLETIONS = "/v1/completions";
    private static final String HI = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    /** Far longer than the fixture's context in tokens. */
    private static final String LONG_TEXT = "the engine reads a model file and maps its weights ".repeat(800);
    /** Generations that would take long enough to still be running while a test acts on them. */
    private static final int LONG_REPLY_TOKENS = ServerFixture.CONTEXT - 128;

    @TempDir
    static Path dir;
    private static ServerFixture fixture;
    private static String longReplyPrompt;

    @BeforeAll
    static void loadModel() throws Exception {
        fixture = ServerFixture.create(dir);
        longReplyPrompt = fixture.longReplyPrompt(LONG_REPLY_TOKENS);
    }

    @AfterAll
    static void closeModel() throws Exception {
        fixture.close();
    }

    @AfterEach
    void closeServers() throws Exception {
        fixture.closeServers();
    }

    static Stream<Arguments> badRequests() {
        return Stream.of(
                bad("malformed JSON", CHAT, "{\"messages\": [", 400, null, "invalid_json"),
                bad("not an object", CHAT, "[1, 2]", 400, null, null),
                bad("empty body", CHAT, "", 400, null, null),
                bad("missing messages", CHAT, "{}", 400, "messages", "missing_required_parameter"),
                bad("messages not an array", CHAT, "{\"messages\":\"hi\"}", 400, "messages", "invalid_type"),
                bad("content a number", CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
                        "messages[0].content", "invalid_type"),
                bad("unknown role", CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400,
                        "messages[0].role", "invalid_value"),
                bad("temperature a string", CHAT, "{" + HI + ",\"temperature\":\"hot\"}", 400, "temperature", "invalid_type"),
                bad("temperature too high", CHAT, "{" + HI + ",\"temperature\":5}", 400, "temperature", "invalid_value"),
                bad("top_p above 1", CHAT, "{" + HI + ",\"top_p\":1.5}", 400, "top_p", "invalid_value"),
                bad("max_tokens a string", CHAT, "{" + HI + ",\"max_tokens\":\"ten\"}", 400, "max_tokens", "invalid_type"),
                bad("max_tokens a fraction", CHAT, "{" + HI + ",\"max_tokens\":1.5}", 400, "max_tokens", null),
                bad("max_tokens zero", CHAT, "{" + HI + ",\"max_tokens\":0}", 400, "max_tokens", "integer_below_min_value"),
                bad("max_tokens negative", CHAT, "{" + HI + ",\"max_tokens\":-3}", 400, "max_tokens", "integer_below_min_value"),
                bad("max_tokens over the context", CHAT, "{" + HI + ",\"max_tokens\":1000000}", 400, "max_tokens",
                        "integer_above_max_value"),
                bad("max_tokens over int", CHAT, "{" + HI + ",\"max_tokens\":99999999999}", 400, "max_tokens", null),
                bad("max_completion_tokens zero", CHAT, "{" + HI + ",\"max_completion_tokens\":0}", 400,
                        "max_completion_tokens", "integer_below_min_value"),
                bad("stream a string", CHAT, "{" + HI + ",\"stream\":\"yes\"}", 400, "stream", "invalid_type"),
                bad("stop not strings", CHAT, "{" + HI + ",\"stop\":[1]}", 400, "stop", "invalid_type"),
                bad("stop empty", CHAT, "{" + HI + ",\"stop\":\"\"}", 400, "stop", "invalid_value"),
                bad("several choices", CHAT, "{" + HI + ",\"n\":2}", 400, "n", "unsupported_parameter"),
                bad("tools", CHAT, "{" + HI + ",\"tools\":[{\"type\":\"function\"}]}", 400, "tools", "unsupported_parameter"),
                bad("prompt over the context", CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"" + LONG_TEXT + "\"}]}",
                        400, "messages", "context_length_exceeded"),
                bad("completion without prompt", COMPLETIONS, "{}", 400, "prompt", "missing_required_parameter"),
                bad("completion prompt a number", COMPLETIONS, "{\"prompt\":5}", 400, "prompt", "invalid_type"),
                bad("completion prompt empty array", COMPLETIONS, "{\"prompt\":[]}", 400, "prompt", "invalid_type"),
                bad("completion token out of range", COMPLETIONS, "{\"prompt\":[1,999999]}", 400, "prompt[1]", "invalid_value"),
                bad("completion prompt over the context", COMPLETIONS, "{\"prompt\":\"" + LONG_TEXT + "\"}", 400,
                        "prompt", "context_length_exceeded"),
                bad("unknown endpoint", "/v1/nothing", "{}", 404, null, "not_found"));
    }

    private static Arguments bad(String name, String path, String body, int status, String param, String code) {
        return Arguments.of(name, path, body, status, param, code);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badRequests")
    void badRequestsGetAnOpenAiStyleError(String name, String path, String body, int status, String param, String code)
            throws Exception {
        OpenAiServer server = fixture.start(c -> c);

        HttpResponse<String> response = ServerFixture.post(server, path, body);

        assertError(response, status, param, code);
        assertEquals(0, server.stats().processing());
        assertEquals(200, ServerFixture.post(server, CHAT, "{" + HI + ",\"max_tokens\":2}").statusCode(),
                "the server still answers after: " + name);
    }

    private static JsonNode assertError(HttpResponse<String> response, int status, String param, String code)
            throws IOException {
        assertEquals(status, response.statusCode(), response.body());
        assertTrue(response.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonNode error = ServerFixture.json(response).get("error");
        assertFalse(error.get("message").asText().isBlank(), response.body());
        assertTrue(error.get("type").isTextual(), response.body());
        assertTrue(error.has("param") && error.has("code"), response.body());
        if (param != null) {
            assertEquals(param, error.get("param").asText(), response.body());
        }
        if (code != null) {
            assertEquals(code, error.get("code").asText(), response.body());
        }
        return error;
    }

    @Test
    void oversizedBodyGets413() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withMaxBodyBytes(64 * 1024));
        String body = "{" + HI + ",\"padding\":\"" + "x".repeat(256 * 1024) + "\"}";

        assertError(ServerFixture.post(server, CHAT, body), 413, null, "request_too_large");
        assertEquals(200, ServerFixture.post(server, CHAT, "{" + HI + ",\"max_tokens\":2}").statusCode());
    }

    @Test
    void wrongMethodGets405() throws Exception {
        OpenAiServer server = fixture.start(c -> c);
        HttpResponse<String> response = ServerFixture.get(server, CHAT);
        assertError(response, 405, null, "method_not_allowed");
        assertEquals("POST", response.headers().firstValue("Allow").orElse(""));
    }

    @Test
    void unknownFieldsAreIgnored() throws Exception {
        OpenAiServer server = fixture.start(c -> c);
        HttpResponse<String> response = ServerFixture.post(server, CHAT, "{" + HI
                + ",\"max_tokens\":3,\"frobnicate\":{\"deep\":[1,2,{}]},\"user\":\"someone\",\"logit_bias\":{\"5\":1}}");
        assertEquals(200, response.statusCode(), response.body());
        assertEquals("chat.completion", ServerFixture.json(response).get("object").asText());
    }

    @Test
    void aClientThatDisconnectsMidStreamFreesItsSlot() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withParallel(1));

        try (Socket stream = ServerFixture.openStream(server, longReplyPrompt, LONG_REPLY_TOKENS)) {
            assertEquals(1, server.stats().processing());
        }

        ServerFixture.await("the server noticed the disconnect and stopped generating",
                () -> server.stats().disconnects() == 1 && server.stats().processing() == 0);
        ChatCompletion next = fixture.client(server).chat().completions().create(ChatCompletionCreateParams.builder()
                .model(ServerFixture.MODEL_ID).addUserMessage("hi").maxCompletionTokens(3).build());
        assertEquals(1, next.choices().size());
        assertTrue(fixture.log.stream().anyMatch(l -> l.contains("client gone")), String.join("\n", fixture.log));
    }

    @Test
    void requestsBeyondTheQueueGet503() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withParallel(1).withQueueLimit(1));
        CompletableFuture<HttpResponse<String>> queued;
        try (Socket running = ServerFixture.openStream(server, longReplyPrompt, LONG_REPLY_TOKENS)) {
            queued = CompletableFuture.supplyAsync(() -> {
                try {
                    return ServerFixture.post(server, CHAT, "{" + HI + ",\"max_tokens\":2}");
                } catch (IOException | InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            ServerFixture.await("the second request is queued", () -> server.stats().queued() == 1);

            HttpResponse<String> rejected = ServerFixture.post(server, CHAT, "{" + HI + ",\"max_tokens\":2}");

            assertError(rejected, 503, null, "server_overloaded");
            assertEquals("1", rejected.headers().firstValue("Retry-After").orElse(""));
            assertEquals(1, server.stats().processing(), "the long generation was still running");
        }
        assertEquals(200, queued.get(ServerFixture.TIMEOUT.toSeconds(), TimeUnit.SECONDS).statusCode(),
                "the queued request is served once the slot is free");
    }

    @Test
    void closeEndsRunningAndQueuedRequests() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withParallel(1));
        try (Socket running = ServerFixture.openStream(server, longReplyPrompt, LONG_REPLY_TOKENS)) {
            CompletableFuture<Integer> queued = CompletableFuture.supplyAsync(() -> {
                try {
                    return ServerFixture.post(server, CHAT, "{" + HI + ",\"max_tokens\":2}").statusCode();
                } catch (IOException | InterruptedException e) {
                    return -1;
                }
            });
            ServerFixture.await("the second request is queued", () -> server.stats().queued() == 1);

            server.close();

            assertEquals(0, server.stats().processing());
            int status = queued.get(ServerFixture.TIMEOUT.toSeconds(), TimeUnit.SECONDS);
            assertTrue(status == 503 || status == -1, "queued request: " + status);
            // the stream ends with an error event, not as if the reply were complete (bounded by the read timeout)
            String rest = new String(running.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(rest.contains("\"code\":\"server_shutting_down\""), rest);
            assertFalse(rest.contains("[DONE]"), rest);
        }
    }

    @Test
    void aStreamThatAsksForTooMuchGetsAJsonErrorNotAStream() throws Exception {
        OpenAiServer server = fixture.start(c -> c);
        HttpResponse<String> response = ServerFixture.post(server, CHAT,
                "{\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"" + LONG_TEXT + "\"}]}");
        assertError(response, 400, "messages", "context_length_exceeded");
        List<String> lines = fixture.log;
        assertTrue(lines.stream().anyMatch(l -> l.contains(" 400 ")), String.join("\n", lines));
    }
}
