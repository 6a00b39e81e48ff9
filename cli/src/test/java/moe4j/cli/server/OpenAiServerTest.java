package moe4j.cli.server;

import static moe4j.cli.server.ServerFixture.MODEL_ID;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.openai.client.OpenAIClient;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.embeddings.CreateEmbeddingResponse;
import com.openai.models.embeddings.EmbeddingCreateParams;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.embedding.EmbeddingOptions;
import moe4j.engine.embedding.Embedder;
import moe4j.engine.embedding.Pooling;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The server as an OpenAI client sees it: the official {@code openai-java} SDK against a real server on loopback. */
class OpenAiServerTest {

    private static final String SYSTEM = "You are a terse assistant.";
    private static final String USER = "What does the router do?";

    @TempDir
    static Path dir;
    private static ServerFixture fixture;

    @BeforeAll
    static void loadModel() throws Exception {
        fixture = ServerFixture.create(dir);
    }

    @AfterAll
    static void closeModel() throws Exception {
        fixture.close();
    }

    @AfterEach
    void closeServers() throws Exception {
        fixture.closeServers();
    }

    private static ChatCompletionCreateParams chat(String user, int maxTokens) {
        return ChatCompletionCreateParams.builder().model(MODEL_ID).addSystemMessage(SYSTEM).addUserMessage(user)
                .temperature(0.0).maxCompletionTokens(maxTokens).build();
    }

    private static ServerFixture.Reference chatReference(String user, int maxTokens) {
        return fixture.chatReference(List.of(ChatMessage.system(SYSTEM), ChatMessage.user(user)), maxTokens);
    }

    @Test
    void chatCompletionIsWhatTheEngineGenerates() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        ServerFixture.Reference expected = chatReference(USER, 12);
        assertFalse(expected.text().isEmpty(), "the fixed model's reply to the test prompt should not be empty");

        ChatCompletion completion = client.chat().completions().create(chat(USER, 12));

