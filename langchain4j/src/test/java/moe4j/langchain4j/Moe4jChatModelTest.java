package moe4j.langchain4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.ImageContent;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.output.FinishReason;
import moe4j.engine.LoadOptions;
import moe4j.engine.Model;
import moe4j.engine.Session;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplates;
import moe4j.engine.generation.GenerationListener;
import moe4j.engine.generation.GenerationOptions;
import moe4j.engine.generation.GenerationResult;
import moe4j.engine.generation.Generator;
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;
import moe4j.engine.testmodel.ModelShape;
import moe4j.engine.testmodel.TensorMix;
import moe4j.engine.testmodel.TestModelGenerator;

/** {@link Moe4jChatModel} and {@link Moe4jStreamingChatModel} driven through LangChain4j's interfaces. */
class Moe4jChatModelTest {

    private static final String SYSTEM = "You are terse.";
    private static final String QUESTION = "Name a colour.";

    @TempDir
    static Path dir;
    static Model model;

    @BeforeAll
    static void load() throws IOException {
        Path file = dir.resolve("tiny.gguf");
        TestModelGenerator.write(ModelShape.tiny(), TensorMix.F32, 9, file);
        model = Model.load(file, LoadOptions.defaults().withThreads(2));
    }

    @AfterAll
    static void close() {
        model.close();
    }

    /** What the engine generates greedily for the conversation, without the adapter. */
    private static GenerationResult direct(int maxTokens) {
        String prompt = ChatTemplates.fromGguf(model.file().metadata())
                .render(List.of(ChatMessage.system(SYSTEM), ChatMessage.user(QUESTION)), true, false);
        int[] tokens = model.tokenizer().encode(prompt, true, true);
        try (Session s = model.newSession()) {
            return new Generator(s, new Sampler(SamplerSettings.greedy(), s.vocabularySize()), model.tokenizer())
                    .generate(tokens, GenerationOptions.maxTokens(maxTokens), GenerationListener.NONE);
        }
    }

    private static ChatRequest request(ChatRequestParameters parameters) {
        return ChatRequest.builder().messages(SystemMessage.from(SYSTEM), UserMessage.from(QUESTION))
                .parameters(parameters).build();
    }

    private static ChatRequestParameters greedy(int maxTokens) {
        return ChatRequestParameters.builder().temperature(0.0).maxOutputTokens(maxTokens).build();
    }

    @Test
    void chatModelRepliesAsTheEngineDoes() {
        ChatModel chat = new Moe4jChatModel(model);
        GenerationResult expected = direct(12);
        ChatResponse r = chat.chat(request(greedy(12)));
        assertEquals(expected.text(), r.aiMessage().text());
        assertEquals(expected.promptTokens(), r.tokenUsage().inputTokenCount());
        assertEquals(expected.tokens().length, r.tokenUsage().outputTokenCount());
        assertEquals(expected.stopReason() == moe4j.engine.generation.StopReason.MAX_TOKENS ? FinishReason.LENGTH
                : FinishReason.STOP, r.finishReason());
        assertEquals(ChatRunner.modelName(model), r.modelName());
        assertFalse(r.modelName().isEmpty());
    }

    @Test
    void defaultParametersApplyUnlessTheRequestOverridesThem() {
        ChatModel chat = new Moe4jChatModel(model, Moe4jChatSettings.defaultSettings().withDefaults(greedy(3)));
        ChatResponse r = chat.chat(UserMessage.from(QUESTION));
        assertTrue(r.tokenUsage().outputTokenCount() <= 3, "max output tokens from the defaults");
        ChatResponse longer = chat.chat(ChatRequest.builder().messages(SystemMessage.from(SYSTEM),
                UserMessage.from(QUESTION)).parameters(ChatRequestParameters.builder().maxOutputTokens(12).build()).build());
        assertEquals(direct(12).text(), longer.aiMessage().text(), "temperature 0 from the defaults, 12 tokens from the request");
        assertNotNull(chat.chat("hello"), "the String convenience method works too");
    }

