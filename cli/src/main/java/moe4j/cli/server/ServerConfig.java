package moe4j.cli.server;

import java.util.Objects;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.function.Consumer;

import moe4j.engine.sampling.SamplerSettings;

/**
 * How an {@link OpenAiServer} listens and schedules.
 *
 * @param host         address to bind, e.g. {@code 127.0.0.1}
 * @param port         TCP port; 0 picks a free one ({@link OpenAiServer#port()} tells which)
 * @param parallel     sessions generating at once, each with its own KV cache
 * @param queueLimit   requests that may wait for a session; beyond that the server answers 503
 * @param apiKey       when present, every endpoint but {@code /health} needs {@code Authorization: Bearer KEY}
 * @param maxBodyBytes largest request body accepted; larger ones get 413
 * @param modelId      the name under which the model is listed and reported
 * @param sampling     defaults for what a request does not set (temperature, top-p, top-k, min-p, penalties);
 *                     its seed is not used, see {@code seed}
 * @param seed         seed of requests that do not give one; empty: a fresh random seed per request
 * @param log          receives one line per request (method, path, status, tokens, time)
 */
public record ServerConfig(String host, int port, int parallel, int queueLimit, Optional<String> apiKey,
                           int maxBodyBytes, String modelId, SamplerSettings sampling, OptionalLong seed,
                           Consumer<String> log) {

    public static final String DEFAULT_HOST = "127.0.0.1";
    public static final int DEFAULT_PORT = 8080;
    public static final int DEFAULT_QUEUE_LIMIT = 64;
    public static final int DEFAULT_MAX_BODY_BYTES = 1 << 20;
    public static final int MIN_BODY_BYTES = 1 << 10;
    public static final int MAX_BODY_BYTES = 1 << 30;

    public ServerConfig {
        Objects.requireNonNull(host, "host");
        Objects.requireNonNull(apiKey, "apiKey");
        Objects.requireNonNull(modelId, "modelId");
        Objects.requireNonNull(sampling, "sampling");
        Objects.requireNonNull(seed, "seed");
        Objects.requireNonNull(log, "log");
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be in 0..65535, got " + port);
        }
        if (parallel < 1) {
            throw new IllegalArgumentException("parallel sessions must be at least 1, got " + parallel);
        }
        if (queueLimit < 0) {
            throw new IllegalArgumentException("queue limit must not be negative, got " + queueLimit);
        }
        if (apiKey.isPresent() && apiKey.get().isBlank()) {
            throw new IllegalArgumentException("the API key must not be blank");
        }
        if (maxBodyBytes < MIN_BODY_BYTES || maxBodyBytes > MAX_BODY_BYTES) {
            throw new IllegalArgumentException("the body limit must be from " + MIN_BODY_BYTES + " to " + MAX_BODY_BYTES
                    + " bytes, got " + maxBodyBytes);
        }
        if (modelId.isBlank()) {
            throw new IllegalArgumentException("the model id must not be blank");
        }
    }

    /**
     * Loopback on {@link #DEFAULT_PORT}, one session, a queue of {@link #DEFAULT_QUEUE_LIMIT}, no API key,
     * 1 MiB bodies, llama.cpp's sampling defaults with a random seed per request, no log.
     */
    public static ServerConfig defaults(String modelId) {
        return new ServerConfig(DEFAULT_HOST, DEFAULT_PORT, 1, DEFAULT_QUEUE_LIMIT, Optional.empty(),
                DEFAULT_MAX_BODY_BYTES, modelId, SamplerSettings.defaults(0), OptionalLong.empty(), line -> { });
    }

    public ServerConfig withAddress(String host, int port) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }

    public ServerConfig withParallel(int parallel) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }

    public ServerConfig withQueueLimit(int queueLimit) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }

    public ServerConfig withApiKey(Optional<String> apiKey) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }

    public ServerConfig withMaxBodyBytes(int maxBodyBytes) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }

    public ServerConfig withLog(Consumer<String> log) {
        return new ServerConfig(host, port, parallel, queueLimit, apiKey, maxBodyBytes, modelId, sampling, seed, log);
    }
}
