package moe4j.gguf;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Locates the shared test material ({@code <repo>/../shared}: fixture models, llama.cpp references). Tests
 * that need it skip with a visible message when it is absent, e.g. in a clone without {@code shared/}.
 * Set the system property {@code moe4j.shared} to point elsewhere.
 */
public final class Fixtures {

    public static final String SHARED_PROPERTY = "moe4j.shared";

    private Fixtures() {}

    /**
     * The shared directory: {@code moe4j.shared} if set and present, else the {@code shared} sibling of the
     * nearest directory (from the working directory up) that holds a {@code pom.xml} and has
     * {@code ../shared/fixtures}.
     */
    public static Optional<Path> sharedDir() {
        String configured = System.getProperty(SHARED_PROPERTY);
        if (configured != null && !configured.isBlank()) {
            Path p = Path.of(configured).toAbsolutePath().normalize();
            return Files.isDirectory(p.resolve("fixtures")) ? Optional.of(p) : Optional.empty();
        }
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            Path shared = dir.resolveSibling("shared");
            if (dir.getParent() != null && Files.isRegularFile(dir.resolve("pom.xml"))
                    && Files.isDirectory(shared.resolve("fixtures"))) {
                return Optional.of(shared.normalize());
            }
        }
        return Optional.empty();
    }

    /** The shared directory, or skips the calling test (JUnit assumption) with a message. */
    public static Path requireShared() {
        Optional<Path> shared = sharedDir();
        assumeTrue(shared.isPresent(), "../shared/fixtures not found: skipping fixture test");
        return shared.get();
    }

    /** {@code shared/fixtures}, or skips the calling test. */
    public static Path fixturesDir() {
        return requireShared().resolve("fixtures");
    }

    /** {@code shared/fixtures/models/<fileName>}, or skips the calling test when it is missing. */
    public static Path model(String fileName) {
        Path p = fixturesDir().resolve("models").resolve(fileName);
        assumeTrue(Files.isRegularFile(p), "fixture model " + fileName + " not found in " + p.getParent()
                + ": skipping fixture test");
        return p;
    }

    /** Every {@code *.gguf} in the fixture models directory, sorted; empty (no skip) when shared is absent. */
    public static List<Path> allModels() {
        Optional<Path> shared = sharedDir();
        if (shared.isEmpty() || !Files.isDirectory(shared.get().resolve("fixtures/models"))) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(shared.get().resolve("fixtures/models"))) {
            return s.filter(p -> p.getFileName().toString().endsWith(".gguf")).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
