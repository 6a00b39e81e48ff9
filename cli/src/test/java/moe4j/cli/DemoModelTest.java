package moe4j.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import moe4j.gguf.GgufFile;

class DemoModelTest {

    @TempDir
    Path home;

    @AfterEach
    void restoreHome() {
        System.clearProperty(DemoModel.HOME_PROPERTY);
    }

    @Test
    void generateWithoutAModelCreatesTheDemoOnceAndReusesIt() throws IOException {
        System.setProperty(DemoModel.HOME_PROPERTY, home.toString());
        Path file = home.resolve("demo").resolve(DemoModel.FILE_NAME);

        CliRunner first = CliRunner.run("generate", "-p", "Hello", "-n", "4", "--seed", "1", "-t", "2");
        assertEquals(0, first.exitCode(), first.err());
        assertTrue(first.err().contains("creating the demo model " + file), first.err());
        assertTrue(first.err().contains("RANDOM"), first.err());
        assertTrue(Files.isRegularFile(file));
        try (GgufFile f = GgufFile.open(file)) {
            assertEquals("qwen3moe", f.metadata().getString("general.architecture"));
            assertEquals(DemoModel.SHAPE.experts(), f.metadata().getInt("qwen3moe.expert_count"));
        }
        try (var listing = Files.list(file.getParent())) {
            assertEquals(1, listing.count(), "no temporary file is left behind");
        }
        FileTime written = Files.getLastModifiedTime(file);

        CliRunner second = CliRunner.run("generate", "-p", "Hello", "-n", "4", "--seed", "1", "-t", "2");
        assertEquals(0, second.exitCode(), second.err());
        assertFalse(second.err().contains("creating"), second.err());
        assertTrue(second.err().contains("using the demo model " + file), second.err());
        assertEquals(written, Files.getLastModifiedTime(file));
        assertEquals(first.out(), second.out());
    }
}
