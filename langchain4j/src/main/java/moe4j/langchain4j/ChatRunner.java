package moe4j.langchain4j;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.Content;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.ToolExecutionResultMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.request.ResponseFormatType;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
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
import moe4j.engine.sampling.Sampler;
import moe4j.engine.sampling.SamplerSettings;

/**
 * Runs one LangChain4j chat request on a moe4j model: maps the messages, renders them with the model's chat
 * template, and generates in a session of its own (so requests may run concurrently).
 */
final class ChatRunner {

    private static final String THINK_CLOSE = "</think>";

    private final Model model;
    private final Moe4jChatSettings settings;
    private final ChatTemplate template;
    private final String modelName;

    ChatRunner(Model model, Moe4jChatSettings settings) {
        this.model = Objects.requireNonNull(model, "model");
        this.settings = Objects.requireNonNull(settings, "settings");
        this.template = ChatTemplates.fromGguf(model.file().metadata());
        this.modelName = modelName(model);
    }

    static String modelName(Model model) {
        String name = model.config().name();
        return name.isEmpty() ? model.path().getFileName().toString() : name;
    }

    Moe4jChatSettings settings() { return settings; }

    String modelName() { return modelName; }

    /** Generates the reply to {@code request}, streaming its text to {@code listener}. */
    ChatResponse run(ChatRequest request, GenerationListener listener, CancellationToken cancellation) {
        ChatRequestParameters p = request.parameters();
        if (p.toolSpecifications() != null && !p.toolSpecifications().isEmpty()) {
            throw new UnsupportedFeatureException("tools are not supported by moe4j");
        }
        if (p.responseFormat() != null && p.responseFormat().type() == ResponseFormatType.JSON) {
            throw new UnsupportedFeatureException("JSON response formats are not supported by moe4j");
        }
        List<ChatMessage> messages = new ArrayList<>(request.messages().size());
        for (dev.langchain4j.data.message.ChatMessage m : request.messages()) {
            messages.add(toMoe4j(m));
        }
        String prompt = template.render(messages, true, settings.thinking());
        int[] tokens = model.tokenizer().encode(prompt, true, true);
        int context = model.contextLength();
        if (tokens.length >= context) {
            throw new IllegalArgumentException("the conversation is " + tokens.length + " tokens, which leaves no room"
                    + " for a reply in the context of " + context + " (LoadOptions.withContextLength raises it)");
        }
        int maxTokens = p.maxOutputTokens() != null ? p.maxOutputTokens() : context - tokens.length;
        GenerationOptions options = GenerationOptions.maxTokens(maxTokens)
                .withStopStrings(p.stopSequences() == null ? List.of() : p.stopSequences())
                .withCancellation(cancellation);
        GenerationResult result;
        try (Session session = model.newSession(Math.min(context, tokens.length + maxTokens))) {
            Generator generator = new Generator(session, new Sampler(sampling(p), session.vocabularySize()),
                    model.tokenizer());
            result = generator.generate(tokens, options, listener);
        }
        return ChatResponse.builder()
                .aiMessage(aiMessage(result.text()))
                .modelName(modelName)
                .tokenUsage(new TokenUsage(result.promptTokens(), result.tokens().length))
                .finishReason(switch (result.stopReason()) {
                    case END_OF_GENERATION, STOP_STRING -> FinishReason.STOP;
                    case MAX_TOKENS, CONTEXT_FULL -> FinishReason.LENGTH;
                    case CANCELLED -> FinishReason.OTHER;
                })
                .build();
    }

    /** The request's sampling over llama.cpp's defaults. */
    private SamplerSettings sampling(ChatRequestParameters p) {
        SamplerSettings s = SamplerSettings.defaults(settings.seed());
        if (p.temperature() != null) {
            s = s.withTemperature(p.temperature().floatValue());
        }
        if (p.topP() != null) {
            s = s.withTopP(p.topP().floatValue());
        }
        if (p.topK() != null) {
            s = s.withTopK(p.topK());
        }
        if (p.presencePenalty() != null || p.frequencyPenalty() != null) {
            s = s.withPenalties(s.repeatPenalty(), p.presencePenalty() == null ? 0f : p.presencePenalty().floatValue(),
                    p.frequencyPenalty() == null ? 0f : p.frequencyPenalty().floatValue(), s.penaltyLastN());
        }
        return s;
    }

    /** With reasoning on, the text up to {@code </think>} is the reasoning and the rest the answer. */
    private AiMessage aiMessage(String text) {
        int close = text.indexOf(THINK_CLOSE);
        if (!settings.thinking() || close < 0) {
            return AiMessage.from(text);
        }
        String thinking = text.substring(0, close).replaceFirst("^\\s*<think>", "").strip();
        return AiMessage.builder().thinking(thinking).text(text.substring(close + THINK_CLOSE.length()).strip()).build();
    }

    static ChatMessage toMoe4j(dev.langchain4j.data.message.ChatMessage m) {
        return switch (m) {
            case SystemMessage s -> ChatMessage.system(s.text());
            case UserMessage u -> ChatMessage.user(text(u.contents()));
            case AiMessage a -> {
                if (a.hasToolExecutionRequests()) {
                    throw new UnsupportedFeatureException("tool calls are not supported by moe4j");
                }
                yield ChatMessage.assistant(a.text() == null ? "" : a.text());
            }
            case ToolExecutionResultMessage t -> ChatMessage.tool(t.text());
            default -> throw new UnsupportedFeatureException(m.type() + " messages are not supported by moe4j");
        };
    }

    private static String text(List<Content> contents) {
        StringBuilder s = new StringBuilder();
        for (Content c : contents) {
            if (!(c instanceof TextContent t)) {
                throw new UnsupportedFeatureException(c.type() + " content is not supported by moe4j (text only)");
            }
            s.append(s.isEmpty() ? "" : "\n").append(t.text());
        }
        return s.toString();
    }
}