        assertTrue(completion.id().startsWith("chatcmpl-"), completion.id());
        assertEquals(MODEL_ID, completion.model());
        assertEquals(1, completion.choices().size());
        ChatCompletion.Choice choice = completion.choices().getFirst();
        assertEquals(expected.text(), choice.message().content().orElseThrow());
        assertEquals(expected.finishReason(), choice.finishReason().asString());
        var usage = completion.usage().orElseThrow();
        assertEquals(expected.promptTokens(), usage.promptTokens());
        assertEquals(expected.completionTokens(), usage.completionTokens());
        assertEquals(usage.promptTokens() + usage.completionTokens(), usage.totalTokens());
    }

    @Test
    void streamedChatCompletionAddsUpToTheSameReply() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        ServerFixture.Reference expected = chatReference(USER, 12);
        ChatCompletionCreateParams params = chat(USER, 12).toBuilder()
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build();

        StringBuilder text = new StringBuilder();
        List<String> finishReasons = new ArrayList<>();
        List<ChatCompletionChunk> chunks = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> stream = client.chat().completions().createStreaming(params)) {
            stream.stream().forEach(chunk -> {
                chunks.add(chunk);
                for (ChatCompletionChunk.Choice choice : chunk.choices()) {
                    choice.delta().content().ifPresent(text::append);
                    choice.finishReason().ifPresent(f -> finishReasons.add(f.asString()));
                }
            });
        }

        assertTrue(chunks.size() >= 3, "role, text and finish chunks expected, got " + chunks.size());
        assertEquals("assistant", chunks.getFirst().choices().getFirst().delta().role().orElseThrow().asString());
        assertEquals(expected.text(), text.toString());
        assertEquals(List.of(expected.finishReason()), finishReasons);
        var usage = chunks.getLast().usage().orElseThrow();
        assertTrue(chunks.getLast().choices().isEmpty(), "the usage chunk has no choices");
        assertEquals(expected.promptTokens(), usage.promptTokens());
        assertEquals(expected.completionTokens(), usage.completionTokens());
        assertEquals(1, chunks.stream().map(ChatCompletionChunk::id).distinct().count(), "one id for all chunks");
    }

    @Test
    void aFollowUpTurnReusesTheCachedConversation() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        ChatCompletion first = client.chat().completions().create(chat(USER, 8));
        String reply = first.choices().getFirst().message().content().orElseThrow();
        ChatCompletionCreateParams second = ChatCompletionCreateParams.builder().model(MODEL_ID)
                .addSystemMessage(SYSTEM).addUserMessage(USER).addAssistantMessage(reply).addUserMessage("And then?")
                .temperature(0.0).maxCompletionTokens(8).build();
        ServerFixture.Reference expected = fixture.chatReference(List.of(ChatMessage.system(SYSTEM), ChatMessage.user(USER),
                ChatMessage.assistant(reply), ChatMessage.user("And then?")), 8);

        ChatCompletion next = client.chat().completions().create(second);

        assertEquals(expected.text(), next.choices().getFirst().message().content().orElseThrow());
        var usage = next.usage().orElseThrow();
        assertEquals(expected.promptTokens(), usage.promptTokens());
        long cached = usage.promptTokensDetails().orElseThrow().cachedTokens().orElseThrow();
        assertTrue(cached >= first.usage().orElseThrow().promptTokens(),
                "the first turn's prompt should come from the cache, " + cached + " tokens did");
    }

    @Test
    void textCompletionsStreamedAndNot() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        String prompt = "The engine reads a model file";
        ServerFixture.Reference expected = fixture.completionReference(prompt, 10);
        CompletionCreateParams params = CompletionCreateParams.builder().model(MODEL_ID).prompt(prompt).maxTokens(10)
                .temperature(0.0).build();

        Completion completion = client.completions().create(params);
        assertTrue(completion.id().startsWith("cmpl-"), completion.id());
        assertEquals(expected.text(), completion.choices().getFirst().text());
        assertEquals(expected.finishReason(), completion.choices().getFirst().finishReason().asString());
        assertEquals(expected.promptTokens(), completion.usage().orElseThrow().promptTokens());
        assertEquals(expected.completionTokens(), completion.usage().orElseThrow().completionTokens());

        StringBuilder streamed = new StringBuilder();
        List<String> finishReasons = new ArrayList<>();
        try (StreamResponse<Completion> stream = client.completions().createStreaming(params)) {
            stream.stream().forEach(chunk -> chunk.choices().forEach(c -> {
                streamed.append(c.text());
                c._finishReason().asKnown().ifPresent(f -> finishReasons.add(f.asString()));
            }));
        }
        assertEquals(expected.text(), streamed.toString());
        assertEquals(List.of(expected.finishReason()), finishReasons);
    }

    @Test
    void stopStringsCutTheReply() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        String full = chatReference(USER, 12).text();
        String stop = full.substring(full.length() / 2, full.length() / 2 + 1);
        String expected = full.substring(0, full.indexOf(stop));

        ChatCompletion completion = client.chat().completions().create(chat(USER, 12).toBuilder().stop(stop).build());

        assertEquals(expected, completion.choices().getFirst().message().content().orElseThrow());
        assertEquals("stop", completion.choices().getFirst().finishReason().asString());
    }

    @Test
    void modelsAndHealth() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withParallel(2));
        OpenAIClient client = fixture.client(server);

        var models = client.models().list().data();
        assertEquals(List.of(MODEL_ID), models.stream().map(m -> m.id()).toList());
        assertEquals(MODEL_ID, client.models().retrieve(MODEL_ID).id());

        HttpResponse<String> health = ServerFixture.get(server, "/health");
        assertEquals(200, health.statusCode());
        JsonNode body = ServerFixture.json(health);
        assertEquals("ok", body.get("status").asText());
        assertEquals(2, body.get("slots_idle").asInt());
        assertEquals(0, body.get("requests_queued").asInt());
    }

    @Test
    void apiKeyIsRequiredExceptForHealth() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withApiKey(Optional.of("s3cret")));

        assertThrows(UnauthorizedException.class, () -> fixture.client(server, "wrong").models().list());
        HttpResponse<String> noKey = ServerFixture.post(server, "/v1/chat/completions",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        assertEquals(401, noKey.statusCode());
        assertEquals("invalid_api_key", ServerFixture.json(noKey).at("/error/code").asText());
        assertEquals(200, ServerFixture.get(server, "/health").statusCode());

        ChatCompletion ok = fixture.client(server, "s3cret").chat().completions().create(chat(USER, 4));
        assertEquals(chatReference(USER, 4).text(), ok.choices().getFirst().message().content().orElseThrow());
    }

    @Test
    void concurrentClientsAllGetTheirOwnReplies() throws Exception {
        OpenAiServer server = fixture.start(c -> c.withParallel(2));
        OpenAIClient client = fixture.client(server);
        int clients = 4;
        List<String> questions = new ArrayList<>();
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < clients; i++) {
            questions.add(USER + " Question " + i + ".");
            expected.add(chatReference(questions.get(i), 10).text());
        }

        List<String> replies = new ArrayList<>();
        try (ExecutorService pool = Executors.newFixedThreadPool(clients)) {
            List<Future<String>> futures = new ArrayList<>();
            for (int i = 0; i < clients; i++) {
                String question = questions.get(i);
                boolean stream = i % 2 == 1;
                futures.add(pool.submit(() -> stream ? streamedReply(client, chat(question, 10))
                        : client.chat().completions().create(chat(question, 10)).choices().getFirst().message()
                        .content().orElseThrow()));
            }
            for (Future<String> f : futures) {
                replies.add(f.get(ServerFixture.TIMEOUT.toSeconds(), TimeUnit.SECONDS));
            }
        }

        assertEquals(expected, replies);
        ServerFixture.await("every slot is free again", () -> server.stats().processing() == 0);
    }

    private static String streamedReply(OpenAIClient client, ChatCompletionCreateParams params) {
        StringBuilder text = new StringBuilder();
        try (StreamResponse<ChatCompletionChunk> stream = client.chat().completions().createStreaming(params)) {
            stream.stream().forEach(c -> c.choices().forEach(ch -> ch.delta().content().ifPresent(text::append)));
        }
        return text.toString();
    }

    @Test
    void embeddingsNeedAPooling() throws Exception {
        OpenAIClient client = fixture.client(fixture.start(c -> c));
        BadRequestException e = assertThrows(BadRequestException.class, () -> client.embeddings().create(
                EmbeddingCreateParams.builder().model(MODEL_ID).input("hello").build()));
        assertEquals(Optional.of("embeddings_not_supported"), e.code());
        assertTrue(e.getMessage().contains("does not provide embeddings"), e.getMessage());
    }

    @Test
    void embeddingsAreTheEmbeddersVectors() throws Exception {
        OpenAiServer server = fixture.start(c -> c, Pooling.MEAN);
        OpenAIClient client = fixture.client(server);
        List<String> texts = List.of("The router picks experts.", "Weights stay in the mapped file.");
        List<float[]> expected;
        try (Embedder embedder = Embedder.create(fixture.model, EmbeddingOptions.defaults().withPooling(Pooling.MEAN))) {
            expected = embedder.embedAll(texts);
        }

        CreateEmbeddingResponse one = client.embeddings().create(
                EmbeddingCreateParams.builder().model(MODEL_ID).input(texts.getFirst()).build());
        assertEquals(1, one.data().size());
        assertVector(expected.getFirst(), one.data().getFirst().embedding());

        CreateEmbeddingResponse two = client.embeddings().create(
                EmbeddingCreateParams.builder().model(MODEL_ID).inputOfArrayOfStrings(texts).build());
        assertEquals(2, two.data().size());
        for (int i = 0; i < 2; i++) {
            assertEquals(i, two.data().get(i).index());
            assertVector(expected.get(i), two.data().get(i).embedding());
        }
        int tokens = fixture.model.tokenizer().encode(texts.get(0)).length + fixture.model.tokenizer().encode(texts.get(1)).length;
        assertEquals(tokens, two.usage().promptTokens());

        HttpResponse<String> base64 = ServerFixture.post(server, "/v1/embeddings",
                "{\"input\":\"" + texts.getFirst() + "\",\"encoding_format\":\"base64\"}");
        assertEquals(200, base64.statusCode());
        ByteBuffer bytes = ByteBuffer.wrap(Base64.getDecoder().decode(ServerFixture.json(base64)
                .at("/data/0/embedding").asText())).order(ByteOrder.LITTLE_ENDIAN);
        float[] decoded = new float[bytes.remaining() / Float.BYTES];
        bytes.asFloatBuffer().get(decoded);
        assertEquals(boxed(expected.getFirst()), boxed(decoded));
    }

    private static void assertVector(float[] expected, List<Float> actual) {
        assertEquals(expected.length, actual.size());
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], actual.get(i), 1e-6f, "component " + i);
        }
    }

    private static List<Float> boxed(float[] v) {
        List<Float> out = new ArrayList<>(v.length);
        for (float x : v) {
            out.add(x);
        }
        return out;
    }
}
