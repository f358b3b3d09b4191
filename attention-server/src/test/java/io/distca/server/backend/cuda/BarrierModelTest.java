package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The warp-specialized backward's mbarrier hand-offs (native/src/bwd_ws_sm90.cuh: the stage ring,
 * the claiming warps, the consumers' late-announced dQ tiles, the dQ thread), as modelled by
 * native/bench/barrier_model.py over every interleaving of one CTA's walk: the two variants the
 * kernels have (two dQ buffers a warpgroup for 64-row steps, one for distca_attn_bwd_ws_q128_*) are
 * free of deadlocks and of parity waits that name a phase other than the current one or the one
 * before it; the two that hung on the GPU while the 128-row steps were built (native/NOTES.md v81)
 * are caught. Runs the real script (python3 on the PATH; skipped where there is none).
 */
class BarrierModelTest {

  @Test
  void theKernelsHandOffsAreSoundAndTheBrokenOnesAreCaught() throws IOException, InterruptedException {
    Path script = DistcaAttnAbiTest.repositoryRoot().resolve("native/bench/barrier_model.py");
    Result kernels = run(script);
    List<String> sound = kernels.lines();
    assertEquals(0, kernels.exit(), "barrier_model.py:\n" + String.join("\n", sound));
    for (String variant : new String[] {"two-buffers:", "one-buffer:"}) {
      assertTrue(sound.stream().anyMatch(l -> l.startsWith(variant) && l.endsWith("sound")),
          variant + " sound:\n" + String.join("\n", sound));
    }
    Result caught = run(script, "--broken");
    List<String> broken = caught.lines();
    assertEquals(0, caught.exit(), "barrier_model.py --broken (each broken variant must be caught):\n"
        + String.join("\n", broken));
    assertTrue(broken.stream().anyMatch(l -> l.contains("deadlock: ") && l.contains("wg0 at ('wait', 'free0'")),
        "the wait for the previous step's reduce-add before its announcement deadlocks:\n" + String.join("\n", broken));
    assertTrue(broken.stream().anyMatch(l -> l.contains("completed 2 phase(s) ago")),
        "a parity wait two phases behind is found:\n" + String.join("\n", broken));
  }

  /** The script's exit status and output lines. */
  private record Result(int exit, List<String> lines) {}

  private static Result run(Path script, String... args) throws IOException, InterruptedException {
    List<String> command = new ArrayList<>(List.of("python3", script.toString()));
    command.addAll(List.of(args));
    Process process;
    try {
      process = new ProcessBuilder(command).redirectErrorStream(true).start();
    } catch (IOException noPython) {
      assumeTrue(false, "python3 is not on the PATH: " + noPython.getMessage());
      throw noPython;
    }
    String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(process.waitFor(2, TimeUnit.MINUTES), "barrier_model.py did not end");
    return new Result(process.exitValue(), List.of(out.split("\n")));
  }
}
