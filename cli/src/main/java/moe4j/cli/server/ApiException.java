package moe4j.cli.server;

/**
 * A request the server answers with an OpenAI-style error:
 * {@code {"error": {"message", "type", "param", "code"}}} and the HTTP status.
 */
final class ApiException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    static final String INVALID_REQUEST = "invalid_request_error";
    static final String SERVER_ERROR = "server_error";

    private final int status;
    private final String type;
    private final String param;
    private final String code;

    ApiException(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400 about one request field ({@code param} may be null). */
    static ApiException invalid(String param, String message) {
        return new ApiException(400, INVALID_REQUEST, param, "invalid_value", message);
    }

    /** 400 for a field whose JSON type is wrong. */
    static ApiException invalidType(String param, String expected) {
        return new ApiException(400, INVALID_REQUEST, param, "invalid_type",
                "Invalid type for '" + param + "': expected " + expected + ".");
    }

    static ApiException missing(String param) {
        return new ApiException(400, INVALID_REQUEST, param, "missing_required_parameter",
                "Missing required parameter: '" + param + "'.");
    }

    static ApiException unsupported(String param, String message) {
        return new ApiException(400, INVALID_REQUEST, param, "unsupported_parameter", message);
    }

    int status() { return status; }

    String type() { return type; }

    String param() { return param; }

    String code() { return code; }
}
