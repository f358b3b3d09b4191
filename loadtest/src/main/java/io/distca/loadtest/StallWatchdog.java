package io.distca.loadtest;

import io.distca.client.DistcaClient;
import io.distca.server.AttentionServer;
import java.io.PrintStream;
import java.lang.management.LockInfo;
import java.lang.management.ManagementFactory;
import java.lang.management.MonitorInfo;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Declares a load test stalled when no layer call of any rank has completed for
 * {@link LoadTestOptions#stallTimeout} while the ranks wait on the cluster (time a rank spends on
 * local work, generating inputs or checking results, does not count), and then says why in one
 * diagnostic: what each rank is doing, the state of every embedded server and of every client, and
 * the stack of every thread of the process. The caller stops the ranks; with
 * {@link LoadTestOptions#haltAfterStall} set, a process that has not stopped by then is halted.
 */
final class StallWatchdog {
  private final LoadTestOptions options;
  private final long stallNanos;
  private final AtomicLong completedCalls;
  private final List<RankDriver.Status> ranks;
  private long lastCalls;
  private long lastProgressNanos;
  private boolean stalled;

  StallWatchdog(LoadTestOptions options, AtomicLong completedCalls, List<RankDriver.Status> ranks) {
    this.options = options;
    this.stallNanos = options.stallTimeout == null ? 0 : options.stallTimeout.toNanos();
    this.completedCalls = completedCalls;
    this.ranks = ranks;
    this.lastCalls = completedCalls.get();
    this.lastProgressNanos = System.nanoTime();
  }

  /** Called periodically; true once, when the run has just been found stalled. */
  boolean check(long nowNanos) {
    if (stalled || stallNanos <= 0) {
      return false;
    }
    long calls = completedCalls.get();
    boolean local = ranks.stream().anyMatch(RankDriver.Status::local);
    if (calls != lastCalls || local) {
      lastCalls = calls;
      lastProgressNanos = nowNanos;
      return false;
    }
    if (nowNanos - lastProgressNanos < stallNanos) {
      return false;
    }
    stalled = true;
    return true;
  }

  boolean stalled() {
    return stalled;
  }

  /** Why the run is stalled, with everything needed to tell where it hangs. */
  String diagnose(long totalCalls, EmbeddedCluster cluster, List<DistcaClient> clients) {
    StringBuilder b = new StringBuilder();
    b.append(String.format(Locale.ROOT,
        "distca loadtest: STALLED: no layer call completed for %d s (%d of %d calls done); stopping the ranks%n",
        Duration.ofNanos(System.nanoTime() - lastProgressNanos).toSeconds(), completedCalls.get(), totalCalls));
    b.append("ranks:\n");
    long now = System.nanoTime();
    for (RankDriver.Status s : ranks) {
      b.append("  ").append(s.describe(now)).append('\n');
    }
    if (cluster != null) {
      b.append("servers:\n");
      for (AttentionServer s : cluster.servers()) {
        b.append("  ").append(s.diagnostics()).append('\n');
      }
    }
    b.append("clients:\n");
    for (DistcaClient c : clients) {
      b.append("  ").append(c.diagnostics().replace("\n", "\n  ")).append('\n');
    }
    b.append(threadDump());
    return b.toString();
  }

  /** After a stall: halts the process if the run has not ended within {@link LoadTestOptions#haltAfterStall}. */
  void armHalt(java.util.function.BooleanSupplier ended) {
    if (options.haltAfterStall == null) {
      return;
    }
    long ms = options.haltAfterStall.toMillis();
    Thread t = new Thread(() -> {
      try {
        Thread.sleep(ms);
      } catch (InterruptedException e) {
        return;
      }
      if (!ended.getAsBoolean()) {
        PrintStream out = options.diagnostics;
        out.println("distca loadtest: the stalled run did not stop within " + ms + " ms; halting (exit 3)");
        out.println(threadDump());
        out.flush();
        Runtime.getRuntime().halt(3);
      }
    }, "distca-loadtest-halt");
    t.setDaemon(true);
    t.start();
  }

  /** Every live thread's state, locks and whole stack (ThreadInfo.toString stops at 8 frames), and any deadlock. */
  static String threadDump() {
    ThreadMXBean mx = ManagementFactory.getThreadMXBean();
    StringBuilder b = new StringBuilder("threads:\n");
    long[] deadlocked = mx.isSynchronizerUsageSupported() ? mx.findDeadlockedThreads() : mx.findMonitorDeadlockedThreads();
    if (deadlocked != null) {
      b.append("  DEADLOCK among thread ids ").append(java.util.Arrays.toString(deadlocked)).append('\n');
    }
    for (ThreadInfo t : mx.dumpAllThreads(mx.isObjectMonitorUsageSupported(), mx.isSynchronizerUsageSupported())) {
      b.append(String.format(Locale.ROOT, "\"%s\" #%d%s %s", t.getThreadName(), t.getThreadId(),
          t.isDaemon() ? " daemon" : "", t.getThreadState()));
      if (t.getLockName() != null) {
        b.append(" on ").append(t.getLockName());
      }
      if (t.getLockOwnerName() != null) {
        b.append(" owned by \"").append(t.getLockOwnerName()).append("\" #").append(t.getLockOwnerId());
      }
      b.append('\n');
      StackTraceElement[] stack = t.getStackTrace();
      MonitorInfo[] monitors = t.getLockedMonitors();
      for (int i = 0; i < stack.length; i++) {
        b.append("    at ").append(stack[i]).append('\n');
        for (MonitorInfo m : monitors) {
          if (m.getLockedStackDepth() == i) {
            b.append("    - locked ").append(m).append('\n');
          }
        }
      }
      for (LockInfo l : t.getLockedSynchronizers()) {
        b.append("    - holds ").append(l).append('\n');
      }
      b.append('\n');
    }
    return b.toString();
  }
}
