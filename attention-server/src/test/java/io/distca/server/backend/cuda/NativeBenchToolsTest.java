package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The kernel tools of native/bench that run without a GPU: their self-tests (banks.py, sass_count.py,
 * ncu_stalls.py, ptxas_diff.py), and the shared-memory model's layouts (banks.py) against the kernels' own formulas,
 * so that the wavefront counts NOTES cites stay the kernels' (a layout change in native/src that the
 * model does not follow fails here).
 */
class NativeBenchToolsTest {

  @Test
  void selfTestsPass() throws IOException, InterruptedException {
    assumeTrue(onPath("python3"), "python3 is not on the PATH");
    Path root = DistcaAttnAbiTest.repositoryRoot();
    for (String tool : new String[] {"native/bench/banks.py", "native/bench/sass_count.py",
        "native/bench/ncu_stalls.py", "native/bench/ptxas_diff.py"}) {
      Process p = new ProcessBuilder("python3", root.resolve(tool).toString(), "--self-test").redirectErrorStream(true)
          .start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(60, TimeUnit.SECONDS), tool + " finished");
      assertEquals(0, p.exitValue(), tool + ": " + out);
      assertTrue(out.contains("self-test passed"), tool + ": " + out);
    }
  }

  @Test
  void bankModelUsesTheKernelsLayouts() throws IOException {
    Path root = DistcaAttnAbiTest.repositoryRoot();
    String model = Files.readString(root.resolve("native/bench/banks.py"));
    assertEquals(expression(root.resolve("native/src/bwd_ws_sm90.cuh"), "dq_box_at", "BM", "bm"),
        expression(model, "dq_box_at"), "dq_box_at");
    assertEquals(expression(root.resolve("native/src/bwd_sm90.cuh"), "sw128", "ROWS", "rows"),
        expression(model, "sw128"), "sw128");
  }

  /** The return expression of C++ function {@code name} in {@code file}, with {@code from} renamed {@code to}. */
  private static String expression(Path file, String name, String from, String to) throws IOException {
    Matcher m = Pattern.compile("int " + name + "\\(int r(?:ow)?, int c(?:ol)?\\) \\{\\s*return ([^;]+);")
        .matcher(Files.readString(file));
    assertTrue(m.find(), name + " in " + file);
    return normalize(m.group(1).replace(from, to).replaceAll("\\brow\\b", "r").replaceAll("\\bcol\\b", "c"));
  }

  /** The return expression of Python function {@code name} in the model. */
  private static String expression(String model, String name) {
    Matcher m = Pattern.compile("def " + name + "\\(r, c, \\w+=64\\):\\n(?:\\s+\"\"\".*?\"\"\"\\n)?\\s+return ([^\\n]+)",
        Pattern.DOTALL).matcher(model);
    assertTrue(m.find(), name + " in banks.py");
    return normalize(m.group(1));
  }

  private static String normalize(String expression) {
    return expression.replaceAll("\\s+", "");
  }

  private static boolean onPath(String command) {
    for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
      if (Files.isExecutable(Path.of(dir, command))) {
        return true;
      }
    }
    return false;
  }
}
