package moe4j.langchain4j;

import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.chat.response.StreamingHandle;
import moe4j.engine.Model;
import moe4j.engine.generation.CancellationToken;
import moe4j.engine.generation.GenerationListener;

/**
 * LangChain4j's {@link StreamingChatModel} on a moe4j {@link Model}: as {@link Moe4jChatModel}, with the reply's
 * text passed to {@code onPartialResponse} as it is generated (complete characters, never part of a stop
 * sequence; with reasoning on, the {@code <think>} part too). Generation runs on the calling thread, which
 * returns after {@code onCompleteResponse} or {@code onError}. Cancelling through the partial response's
 * {@link StreamingHandle} stops generation before the next token, and no further callbacks follow.
 */
public final class Moe4jStreamingChatModel implements StreamingChatModel {

    private final ChatRunner runner;

    public Moe4jStreamingChatModel(Model model) {
        this(model, Moe4jChatSettings.defaultSettings());
    }

    public Moe4jStreamingChatModel(Model model, Moe4jChatSettings settings) {
        this.runner = new ChatRunner(model, settings);
    }

    @Override
    public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
        CancellationToken cancellation = new CancellationToken();
        StreamingHandle handle = new StreamingHandle() {
            @Override
            public void cancel() {
                cancellation.cancel();
            }

            @Override
            public boolean isCancelled() {
                return cancellation.isCancelled();
            }
        };
        PartialResponseContext context = new PartialResponseContext(handle);
        ChatResponse response;
        try {
            response = runner.run(request, new GenerationListener() {
                @Override
                public void onText(String text) {
                    if (!cancellation.isCancelled()) {
                        handler.onPartialResponse(new PartialResponse(text), context);
                    }
                }
            }, cancellation);
        } catch (RuntimeException e) {
            handler.onError(e);
            return;
        }
        if (!cancellation.isCancelled()) {
            handler.onCompleteResponse(response);
        }
    }

    @Override
    public ChatRequestParameters defaultRequestParameters() {
        return runner.settings().defaults();
    }
}
