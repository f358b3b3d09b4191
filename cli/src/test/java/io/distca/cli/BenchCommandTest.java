package io.distca.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code distca bench kernel}'s option checks: a usage error (exit 2) before any backend starts. */
class BenchCommandTest {

  @Test
  void negativeDrawsAndZeroIterationsAreUsageErrors() {
    for (String[] args : new String[][] {
        {"bench", "kernel", "--backend", "cpu", "--rebatch-draws", "-1"},
        {"bench", "kernel", "--backend", "cpu", "--iters", "0"}}) {
      StringWriter err = new StringWriter();
      CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
      assertEquals(2, cli.execute(args), String.join(" ", args));
      String flag = args[4];
      assertTrue(err.toString().contains(flag + " must be at least"), err.toString());
    }
  }

  @Test
  void gqaShapesThatAreNotHqOverAMultipleAreUsageErrors() {
    for (String bad : new String[] {"32", "32/0", "30/8", "a/b", "8/1/2"}) {
      StringWriter err = new StringWriter();
      CommandLine cli = Distca.commandLine().setErr(new PrintWriter(err));
      assertEquals(2, cli.execute("bench", "kernel", "--backend", "cpu", "--gqa", bad), bad);
      assertTrue(err.toString().contains("--gqa takes HQ/HKV") && err.toString().contains(bad), err.toString());
    }
  }

  @Test
  void rebatchDrawsDefaultToEightOnAGpuAndNoneOnTheCpuBackend() {
    assertEquals(8, BenchCommand.Kernel.rebatchDraws(null, "cuda"));
    assertEquals(0, BenchCommand.Kernel.rebatchDraws(null, "cpu"));
    assertEquals(3, BenchCommand.Kernel.rebatchDraws(3, "cpu"));
    assertEquals(0, BenchCommand.Kernel.rebatchDraws(0, "cuda"));
  }
}
