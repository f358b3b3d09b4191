package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The two hosts' schedule policies agree: the Python host's (native/bench/schedule_policy.py, which
 * the checks and benchmarks run) and this one's ({@link FusedBatchPlan#groupSplits} and {@link
 * FusedBatchPlan#l2OrderPieces}, {@link WorkBands#bands}) on every batch of the grid that {@code
 * schedule_policy.py --cases} prints: head dims 64/128/256, 14 document mixes from 256 to 16K tokens, groups of 2 to 64 heads,
 * 1 to 4 K/V heads, causal or not, lean DRAM or not, 132 or 78 SMs. Each batch's split counts (item
 * by item) and head-ordered pieces must be the same, and on the lean-DRAM lines the work bands of
 * the unsplit backward's list (head groups of 1 and 2), and whether the backward runs in steps of 128
 * query rows ({@link FusedBatchPlan#q128Steps}); a rule changed in one host alone fails here.
 * Runs the real Python script as a process (python3 on the PATH; skipped where there is none).
 */
class SchedulePolicyParityTest {

  @Test
  void groupSplitsHeadOrderedPiecesAndWorkBandsAreThePythonHosts() throws IOException, InterruptedException {
    List<String> lines = run("--cases");
    List<String> mismatches = new ArrayList<>();
    int split = 0;
    int headOrdered = 0;
    int bands = 0;
    int q128Cases = 0;
    for (String line : lines) {
      String[] parts = line.split("\\|");
      assertEquals(6, parts.length, "a case line: " + line);
      int[] in = ints(parts[0]);
      int headDim = in[0];
      int blockN = in[1];
      int blockM = in[2];
      int headsKv = in[3];
      int group = in[4];
      int sms = in[5];
      boolean leanDram = in[6] != 0;
      boolean causal = in[7] != 0;
      long[] costs = FusedBatchPlanTest.repeatedKeyTiles(blockN, causal, ints(parts[1]));
      int[] splits = FusedBatchPlan.groupSplits(costs, headsKv, group, sms, blockM, leanDram, causal,
          headDim >= FusedBatchPlan.SPLIT_SHORT_UNIFORM_MIN_HEAD_DIM);
      String ours = runs(splits);
      int pieces = FusedBatchPlan.l2OrderPieces(costs, group, blockM, causal, headDim, headsKv);
      String expected = parts[2].trim();
      int expectedPieces = Integer.parseInt(parts[3].trim());
      String expectedBands = parts[4].trim();
      int[] docs = FusedBatchPlanTest.repeatedDocuments(ints(parts[1]));
      boolean[] causalDocs = new boolean[docs.length];
      Arrays.fill(causalDocs, causal);
      boolean q128 = FusedBatchPlan.q128Steps(headDim, docs, docs, causalDocs, splits != null || pieces > 1);
      boolean expectedQ128 = Integer.parseInt(parts[5].trim()) != 0;
      q128Cases += expectedQ128 ? 1 : 0;
      String ourBands = "";
      if (leanDram) {
        long overhead = (long) FusedBatchPlan.SPLIT_OVERHEAD_STEPS * blockM;
        long[] tiles = Arrays.stream(costs).map(c -> c * group + overhead).boxed()
            .sorted(Comparator.reverseOrder()).mapToLong(Long::longValue).toArray();  // longest first
        ourBands = ends(WorkBands.bands(tiles, headsKv, 1, sms)) + " ; " + ends(WorkBands.bands(tiles, headsKv, 2, sms));
        bands += ourBands.equals(" ; ") ? 0 : 1;
      }
      if (!ours.equals(expected) || pieces != expectedPieces || !ourBands.trim().equals(expectedBands)
          || q128 != expectedQ128) {
        mismatches.add(parts[0].trim() + " | " + parts[1].trim() + ": Python " + expected + " / " + expectedPieces
            + " / " + expectedBands + " / q128 " + expectedQ128 + ", Java " + ours + " / " + pieces + " / "
            + ourBands.trim() + " / q128 " + q128);
      }
      split += splits != null ? 1 : 0;
      headOrdered += expectedPieces > 1 ? 1 : 0;
    }
    assertTrue(lines.size() > 5000, "the grid: " + lines.size() + " cases");
    assertTrue(split > 500 && headOrdered > 100 && bands > 100 && q128Cases > 100, "the grid reaches the rules: "
        + split + " split, " + headOrdered + " in head order, " + bands + " with bands, " + q128Cases
        + " in 128-row steps");
    assertNoMismatches(mismatches, lines.size());
  }

  /**
   * The rule for 128-row steps on its own grid ({@code schedule_policy.py --q128-cases}: 4,000 seeded
   * batches of 1-6 slices, query rows around the bounds, shards with key prefixes, mixed masks, head
   * dims 64 and 128, with and without group splits), where the work share of the short slices decides:
   * Java's {@link FusedBatchPlan#q128Steps} must say what the Python host's bwd_q128 says of each. (A
   * divisor of 3 or 5 instead of 4, or a bound one row higher, changes 62-151 of them.)
   */
  @Test
  void q128StepsAreThePythonHosts() throws IOException, InterruptedException {
    List<String> lines = run("--q128-cases");
    List<String> mismatches = new ArrayList<>();
    int taken = 0;
    for (String line : lines) {
      String[] parts = line.split("\\|");
      assertEquals(3, parts.length, "a case line: " + line);
      int[] head = ints(parts[0]);
      String[] slices = parts[1].split(",");
      int[] q = new int[slices.length];
      int[] kv = new int[slices.length];
      boolean[] causal = new boolean[slices.length];
      for (int i = 0; i < slices.length; i++) {
        int[] s = ints(slices[i]);
        q[i] = s[0];
        kv[i] = s[1];
        causal[i] = s[2] != 0;
      }
      boolean expected = Integer.parseInt(parts[2].trim()) != 0;
      taken += expected ? 1 : 0;
      if (FusedBatchPlan.q128Steps(head[0], q, kv, causal, head[1] != 0) != expected) {
        mismatches.add(line);
      }
    }
    assertTrue(lines.size() == 4000 && taken > 1000 && taken < 3000, lines.size() + " cases, " + taken + " taken");
    assertNoMismatches(mismatches, lines.size());
  }

  /** Fails with the first 20 of the case lines the two hosts decide differently. */
  private static void assertNoMismatches(List<String> mismatches, int cases) {
    assertTrue(mismatches.isEmpty(), mismatches.size() + " of " + cases + " cases differ, e.g.\n"
        + String.join("\n", mismatches.subList(0, Math.min(20, mismatches.size()))));
  }

  /** The script's case lines (python3 native/bench/schedule_policy.py MODE). */
  private static List<String> run(String mode) throws IOException, InterruptedException {
    Path script = DistcaAttnAbiTest.repositoryRoot().resolve("native/bench/schedule_policy.py");
    Process process;
    try {
      process = new ProcessBuilder("python3", script.toString(), mode).redirectErrorStream(true).start();
    } catch (IOException noPython) {
      assumeTrue(false, "python3 is not on the PATH: " + noPython.getMessage());
      throw noPython;
    }
    List<String> lines = new ArrayList<>();
    try (BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line = out.readLine(); line != null; line = out.readLine()) {
        lines.add(line);
      }
    }
    assertTrue(process.waitFor(5, TimeUnit.MINUTES), "schedule_policy.py " + mode + " did not end");
    assertEquals(0, process.exitValue(), "schedule_policy.py " + mode + " failed:\n" + String.join("\n", lines));
    return lines;
  }

  /** Split counts as the script prints them: value*run for each run of equal counts, "-" for none. */
  private static String runs(int[] splits) {
    if (splits == null) {
      return "-";
    }
    StringBuilder out = new StringBuilder();
    for (int i = 0; i < splits.length; ) {
      int j = i;
      while (j < splits.length && splits[j] == splits[i]) {
        j++;
      }
      out.append(out.length() > 0 ? " " : "").append(splits[i]).append('*').append(j - i);
      i = j;
    }
    return out.toString();
  }

  private static String ends(int[] ends) {
    return Arrays.stream(ends).mapToObj(Integer::toString).reduce((a, b) -> a + " " + b).orElse("");
  }

  private static int[] ints(String field) {
    String t = field.trim();
    return t.isEmpty() ? new int[0] : Arrays.stream(t.split("\\s+")).mapToInt(Integer::parseInt).toArray();
  }
}