    @Test
    void stopSequencesCutTheReply() {
        ChatModel chat = new Moe4jChatModel(model);
        String full = chat.chat(request(greedy(24))).aiMessage().text();
        assertTrue(full.length() >= 6, "the random model says enough to cut: '" + full + "'");
        String stop = full.substring(4, 6);
        ChatResponse cut = chat.chat(request(ChatRequestParameters.builder().temperature(0.0).maxOutputTokens(24)
                .stopSequences(stop).build()));
        assertEquals(full.substring(0, full.indexOf(stop)), cut.aiMessage().text());
        assertEquals(FinishReason.STOP, cut.finishReason());
    }

    @Test
    void samplingWithASeedIsRepeatable() {
        ChatRequestParameters warm = ChatRequestParameters.builder().temperature(1.0).topP(0.9).topK(50)
                .presencePenalty(0.5).maxOutputTokens(10).build();
        ChatModel a = new Moe4jChatModel(model, Moe4jChatSettings.defaultSettings().withSeed(42));
        ChatModel b = new Moe4jChatModel(model, Moe4jChatSettings.defaultSettings().withSeed(42));
        assertEquals(a.chat(request(warm)).aiMessage().text(), b.chat(request(warm)).aiMessage().text());
    }

    @Test
    void streamingDeliversTheReplyInPieces() {
        StreamingChatModel streaming = new Moe4jStreamingChatModel(model);
        List<String> pieces = new ArrayList<>();
        AtomicReference<ChatResponse> complete = new AtomicReference<>();
        AtomicReference<Throwable> error = new AtomicReference<>();
        streaming.chat(request(greedy(12)), new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(String partial) {
                pieces.add(partial);
            }

            @Override
            public void onCompleteResponse(ChatResponse response) {
                complete.set(response);
            }

            @Override
            public void onError(Throwable e) {
                error.set(e);
            }
        });
        assertNull(error.get());
        assertNotNull(complete.get(), "onCompleteResponse was called before chat returned");
        String expected = direct(12).text();
        assertEquals(expected, complete.get().aiMessage().text());
        assertEquals(expected, String.join("", pieces));
        assertTrue(pieces.size() > 1, "streamed in several pieces: " + pieces);
    }

    @Test
    void cancellingStopsTheStream() {
        StreamingChatModel streaming = new Moe4jStreamingChatModel(model);
        List<String> pieces = new ArrayList<>();
        AtomicReference<ChatResponse> complete = new AtomicReference<>();
        streaming.chat(request(greedy(24)), new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(PartialResponse partial, PartialResponseContext context) {
                pieces.add(partial.text());
                context.streamingHandle().cancel();
                assertTrue(context.streamingHandle().isCancelled());
            }

            @Override
            public void onCompleteResponse(ChatResponse response) {
                complete.set(response);
            }

            @Override
            public void onError(Throwable e) {
                throw new AssertionError(e);
            }
        });
        assertEquals(1, pieces.size(), "nothing after the cancel: " + pieces);
        assertNull(complete.get(), "no completion after a cancel");
    }

    @Test
    void unsupportedFeaturesAreRejected() {
        ChatModel chat = new Moe4jChatModel(model);
        ChatRequest withTools = ChatRequest.builder().messages(UserMessage.from(QUESTION))
                .toolSpecifications(ToolSpecification.builder().name("clock").description("tells the time").build())
                .build();
        assertThrows(UnsupportedFeatureException.class, () -> chat.chat(withTools));
        ChatRequest withImage = ChatRequest.builder()
                .messages(UserMessage.from(ImageContent.from("https://example.com/cat.png"))).build();
        UnsupportedFeatureException e = assertThrows(UnsupportedFeatureException.class, () -> chat.chat(withImage));
        assertTrue(e.getMessage().contains("IMAGE content is not supported"), e.getMessage());

        AtomicReference<Throwable> error = new AtomicReference<>();
        new Moe4jStreamingChatModel(model).chat(withTools, new StreamingChatResponseHandler() {
            @Override
            public void onCompleteResponse(ChatResponse response) {
                throw new AssertionError("no response expected");
            }

            @Override
            public void onError(Throwable t) {
                error.set(t);
            }
        });
        assertInstanceOf(UnsupportedFeatureException.class, error.get());
        assertFalse(error.get().getMessage().isEmpty());
    }
}
