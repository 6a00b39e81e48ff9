package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ServeCommandTest {

    private static final Duration TIMEOUT = Duration.ofSeconds(60);
    private static final Pattern LISTENING = Pattern.compile("listening on (http://127\\.0\\.0\\.1:\\d+)/v1");

    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void writeModel() throws IOException {
        model = TestModels.tinyMoe(dir);
    }

    @Test
    void needsAModel() {
        CliRunner r = CliRunner.run("serve");
        assertEquals(Main.EXIT_USAGE, r.exitCode());
        assertTrue(r.lastErrLine().contains("--model"), r.err());
    }

    @Test
    void invalidSettingsAreUsageErrors() {
        CliRunner parallel = CliRunner.run("serve", "-m", model.toString(), "--parallel", "0");
        assertEquals(Main.EXIT_USAGE, parallel.exitCode());
        assertTrue(parallel.lastErrLine().contains("parallel"), parallel.err());

        CliRunner port = CliRunner.run("serve", "-m", model.toString(), "--port", "70000");
        assertEquals(Main.EXIT_USAGE, port.exitCode());
        assertTrue(port.lastErrLine().contains("port"), port.err());
    }

    @Test
    void aPortInUseIsAClearFailure() throws IOException {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            CliRunner r = CliRunner.run("serve", "-m", model.toString(), "-t", "2", "--port",
                    Integer.toString(taken.getLocalPort()));
            assertEquals(Main.EXIT_FAILURE, r.exitCode());
            assertTrue(r.lastErrLine().startsWith("moe4j: error: cannot listen on 127.0.0.1:" + taken.getLocalPort()),
                    r.err());
        }
    }

    @Test
    void modelIdIsTheFileNameWithoutExtensionOrPartNumber() {
        assertEquals("Qwen3-30B-A3B-Q4_K_M", ServeCommand.modelId(Path.of("/m/Qwen3-30B-A3B-Q4_K_M.gguf")));
        assertEquals("big-Q8_0", ServeCommand.modelId(Path.of("big-Q8_0-00001-of-00003.gguf")));
    }

    /** The real command in its own JVM: it prints where it listens, serves, and stops on SIGTERM (as on Ctrl-C). */
    @Test
    void servesUntilTerminated() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Path output = dir.resolve("serve.log");
        Process process = new ProcessBuilder(java, "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName(),
                "serve", "-m", model.toString(), "--port", "0", "-t", "2", "--alias", "demo")
                .redirectErrorStream(true).redirectOutput(output.toFile()).start();
        try {
            URI base = URI.create(awaitOutput(output, LISTENING).group(1));
            HttpClient http = HttpClient.newBuilder().connectTimeout(TIMEOUT).build();
            HttpResponse<String> models = http.send(HttpRequest.newBuilder(base.resolve("/v1/models")).timeout(TIMEOUT)
                    .build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, models.statusCode());
            assertTrue(models.body().contains("\"id\":\"demo\""), models.body());
            awaitOutput(output, Pattern.compile("GET /v1/models 200 "));

            process.destroy();

            assertTrue(process.waitFor(TIMEOUT.toSeconds(), TimeUnit.SECONDS), "the server exits on SIGTERM");
            awaitOutput(output, Pattern.compile("stopping the server"));
        } finally {
            process.destroyForcibly();
        }
    }

    /** Waits (bounded) until the process's output has a line matching {@code pattern}. */
    private static Matcher awaitOutput(Path output, Pattern pattern) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        String text = "";
        while (System.nanoTime() < deadline) {
            text = Files.readString(output, StandardCharsets.UTF_8);
            Matcher m = pattern.matcher(text);
            if (m.find()) {
                return m;
            }
            Thread.sleep(50);
        }
        return fail("no line matching " + pattern + " in:\n" + text);
    }
}
