package moe4j.langchain4j;

import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import moe4j.engine.Model;
import moe4j.engine.generation.CancellationToken;
import moe4j.engine.generation.GenerationListener;

/**
 * LangChain4j's {@link ChatModel} on a moe4j {@link Model}: the conversation is rendered with the model's chat
 * template and the reply generated in a session of its own, so concurrent calls are safe. Text only: tools,
 * images and JSON response formats are rejected with {@link dev.langchain4j.exception.UnsupportedFeatureException}.
 * The model stays the caller's to close.
 */
public final class Moe4jChatModel implements ChatModel {

    private final ChatRunner runner;

    public Moe4jChatModel(Model model) {
        this(model, Moe4jChatSettings.defaultSettings());
    }

    public Moe4jChatModel(Model model, Moe4jChatSettings settings) {
        this.runner = new ChatRunner(model, settings);
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        return runner.run(request, GenerationListener.NONE, new CancellationToken());
    }

    @Override
    public ChatRequestParameters defaultRequestParameters() {
        return runner.settings().defaults();
    }
}
