package moe4j.cli.server;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import java.util.SplittableRandom;

import com.fasterxml.jackson.databind.JsonNode;
import moe4j.engine.chat.ChatMessage;
import moe4j.engine.chat.ChatTemplate;
import moe4j.engine.sampling.SamplerSettings;
import moe4j.engine.tokenizer.Tokenizer;

/**
 * A validated generation: the prompt's tokens, how to sample and when to stop, and how to answer.
 *
 * @param chat         a chat completion (else a text completion)
 * @param prompt       at least one token, at most the context length
 * @param sampling     the request's settings over the server's defaults
 * @param maxTokens    most tokens to generate (generation also ends when the context is full)
 * @param stops        texts that end generation
 * @param stream       answer with server-sent events
 * @param includeUsage when streaming, end with a chunk that holds the token counts
 */
record GenerationRequest(boolean chat, int[] prompt, SamplerSettings sampling, int maxTokens, List<String> stops,
                         boolean stream, boolean includeUsage) {

    /** Most stop strings a request may give. */
    static final int MAX_STOPS = 16;
    /** OpenAI's default {@code max_tokens} of a text completion. */
    static final int DEFAULT_COMPLETION_TOKENS = 16;

    /** Turns requests into {@link GenerationRequest}s for one model, or throws {@link ApiException}s. */
    static final class Reader {
        private final Tokenizer tokenizer;
        private final ChatTemplate template;
        private final int contextLength;
        private final SamplerSettings defaults;
        private final OptionalLong seed;
        private final SplittableRandom seeds = new SplittableRandom();

        Reader(Tokenizer tokenizer, ChatTemplate template, int contextLength, SamplerSettings defaults,
               OptionalLong seed) {
            this.tokenizer = tokenizer;
            this.template = template;
            this.contextLength = contextLength;
            this.defaults = defaults;
            this.seed = seed;
        }

        GenerationRequest chat(Api.ChatRequest r) {
            if (r.messages() == null) {
                throw ApiException.missing("messages");
            }
            if (r.messages().isEmpty()) {
                throw ApiException.invalid("messages", "'messages' must hold at least one message.");
            }
            if (r.tools() != null && !r.tools().isNull() && !r.tools().isEmpty()) {
                throw ApiException.unsupported("tools", "Tool calls are not supported by this server.");
            }
            if (Boolean.TRUE.equals(r.logprobs())) {
                throw ApiException.unsupported("logprobs", "Log-probabilities are not supported by this server.");
            }
            List<ChatMessage> messages = new ArrayList<>(r.messages().size());
            for (int i = 0; i < r.messages().size(); i++) {
                messages.add(message(r.messages().get(i), "messages[" + i + "]"));
            }
            boolean thinking = r.chatTemplateKwargs() == null || r.chatTemplateKwargs().enableThinking() == null
                    || r.chatTemplateKwargs().enableThinking();
            int[] prompt = tokenizer.encode(template.render(messages, true, thinking), true, true);
            checkPrompt(prompt, "messages");
            String limitParam = r.maxCompletionTokens() != null ? "max_completion_tokens" : "max_tokens";
            Integer limit = r.maxCompletionTokens() != null ? r.maxCompletionTokens() : r.maxTokens();
            return common(true, prompt, r, maxTokens(limit, limitParam, contextLength));
        }

        GenerationRequest completion(Api.CompletionRequest r) {
            if (Boolean.TRUE.equals(r.echo())) {
                throw ApiException.unsupported("echo", "'echo' is not supported by this server.");
            }
            if (r.bestOf() != null && r.bestOf() != 1) {
                throw ApiException.unsupported("best_of", "Only best_of = 1 is supported.");
            }
            if (r.logprobs() != null && r.logprobs() != 0) {
                throw ApiException.unsupported("logprobs", "Log-probabilities are not supported by this server.");
            }
            int[] prompt = completionPrompt(r.prompt());
            checkPrompt(prompt, "prompt");
            return common(false, prompt, r, maxTokens(r.maxTokens(), "max_tokens", DEFAULT_COMPLETION_TOKENS));
        }

        private GenerationRequest common(boolean chat, int[] prompt, Api.GenerationFields r, int maxTokens) {
            if (r.n() != null && r.n() != 1) {
                throw ApiException.unsupported("n", "Only n = 1 is supported.");
            }
            boolean stream = Boolean.TRUE.equals(r.stream());
            boolean usage = stream && r.streamOptions() != null && Boolean.TRUE.equals(r.streamOptions().includeUsage());
            return new GenerationRequest(chat, prompt, sampling(r), maxTokens, stops(r.stop()), stream, usage);
        }

        private ChatMessage message(Api.Message m, String where) {
            if (m == null) {
                throw ApiException.invalidType(where, "an object");
            }
            if (m.role() == null) {
                throw ApiException.missing(where + ".role");
            }
            String role = switch (m.role()) {
                case "system", "developer" -> "system";
                case "user", "assistant", "tool" -> m.role();
                default -> throw ApiException.invalid(where + ".role", "Invalid value for '" + where + ".role': '"
                        + m.role() + "'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.");
            };
            return new ChatMessage(role, content(m.content(), where + ".content"));
        }

        /** A string, or the texts of an array of text parts joined; null only for an assistant turn. */
        private static String content(JsonNode content, String where) {
            if (content == null || content.isNull()) {
                return "";
            }
            if (content.isTextual()) {
                return content.textValue();
            }
            if (!content.isArray()) {
                throw ApiException.invalidType(where, "a string or an array of content parts");
            }
            StringBuilder text = new StringBuilder();
            for (int i = 0; i < content.size(); i++) {
                JsonNode part = content.get(i);
                JsonNode type = part.get("type");
                if (type == null || !"text".equals(type.asText())) {
                    throw ApiException.unsupported(where + "[" + i + "].type",
                            "Only content parts of type 'text' are supported.");
                }
                JsonNode t = part.get("text");
                if (t == null || !t.isTextual()) {
                    throw ApiException.invalidType(where + "[" + i + "].text", "a string");
                }
                text.append(t.textValue());
            }
            return text.toString();
        }

        /** A string, an array of one string, or an array of token ids. */
        private int[] completionPrompt(JsonNode prompt) {
            if (prompt == null || prompt.isNull()) {
                throw ApiException.missing("prompt");
            }
            if (prompt.isTextual()) {
                return tokenizer.encode(prompt.textValue());
            }
            if (!prompt.isArray() || prompt.isEmpty()) {
                throw ApiException.invalidType("prompt", "a string, an array of strings or an array of token ids");
            }
            if (prompt.get(0).isTextual()) {
                if (prompt.size() > 1) {
                    throw ApiException.unsupported("prompt", "Only one prompt per request is supported.");
                }
                return tokenizer.encode(prompt.get(0).textValue());
            }
            int[] ids = new int[prompt.size()];
            for (int i = 0; i < ids.length; i++) {
                JsonNode id = prompt.get(i);
                if (!id.isInt()) {
                    throw ApiException.invalidType("prompt[" + i + "]", "a token id (integer)");
                }
                if (id.intValue() < 0 || id.intValue() >= tokenizer.vocabSize()) {
                    throw ApiException.invalid("prompt[" + i + "]", "Token id " + id.intValue()
                            + " is outside the vocabulary of " + tokenizer.vocabSize() + " tokens.");
                }
                ids[i] = id.intValue();
            }
            return ids;
        }

        private void checkPrompt(int[] prompt, String param) {
            if (prompt.length == 0) {
                throw ApiException.invalid(param, "The prompt is empty.");
            }
            if (prompt.length > contextLength) {
                throw new ApiException(400, ApiException.INVALID_REQUEST, param, "context_length_exceeded",
                        "This model's maximum context length is " + contextLength + " tokens. However, your "
                                + param + " resulted in " + prompt.length + " tokens.");
            }
        }

        /** The requested limit, or {@code absent} when there is none; above the context length is an error. */
        private int maxTokens(Integer requested, String param, int absent) {
            if (requested == null) {
                return absent;
            }
            if (requested < 1) {
                throw new ApiException(400, ApiException.INVALID_REQUEST, param, "integer_below_min_value",
                        "Invalid '" + param + "': integer below minimum value. Expected a value >= 1, but got "
                                + requested + " instead.");
            }
            if (requested > contextLength) {
                throw new ApiException(400, ApiException.INVALID_REQUEST, param, "integer_above_max_value",
                        "Invalid '" + param + "': " + requested + " is more than this model's context of "
                                + contextLength + " tokens.");
            }
            return requested;
        }

        private SamplerSettings sampling(Api.GenerationFields r) {
            SamplerSettings s = defaults.withSeed(r.seed() != null ? r.seed()
                    : seed.isPresent() ? seed.getAsLong() : nextSeed());
            if (r.temperature() != null) {
                s = s.withTemperature((float) range(r.temperature(), "temperature", 0, 2));
            }
            if (r.topP() != null) {
                double p = range(r.topP(), "top_p", 0, 1);
                // top_p 0 keeps only the most likely token
                s = p == 0 ? s.withTemperature(0f) : s.withTopP((float) p);
            }
            if (r.topK() != null) {
                if (r.topK() < 0) {
                    throw ApiException.invalid("top_k", "'top_k' must not be negative, got " + r.topK() + ".");
                }
                s = s.withTopK(r.topK());
            }
            if (r.minP() != null) {
                s = s.withMinP((float) range(r.minP(), "min_p", 0, 1));
            }
            if (r.presencePenalty() != null || r.frequencyPenalty() != null) {
                float presence = r.presencePenalty() != null
                        ? (float) range(r.presencePenalty(), "presence_penalty", -2, 2) : s.presencePenalty();
                float frequency = r.frequencyPenalty() != null
                        ? (float) range(r.frequencyPenalty(), "frequency_penalty", -2, 2) : s.frequencyPenalty();
                s = s.withPenalties(s.repeatPenalty(), presence, frequency, s.penaltyLastN());
            }
            return s;
        }

        private synchronized long nextSeed() {
            return seeds.nextLong();
        }

        private static double range(double value, String param, double min, double max) {
            if (!(value >= min && value <= max)) {
                throw ApiException.invalid(param, "Invalid '" + param + "': expected a number from " + min + " to "
                        + max + ", got " + value + ".");
            }
            return value;
        }

        private static List<String> stops(JsonNode stop) {
            if (stop == null || stop.isNull()) {
                return List.of();
            }
            List<String> stops = new ArrayList<>();
            if (stop.isTextual()) {
                stops.add(stop.textValue());
            } else if (stop.isArray()) {
                for (JsonNode s : stop) {
                    if (!s.isTextual()) {
                        throw ApiException.invalidType("stop", "a string or an array of strings");
                    }
                    stops.add(s.textValue());
                }
            } else {
                throw ApiException.invalidType("stop", "a string or an array of strings");
            }
            if (stops.size() > MAX_STOPS) {
                throw ApiException.invalid("stop", "At most " + MAX_STOPS + " stop strings are supported, got "
                        + stops.size() + ".");
            }
            if (stops.stream().anyMatch(String::isEmpty)) {
                throw ApiException.invalid("stop", "Stop strings must not be empty.");
            }
            return stops;
        }
    }
}
