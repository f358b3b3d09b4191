package io.distca.loadtest;

import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.client.RequestCounts;
import io.distca.protocol.message.ServerInfo;
import io.distca.server.AttentionServer;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.Backends;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * {@code distca loadtest}: simulated trainer ranks (a thread and a {@link DistcaClient} each) run
 * real training steps of core attention against a cluster (an embedded one it starts, or an
 * existing dispatcher) while every phase's latency, the servers' load and the bytes moved are
 * recorded; a sample of results is checked against a local computation; and the run's achieved
 * numbers are set against ceilings measured in the same process. Returns a {@link LoadReport};
 * {@link LoadReport#exitCode()} is non-zero when any check or call failed.
 */
public final class LoadTest {
  private static final int MAX_LISTED_FAILURES = 20;

  private LoadTest() {}

  public static LoadReport run(LoadTestOptions options) throws InterruptedException {
    options.conclude();
    LoadReport[] report = new LoadReport[1];
    java.util.concurrent.atomic.AtomicBoolean ended = new java.util.concurrent.atomic.AtomicBoolean();
    try (BufferAllocator root = new RootAllocator()) {
      if (!options.embedded()) {
        return report[0] = new Session(options, root, null, ended).run();
      }
      EmbeddedCluster.Options co = new EmbeddedCluster.Options();
      co.servers = options.servers;
      co.backend = options.backend;
      co.computeThreads = options.computeThreads;
      co.planner = options.planner;
      co.token = options.token;
      co.tls = options.tls != null && options.tls.canServe() ? options.tls : null;
      co.backendFactory = options.backendFactory;
      try (EmbeddedCluster cluster = new EmbeddedCluster(co, root)) {
        cluster.awaitReady(60_000);
        return report[0] = new Session(options, root, cluster, ended).run();
      }
    } catch (RuntimeException e) {
      // a stalled run may leave requests behind, and closing their allocators then fails: the
      // report, which says why the run failed, matters more than the leak it causes
      if (report[0] == null || report[0].exitCode() == 0) {
        throw e;
      }
      options.diagnostics.println("distca loadtest: closing the cluster after a failed run: " + e);
      return report[0];
    } finally {
      ended.set(true);
    }
  }

  /** One run: clients, rank threads, the step gate, and what they record. */
  private static final class Session {
    private final LoadTestOptions o;
    private final BufferAllocator root;
    private final EmbeddedCluster cluster;
    private final LoadMetrics metrics = new LoadMetrics();
    private final AtomicLong completedCalls = new AtomicLong();
    private final AtomicLong measuredSteps = new AtomicLong();
    private final List<String> failures = Collections.synchronizedList(new ArrayList<>());
    private final List<SpotCheck.Result> checks = Collections.synchronizedList(new ArrayList<>());
    private final String job;
    /** Set once {@link LoadTest#run} has returned or thrown: all closed. */
    private final java.util.concurrent.atomic.AtomicBoolean ended;

    Session(LoadTestOptions options, BufferAllocator root, EmbeddedCluster cluster,
        java.util.concurrent.atomic.AtomicBoolean ended) {
      this.ended = ended;
      this.o = options;
      this.root = root;
      this.cluster = cluster;
      // a dispatcher plans per (job, step): a fresh name keeps runs against a shared dispatcher apart
      this.job = String.format(Locale.ROOT, "loadtest-%d-%x", o.seed, System.nanoTime());
    }

    LoadReport run() throws InterruptedException {
      long wallStart = System.nanoTime();
      List<DistcaClient> clients = new ArrayList<>();
      try (AttentionBackend reference = Backends.create(o.checkBackend, 0)) {
        for (int r = 0; r < o.ranks; r++) {
          clients.add(new DistcaClient(clientContext(r), root));
        }
        StallWatchdog watchdog = runRanks(clients, reference);
        long wallNanos = System.nanoTime() - wallStart;
        ReportBuilder.Ceiling ceiling;
        if (watchdog.stalled()) {
          // after a stall the servers may still hold its requests: no ceilings measured beside them
          watchdog.armHalt(ended::get);
          ceiling = new ReportBuilder.Ceiling(Double.NaN, null, "not measured: the run stalled");
        } else {
          ceiling = ceilings();
        }
        return new ReportBuilder(o, metrics, checks, failures, MAX_LISTED_FAILURES).build(
            clusterInfo(), counts(clients), servers(clients), ceiling, measuredSteps.get(), wallNanos);
      } finally {
        closeAll(clients);
      }
    }

    /** Closes the clients (once); a failure to close (buffers of calls a stall left behind) goes to the diagnostics. */
    private void closeAll(List<DistcaClient> clients) {
      for (DistcaClient c : clients) {
        try {
          c.close();
        } catch (RuntimeException e) {
          o.diagnostics.println("distca loadtest: closing a client failed: " + e);
        }
      }
      clients.clear();
    }

    private ClientContext clientContext(int rank) {
      ClientContext cc = new ClientContext();
      cc.dispatcherHost = o.embedded() ? "127.0.0.1" : o.dispatcherHost();
      cc.dispatcherPort = o.embedded() ? cluster.dispatcherPort() : o.dispatcherPort();
      cc.token = o.token;
      cc.tls = o.tls;
      cc.job = job;
      cc.rank = rank;
      cc.worldSize = o.ranks;
      cc.shardTokens = o.shardTokens;
      cc.clientName = "loadtest";
      return cc;
    }

    private StallWatchdog runRanks(List<DistcaClient> clients, AttentionBackend reference) throws InterruptedException {
      StepGate gate = new StepGate(o.ranks, this::another, new StepGate.StepListener() {
        @Override
        public void started(long step, long nowNanos) {
          if (step == o.warmupSteps) {
            metrics.start(nowNanos);
          }
        }

        @Override
        public void ended(long step, long startNanos, long endNanos) {
          if (step >= o.warmupSteps) {
            metrics.recordStep(step, endNanos - startNanos, endNanos);
            measuredSteps.incrementAndGet();
          }
        }
      });
      SpotCheck spotCheck = new SpotCheck(reference, o.checkFraction, o.tolerance, o.seed);
      List<Thread> threads = new ArrayList<>();
      List<BufferAllocator> allocators = new ArrayList<>();
      List<RankDriver.Status> statuses = new ArrayList<>();
      for (int r = 0; r < o.ranks; r++) {
        statuses.add(new RankDriver.Status(r));
      }
      StallWatchdog watchdog = new StallWatchdog(o, completedCalls, statuses);
      try (LiveProgress progress = startProgress()) {
        for (int r = 0; r < o.ranks; r++) {
          BufferAllocator a = root.newChildAllocator("loadtest-rank-" + r, 0, Long.MAX_VALUE);
          allocators.add(a);
          Thread t = new Thread(new RankDriver(r, o, clients.get(r), gate, metrics, spotCheck, a, completedCalls,
              failures::add, checks::add, statuses.get(r)), "distca-loadtest-rank-" + r);
          t.setUncaughtExceptionHandler((th, e) -> { }); // already reported as a failure by the driver
          threads.add(t);
        }
        threads.forEach(Thread::start);
        try {
          for (Thread t : threads) {
            while (t.isAlive()) {
              t.join(250);
              progress.update(this::snapshot);
              if (watchdog.check(System.nanoTime())) {
                stall(watchdog, clients, threads, gate);
              }
            }
          }
        } catch (InterruptedException e) {
          gate.stop();
          throw e;
        }
      } finally {
        for (Thread t : threads) {
          t.join();
        }
        for (BufferAllocator a : allocators) {
          try {
            a.close();
          } catch (RuntimeException e) {
            if (!watchdog.stalled()) {
              throw e;
            }
            o.diagnostics.println("distca loadtest: closing a rank's allocator after the stall: " + e);
          }
        }
      }
      return watchdog;
    }

    /** Prints why the run is stalled, records it as a failure and stops every rank. */
    private void stall(StallWatchdog watchdog, List<DistcaClient> clients, List<Thread> threads, StepGate gate) {
      String diagnostic = watchdog.diagnose(totalCalls(), cluster, clients);
      o.diagnostics.println(diagnostic);
      o.diagnostics.flush();
      failures.add(0, "stalled: no layer call completed for " + o.stallTimeout.toSeconds() + " s after "
          + completedCalls.get() + " of " + totalCalls() + " calls; the diagnostic (ranks, servers, clients, threads) "
          + "went to " + (o.diagnostics == System.err ? "stderr" : "the diagnostics stream"));
      gate.stop();
      threads.forEach(Thread::interrupt);
    }

    private long totalCalls() {
      return o.duration != null ? -1 : (long) (o.warmupSteps + o.steps) * o.ranks * o.layers * (o.backward ? 2 : 1);
    }

    /** Whether step {@code n} (0-based, warm-up first) should run. */
    private boolean another(long n) {
      if (n < o.warmupSteps) {
        return true;
      }
      if (o.duration == null) {
        return n < o.warmupSteps + o.steps;
      }
      return !metrics.started() || System.nanoTime() - metrics.originNanos() < o.duration.toNanos();
    }

    private LiveProgress startProgress() {
      if (o.duration != null) {
        return LiveProgress.start(o.progress, "loadtest", o.duration.toMillis(), "ms");
      }
      long calls = (long) (o.warmupSteps + o.steps) * o.ranks * o.layers * (o.backward ? 2 : 1);
      return LiveProgress.start(o.progress, "loadtest", calls, "calls");
    }

    private LiveProgress.Snapshot snapshot() {
      boolean started = metrics.started();
      double seconds = started ? (System.nanoTime() - metrics.originNanos()) / 1e9 : 0;
      String rate = started && seconds > 0 ? LiveProgress.tokensPerSecond(metrics.tokens() / seconds) : "warm-up";
      long failedChecks;
      synchronized (checks) {
        failedChecks = checks.stream().filter(c -> !c.passed()).count();
      }
      String message = rate + " | steps " + measuredSteps.get() + " | checked " + checks.size()
          + (failedChecks > 0 ? ", " + failedChecks + " WRONG" : "") + (failures.isEmpty() ? "" : " | ERRORS");
      long progress = o.duration != null ? (long) (seconds * 1000) : completedCalls.get();
      return new LiveProgress.Snapshot(progress, message);
    }

    private LoadReport.Cluster clusterInfo() {
      if (cluster != null) {
        AttentionBackend b = cluster.servers().get(0).backend();
        return new LoadReport.Cluster("embedded", "127.0.0.1:" + cluster.dispatcherPort(), cluster.servers().size(),
            b.name(), EmbeddedCluster.describeDevices(cluster.serverDevices()), o.computeThreads,
            o.planner);
      }
      return new LoadReport.Cluster("external", o.dispatcher, -1, "remote", "remote", 0, "the dispatcher's");
    }

    private static LoadReport.Requests counts(List<DistcaClient> clients) {
      long[] sum = new long[6];
      for (DistcaClient c : clients) {
        RequestCounts rc = c.requestCounts();
        sum[0] += rc.requestsStarted();
        sum[1] += rc.requestsAnswered();
        sum[2] += rc.requestsFailed();
        sum[3] += rc.tasksSent();
        sum[4] += rc.tasksAnswered();
        sum[5] += rc.tasksFailed();
      }
      return new LoadReport.Requests(sum[0], sum[1], sum[2], sum[3], sum[4], sum[5]);
    }

    /** Every server of the pool with its compute ceiling (FLOP/s), NaN until measured. */
    private Map<String, Double> servers(List<DistcaClient> clients) {
      Map<String, Double> servers = new LinkedHashMap<>();
      if (cluster != null) {
        for (AttentionServer s : cluster.servers()) {
          servers.put(s.serverId(), Double.NaN);
        }
      } else {
        for (DistcaClient c : clients) {
          for (ServerInfo s : c.knownServers()) {
            servers.put(s.serverId(), s.flopsPerSecond() > 0 ? s.flopsPerSecond() : Double.NaN);
          }
        }
      }
      return servers;
    }

    /** Ceilings measured now, with the cluster idle. */
    private ReportBuilder.Ceiling ceilings() {
      long requests = Math.max(1, metrics.answeredRequests());
      double meanMessageBytes = (metrics.bytesSent() + metrics.bytesReceived()) / (2.0 * requests);
      double copy = Ceilings.memoryCopyBytesPerSecond((long) meanMessageBytes, root);
      if (cluster == null) {
        return new ReportBuilder.Ceiling(copy, null,
            "each server's start-up calibration (forward, causal 1024 tokens, heads 8/2, head_dim 128)");
      }
      AttentionServer first = cluster.servers().get(0);
      try (BufferAllocator a = root.newChildAllocator("loadtest-ceiling", 0, Long.MAX_VALUE);
          StepInput sample = StepInput.generate(o.distribution(), o.tokensPerRank, o.shape(), o.causal, o.backward,
              o.seed, 0, 0, a)) {
        Ceilings.KernelRates rates = Ceilings.kernelOnly(first.backend(), sample, o.backward, a);
        return new ReportBuilder.Ceiling(copy, rates, String.format(Locale.ROOT,
            "%s backend of %s run directly on step 0 of rank 0 (whole documents): forward %.2f, backward %.2f GFLOP/s",
            first.backend().name(), first.serverId(), rates.forwardFlopsPerSecond() / 1e9,
            rates.backwardFlopsPerSecond() / 1e9));
      }
    }
  }
}
