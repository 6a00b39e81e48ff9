package moe4j.cli.server;

import java.util.List;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.json.JsonMapper;

/**
 * The wire format: OpenAI's request and response objects as records, in snake_case JSON. Fields a
 * client may send in more than one form (a string or an array) are {@link JsonNode}s and checked by
 * hand; every other field has its JSON type, so a wrong type fails parsing (and becomes a 400).
 */
final class Api {

    private Api() {}

    /**
     * Snake-case names, unknown fields ignored, but no lenient coercions: {@code "0.5"} is not a number,
     * {@code 1.5} is not an integer.
     */
    static final ObjectMapper JSON = JsonMapper.builder()
            .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
            .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    // ------------------------------------------------------------------------------------ requests

    /** The request fields that choose how tokens are sampled and when generation stops. */
    interface GenerationFields {
        Boolean stream();

        StreamOptions streamOptions();

        Double temperature();

        Double topP();

        /** llama.cpp extension. */
        Integer topK();

        /** llama.cpp extension. */
        Double minP();

        Double presencePenalty();

        Double frequencyPenalty();

        /** A string or an array of strings. */
        JsonNode stop();

        Long seed();

        Integer n();
    }

    record ChatRequest(String model, List<Message> messages, Boolean stream, StreamOptions streamOptions,
                       Integer maxTokens, Integer maxCompletionTokens, Double temperature, Double topP, Integer topK,
                       Double minP, Double presencePenalty, Double frequencyPenalty, JsonNode stop, Long seed,
                       Integer n, Boolean logprobs, JsonNode tools, TemplateKwargs chatTemplateKwargs)
            implements GenerationFields {
    }

    /** @param content a string, an array of {@code {"type": "text", "text": ...}} parts, or null */
    record Message(String role, JsonNode content) {
    }

    record StreamOptions(Boolean includeUsage) {
    }

    /** Template switches (vLLM and llama.cpp extension); Qwen3 reads {@code enable_thinking}. */
    record TemplateKwargs(Boolean enableThinking) {
    }

    /** @param prompt a string, an array of one string, or an array of token ids */
    record CompletionRequest(String model, JsonNode prompt, Boolean stream, StreamOptions streamOptions,
                             Integer maxTokens, Double temperature, Double topP, Integer topK, Double minP,
                             Double presencePenalty, Double frequencyPenalty, JsonNode stop, Long seed, Integer n,
                             Integer logprobs, Boolean echo, Integer bestOf) implements GenerationFields {
    }

    /** @param input a string or an array of strings */
    record EmbeddingRequest(String model, JsonNode input, String encodingFormat, Integer dimensions) {
    }

    // ----------------------------------------------------------------------------------- responses

    record ChatCompletion(String id, String object, long created, String model, List<ChatChoice> choices,
                          Usage usage) {
    }

    /** @param logprobs always null: log-probabilities are not reported */
    record ChatChoice(int index, AssistantMessage message, Object logprobs, String finishReason) {
    }

    /** @param refusal always null */
    record AssistantMessage(String role, String content, Object refusal) {
    }

    /** @param usage only in the extra last chunk that {@code stream_options.include_usage} asks for */
    record ChatChunk(String id, String object, long created, String model, List<ChunkChoice> choices,
                     @JsonInclude(JsonInclude.Include.NON_NULL) Usage usage) {
    }

    record ChunkChoice(int index, Delta delta, Object logprobs, String finishReason) {
    }

    /** The first chunk carries the role, later ones the new text, the last one nothing. */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    record Delta(String role, String content) {
    }

    /** Both the whole completion and each streamed chunk of one ({@code object} is {@code text_completion}). */
    record Completion(String id, String object, long created, String model, List<CompletionChoice> choices,
                      @JsonInclude(JsonInclude.Include.NON_NULL) Usage usage) {
    }

    record CompletionChoice(String text, int index, Object logprobs, String finishReason) {
    }

    /** @param promptTokensDetails how many prompt tokens were already in the session's cache */
    record Usage(int promptTokens, int completionTokens, int totalTokens, PromptTokensDetails promptTokensDetails) {
        static Usage of(int prompt, int completion, int cached) {
            return new Usage(prompt, completion, prompt + completion, new PromptTokensDetails(cached));
        }
    }

    record PromptTokensDetails(int cachedTokens) {
    }

    record ModelList(String object, List<ModelInfo> data) {
    }

    record ModelInfo(String id, String object, long created, String ownedBy) {
    }

    /** @param embedding a float array, or a base64 string of little-endian floats */
    record EmbeddingList(String object, List<EmbeddingData> data, String model, EmbeddingUsage usage) {
    }

    record EmbeddingData(String object, Object embedding, int index) {
    }

    record EmbeddingUsage(int promptTokens, int totalTokens) {
    }

    record ErrorBody(ErrorDetail error) {
        static ErrorBody of(ApiException e) {
            return new ErrorBody(new ErrorDetail(e.getMessage(), e.type(), e.param(), e.code()));
        }
    }

    record ErrorDetail(String message, String type, String param, String code) {
    }

    record Health(String status, int slotsIdle, int slotsProcessing, int requestsQueued) {
    }
}
