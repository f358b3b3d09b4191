package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code --cuda-device}: a usage error (exit 2) before any server or backend starts. */
class GpuFlagsTest {

  private static String usageError(String... args) {
    StringWriter err = new StringWriter();
    CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
    assertEquals(2, cli.execute(args), String.join(" ", args));
    return err.toString();
  }

  @Test
  void aNegativeGpuIsRefused() {
    for (String[] args : new String[][] {
        {"server", "--cuda-device", "-1"},
        {"bench", "kernel", "--cuda-device", "-1"},
        {"bench", "server", "--cuda-device", "-1"}}) {
      String err = usageError(args);
      assertTrue(err.contains("--cuda-device must be >= 0, got -1"), err);
    }
  }

  /** A GPU that is not there (no GPU here, or not that many): one line saying why, exit 1, no stack trace. */
  @Test
  void aServerOnAGpuThatIsNotThereSaysWhyAndExits() {
    StringWriter err = new StringWriter();
    CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
    int rc = cli.execute("server", "--backend", "cuda", "--cuda-device", "63", "--port", "0", "--admin-port", "-1");
    assertEquals(1, rc, err.toString());
    assertTrue(err.toString().startsWith("distca server: the cuda backend cannot run here: "), err.toString());
    assertTrue(!err.toString().contains("\tat "), "no stack trace: " + err);
  }

  @Test
  void aGpuNeedsABackendThatRunsOnOne() {
    for (String[] args : new String[][] {
        {"server", "--backend", "cpu", "--cuda-device", "1"},
        {"bench", "kernel", "--backend", "cpu", "--cuda-device", "1"},
        {"bench", "server", "--backend", "cpu", "--cuda-device", "2"}}) {
      String err = usageError(args);
      String device = args[args.length - 1];
      assertTrue(err.contains("--cuda-device " + device + " needs the cuda or auto backend, not 'cpu'"), err);
    }
  }
}
