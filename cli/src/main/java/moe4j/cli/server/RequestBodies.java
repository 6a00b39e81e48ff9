package moe4j.cli.server;

import java.io.IOException;
import java.io.InputStream;
import java.util.Collection;

import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.sun.net.httpserver.HttpExchange;

/**
 * Reads request bodies: a size limit (413 beyond it) and JSON mapped onto {@link Api} records, with
 * every parse failure turned into a 400 that names the field, as OpenAI's API does.
 */
final class RequestBodies {

    /** Bytes of an oversized body read and discarded, so that the client gets to read the 413. */
    private static final long DRAIN_LIMIT = 16L << 20;

    private RequestBodies() {}

    /** Reads the body (at most {@code maxBytes}, else 413) and maps it to {@code type} (else 400). */
    static <T> T parse(HttpExchange ex, Class<T> type, int maxBytes) throws IOException {
        byte[] body = read(ex, maxBytes);
        try {
            T value = Api.JSON.readValue(body, type);
            if (value == null) {
                throw ApiException.invalid(null, "The request body must be a JSON object.");
            }
            return value;
        } catch (JsonProcessingException e) {
            if (syntaxError(e) instanceof JsonParseException syntax) {
                throw new ApiException(400, ApiException.INVALID_REQUEST, null, "invalid_json",
                        "The request body is not valid JSON: " + firstLine(syntax) + " (line "
                                + syntax.getLocation().getLineNr() + ", column " + syntax.getLocation().getColumnNr() + ")");
            }
            String param = paramOf(e);
            if (param == null) {
                throw ApiException.invalid(null, e instanceof MismatchedInputException
                        ? "The request body must be a JSON object." : "Invalid request body: " + firstLine(e));
            }
            if (e instanceof MismatchedInputException m && m.getTargetType() != null) {
                throw ApiException.invalidType(param, jsonType(m.getTargetType()));
            }
            throw ApiException.invalid(param, "Invalid value for '" + param + "': " + firstLine(e));
        }
    }

    private static byte[] read(HttpExchange ex, int maxBytes) throws IOException {
        String length = ex.getRequestHeaders().getFirst("Content-Length");
        InputStream in = ex.getRequestBody();
        if (length == null || parseLength(length) <= maxBytes) {
            byte[] body = in.readNBytes(maxBytes + 1);
            if (body.length <= maxBytes) {
                return body;
            }
        }
        // read what the client is still sending, so that it reads our answer instead of a reset connection
        byte[] sink = new byte[8192];
        long drained = 0;
        for (int n; drained < DRAIN_LIMIT && (n = in.read(sink)) > 0; ) {
            drained += n;
        }
        ex.getResponseHeaders().set("Connection", "close");
        throw new ApiException(413, ApiException.INVALID_REQUEST, null, "request_too_large",
                "The request body is larger than " + maxBytes + " bytes.");
    }

    private static long parseLength(String header) {
        try {
            return Long.parseLong(header.strip());
        } catch (NumberFormatException e) {
            throw ApiException.invalid(null, "Invalid Content-Length header: " + header);
        }
    }

    /** How a field of this Java type is written in JSON, for error messages. */
    private static String jsonType(Class<?> type) {
        if (type == Integer.class || type == Long.class || type == int.class || type == long.class) {
            return "an integer";
        }
        if (type == Double.class || type == Float.class || type == double.class || type == float.class) {
            return "a number";
        }
        if (type == Boolean.class || type == boolean.class) {
            return "a boolean";
        }
        if (type == String.class) {
            return "a string";
        }
        return Collection.class.isAssignableFrom(type) ? "an array" : "an object";
    }

    /** The syntax error behind a parse failure (Jackson wraps those met inside a field), else null. */
    private static Throwable syntaxError(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof JsonParseException) {
                return t;
            }
        }
        return null;
    }

    /** The message without Jackson's source description (the body is not echoed back). */
    private static String firstLine(JsonProcessingException e) {
        return e.getOriginalMessage().lines().findFirst().orElse("").replaceAll("\\[Source: [^;]*; ", "[").strip();
    }

    /** The JSON path of the field a parse error is about, e.g. {@code messages[0].role}; null for the root. */
    private static String paramOf(JsonProcessingException e) {
        if (!(e instanceof JsonMappingException m) || m.getPath().isEmpty()) {
            return null;
        }
        StringBuilder p = new StringBuilder();
        for (JsonMappingException.Reference ref : m.getPath()) {
            if (ref.getFieldName() != null) {
                p.append(p.isEmpty() ? "" : ".").append(ref.getFieldName());
            } else if (ref.getIndex() >= 0) {
                p.append('[').append(ref.getIndex()).append(']');
            }
        }
        return p.isEmpty() ? null : p.toString();
    }
}
