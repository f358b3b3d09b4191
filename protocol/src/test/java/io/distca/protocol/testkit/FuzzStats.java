package io.distca.protocol.testkit;

import java.util.Map;
import java.util.TreeMap;

/** Counts of a fuzz run: cases by mutation, outcomes by kind (message type or error code). */
public final class FuzzStats {
  private final String name;
  private final Map<String, Long> mutations = new TreeMap<>();
  private final Map<String, Long> outcomes = new TreeMap<>();
  private long cases;
  private long frames;
  private long bytes;
  private final long startNanos = System.nanoTime();

  public FuzzStats(String name) {
    this.name = name;
  }

  public void countCase(FrameMutator.Case c) {
    cases++;
    bytes += c.bytes().length;
    mutations.merge(c.mutation().name(), 1L, Long::sum);
  }

  /** One complete frame the receiver answered or decoded, with what became of it. */
  public void countFrame(String outcome) {
    frames++;
    outcomes.merge(outcome, 1L, Long::sum);
  }

  /** Something about a case that is not a frame's fate, e.g. "incomplete (receiver waits)". */
  public void countOther(String outcome) {
    outcomes.merge(outcome, 1L, Long::sum);
  }

  public long cases() {
    return cases;
  }

  public long frames() {
    return frames;
  }

  public long outcome(String outcome) {
    return outcomes.getOrDefault(outcome, 0L);
  }

  public String report() {
    StringBuilder s = new StringBuilder();
    s.append(String.format("%s: %d cases (%d bytes), %d complete frames, %.1f s%n", name, cases, bytes, frames,
        (System.nanoTime() - startNanos) / 1e9));
    s.append("  cases by mutation:\n");
    mutations.forEach((k, v) -> s.append(String.format("    %-22s %8d%n", k, v)));
    s.append("  outcomes:\n");
    outcomes.forEach((k, v) -> s.append(String.format("    %-40s %8d%n", k, v)));
    return s.toString();
  }
}
