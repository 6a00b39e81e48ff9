package moe4j.cli.server;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import moe4j.engine.embedding.Embedder;

/** Validates {@code /v1/embeddings} requests into token sequences and shapes the answer. */
final class EmbeddingRequests {

    /** Most inputs of one request (OpenAI's limit). */
    static final int MAX_INPUTS = 2048;

    /**
     * @param inputs the token sequences, each non-empty and within the context
     * @param base64 answer with base64 little-endian floats instead of arrays
     * @param tokens the sequences' total length
     */
    record Plan(List<int[]> inputs, boolean base64, int tokens) {
    }

    private final Embedder embedder;
    private final int contextLength;
    private final int vocab;

    EmbeddingRequests(Embedder embedder, int contextLength) {
        this.embedder = embedder;
        this.contextLength = contextLength;
        this.vocab = embedder.model().tokenizer().vocabSize();
    }

    Embedder embedder() { return embedder; }

    Plan read(Api.EmbeddingRequest request) {
        boolean base64 = switch (request.encodingFormat() == null ? "float" : request.encodingFormat()) {
            case "float" -> false;
            case "base64" -> true;
            default -> throw ApiException.invalid("encoding_format",
                    "Invalid 'encoding_format': expected 'float' or 'base64', got '" + request.encodingFormat() + "'.");
        };
        if (request.dimensions() != null && request.dimensions() != embedder.dimension()) {
            throw ApiException.unsupported("dimensions", "This model's embeddings have " + embedder.dimension()
                    + " dimensions; other sizes are not supported.");
        }
        List<int[]> inputs = inputs(request.input());
        int tokens = 0;
        for (int i = 0; i < inputs.size(); i++) {
            int n = inputs.get(i).length;
            String param = inputs.size() == 1 ? "input" : "input[" + i + "]";
            if (n == 0) {
                throw ApiException.invalid(param, "The input is empty.");
            }
            if (n > contextLength) {
                throw new ApiException(400, ApiException.INVALID_REQUEST, param, "context_length_exceeded",
                        "This model's maximum context length is " + contextLength + " tokens. However, "
                                + param + " has " + n + " tokens.");
            }
            tokens += n;
        }
        return new Plan(inputs, base64, tokens);
    }

    Api.EmbeddingList response(Plan plan, List<float[]> vectors, String modelId) {
        List<Api.EmbeddingData> data = new ArrayList<>(vectors.size());
        for (int i = 0; i < vectors.size(); i++) {
            data.add(new Api.EmbeddingData("embedding", plan.base64() ? base64(vectors.get(i)) : vectors.get(i), i));
        }
        return new Api.EmbeddingList("list", data, modelId, new Api.EmbeddingUsage(plan.tokens(), plan.tokens()));
    }

    /** A string, an array of strings, an array of token ids, or an array of arrays of token ids. */
    private List<int[]> inputs(JsonNode input) {
        if (input == null || input.isNull()) {
            throw ApiException.missing("input");
        }
        if (input.isTextual()) {
            return List.of(embedder.tokenize(input.textValue()));
        }
        if (!input.isArray() || input.isEmpty()) {
            throw ApiException.invalidType("input", "a string or a non-empty array of strings or token ids");
        }
        if (input.size() > MAX_INPUTS) {
            throw ApiException.invalid("input", "At most " + MAX_INPUTS + " inputs per request, got " + input.size() + ".");
        }
        if (input.get(0).isInt()) {
            return List.of(tokenIds(input, "input"));
        }
        List<int[]> out = new ArrayList<>(input.size());
        for (int i = 0; i < input.size(); i++) {
            JsonNode item = input.get(i);
            if (item.isTextual()) {
                out.add(embedder.tokenize(item.textValue()));
            } else if (item.isArray()) {
                out.add(tokenIds(item, "input[" + i + "]"));
            } else {
                throw ApiException.invalidType("input[" + i + "]", "a string or an array of token ids");
            }
        }
        return out;
    }

    private int[] tokenIds(JsonNode array, String param) {
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode id = array.get(i);
            if (!id.isInt() || id.intValue() < 0 || id.intValue() >= vocab) {
                throw ApiException.invalid(param + "[" + i + "]", "Expected a token id from 0 to " + (vocab - 1)
                        + ", got " + id + ".");
            }
            ids[i] = id.intValue();
        }
        return ids;
    }

    private static String base64(float[] v) {
        ByteBuffer bytes = ByteBuffer.allocate(v.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asFloatBuffer().put(v);
        return Base64.getEncoder().encodeToString(bytes.array());
    }
}
