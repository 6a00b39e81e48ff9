package moe4j.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * The PTX in the jar must come from the CUDA sources in the repository: build-ptx.sh records a hash of
 * them beside the PTX, and this test recomputes it the same way (a changed kernel without regenerated
 * PTX fails here, on any machine, GPU or not).
 */
class PtxFreshnessTest {

    private static final Path SOURCES = Path.of("src/main/cuda");
    private static final String RECORD = "/moe4j/kernels/cuda/sources.sha256";

    @Test
    void committedPtxMatchesTheCudaSources() throws Exception {
        assumeTrue(Files.isDirectory(SOURCES), "CUDA sources not found at " + SOURCES.toAbsolutePath()
                + ": skipping the PTX freshness check");
        String recorded;
        try (InputStream in = getClass().getResourceAsStream(RECORD)) {
            assertNotNull(in, RECORD + " is missing: run kernels/src/main/cuda/build-ptx.sh");
            recorded = new String(in.readAllBytes(), StandardCharsets.UTF_8).lines()
                    .filter(l -> l.startsWith("sources-sha256 ")).map(l -> l.substring(15).strip())
                    .findFirst().orElse("");
        }
        assertEquals(sourcesHash(), recorded, "the CUDA sources changed since the PTX was generated: run "
                + "kernels/src/main/cuda/build-ptx.sh (needs nvcc) and commit the PTX");
    }

    @Test
    void ptxExistsForEveryTargetAndNamesItsTarget() throws IOException {
        for (int major : new int[] {8, 9}) {
            String resource = Kernels.ptxResource(major);
            try (InputStream in = getClass().getResourceAsStream(resource)) {
                assertNotNull(in, resource + " is missing");
            }
            byte[] ptx = Kernels.readPtx(resource);
            assertEquals(0, ptx[ptx.length - 1], "the driver reads PTX up to a NUL");
            String head = new String(ptx, 0, Math.min(4096, ptx.length), StandardCharsets.US_ASCII);
            assertTrue(head.contains(".target sm_" + (major >= 9 ? 90 : 80)), resource + " targets another GPU");
            assertTrue(head.contains(".visible .entry") || head.contains(".globl"), resource + " holds no kernels");
        }
    }

    /**
     * Kernels launched with programmatic dependent launch may start before the kernel before them ends: each must
     * wait for it on the device (pdl_wait), or it would read unfinished results. A kernel added without the wait
     * fails here.
     */
    @Test
    void everyHopperKernelWaitsForTheKernelBeforeIt() throws IOException {
        String ptx = new String(Kernels.readPtx(Kernels.ptxResource(9)), StandardCharsets.US_ASCII);
        String[] entries = ptx.split("\\.visible \\.entry ");
        assertTrue(entries.length > 50, "expected the module's kernels, found " + (entries.length - 1));
        for (int i = 1; i < entries.length; i++) {
            String name = entries[i].substring(0, entries[i].indexOf('('));
            assertTrue(entries[i].contains("griddepcontrol.wait"), name + " does not wait for the kernel before it");
            assertTrue(entries[i].contains("griddepcontrol.launch_dependents"),
                    name + " never lets the next kernel start");
        }
    }

    /** sha256 over "hex(sha256(file))  name\n" for every file of the folder in name order (as build-ptx.sh). */
    static String sourcesHash() throws IOException, NoSuchAlgorithmException {
        StringBuilder listing = new StringBuilder();
        List<Path> files;
        try (Stream<Path> s = Files.list(SOURCES)) {
            files = s.filter(Files::isRegularFile).sorted((a, b) -> compareBytes(a.getFileName().toString(),
                    b.getFileName().toString())).toList();
        }
        HexFormat hex = HexFormat.of();
        for (Path f : files) {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(f));
            listing.append(hex.formatHex(digest)).append("  ").append(f.getFileName()).append('\n');
        }
        return hex.formatHex(MessageDigest.getInstance("SHA-256").digest(listing.toString().getBytes(StandardCharsets.UTF_8)));
    }

    /** LC_ALL=C sort order. */
    private static int compareBytes(String a, String b) {
        return java.util.Arrays.compareUnsigned(a.getBytes(StandardCharsets.UTF_8), b.getBytes(StandardCharsets.UTF_8));
    }
}
