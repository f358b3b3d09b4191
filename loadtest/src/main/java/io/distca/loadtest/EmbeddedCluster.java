package io.distca.loadtest;

import io.distca.dispatcher.service.Dispatcher;
import io.distca.dispatcher.service.DispatcherContext;
import io.distca.protocol.tls.TlsOptions;
import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.Backends;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.IntFunction;
import org.apache.arrow.memory.BufferAllocator;

/**
 * A whole DistCA cluster inside one JVM, on loopback: a dispatcher and N attention servers that
 * register with it over real TCP, exactly as separate processes would. Used by {@code distca demo},
 * the load test's default target, and end-to-end tests.
 */
public final class EmbeddedCluster implements AutoCloseable {
  private final Dispatcher dispatcher;
  private final List<AttentionServer> servers = new ArrayList<>();

  /** Settings of the embedded cluster. */
  public static final class Options {
    public int servers = 2;
    public String backend = "auto";
    /** Compute threads per server; 0 splits the machine's cores evenly. */
    public int computeThreads = 0;
    public String token = "";
    /**
     * TLS of every port and of the servers' dispatcher connections (one certificate for all, as for
     * a loopback test; clients bring their own options). Null: plaintext.
     */
    public TlsOptions tls;
    /**
     * Connections one address may hold on each service. Every peer of an embedded cluster is
     * 127.0.0.1, so the services' default (sized for one host's trainers) would cap a load test of
     * a few hundred ranks.
     */
    public int maxConnectionsPerPeer = 1 << 16;
    /**
     * GPUs the servers of a cuda or auto backend run on, server i on {@code cudaDevices[i % length]}
     * (one server per GPU where there are as many). Null: every GPU the CUDA driver reports.
     */
    public int[] cudaDevices;
    public String planner = "distca";
    public long batchWindowMicros = 200;
    /**
     * Makes server i's backend instead of {@link #backend} when set (tests use it to plant a wrong
     * server); each server owns and closes what it gets.
     */
    public IntFunction<AttentionBackend> backendFactory;
    /**
     * Admin HTTP ports (/metrics, /healthz, /readyz): -1 serves none, 0 gives every service a free
     * port, a port P gives the dispatcher P and server i P + 1 + i.
     */
    public int adminPort = -1;
    /** Adjusts each server's context last, before the server starts (tests: frame limits, memory). */
    public Consumer<ServerContext> serverContext = sc -> { };

    /**
     * {@code servers} attention servers on the CPU backend with one compute thread each: the small
     * cluster that tests and single-machine checks run against.
     */
    public static Options cpu(int servers) {
      Options o = new Options();
      o.servers = servers;
      o.backend = "cpu";
      o.computeThreads = 1;
      return o;
    }
  }

  public EmbeddedCluster(Options options, BufferAllocator allocator) {
    DispatcherContext dc = new DispatcherContext();
    dc.host = "127.0.0.1";
    dc.port = 0;
    dc.token = options.token;
    dc.tls = options.tls;
    dc.maxConnectionsPerPeer = options.maxConnectionsPerPeer;
    dc.planner = options.planner;
    dc.heartbeatIntervalMs = 200;
    dc.deadAfterMs = 1000;
    dc.gatherTimeoutMs = 5000;
    dc.adminPort = options.adminPort;
    this.dispatcher = new Dispatcher(dc, allocator);
    int threads = options.computeThreads > 0 ? options.computeThreads
        : Math.max(1, Runtime.getRuntime().availableProcessors() / options.servers);
    int[] gpus = Backends.runsOnGpu(options.backend)
        ? (options.cudaDevices != null ? options.cudaDevices.clone() : allGpus()) : new int[] {0};
    if (gpus.length == 0) {
      throw new IllegalArgumentException("cudaDevices must name at least one GPU (null: all of them)");
    }
    try {
      for (int i = 0; i < options.servers; i++) {
        ServerContext sc = new ServerContext();
        sc.cudaDevice = gpus[i % gpus.length];
        sc.host = "127.0.0.1";
        sc.port = 0;
        sc.serverId = "server-" + i;
        sc.dispatcherHost = "127.0.0.1";
        sc.dispatcherPort = dispatcher.port();
        sc.token = options.token;
        sc.tls = options.tls;
        sc.maxConnectionsPerPeer = options.maxConnectionsPerPeer;
        sc.backend = options.backend;
        sc.computeThreads = threads;
        sc.batchWindowMicros = options.batchWindowMicros;
        sc.adminPort = options.adminPort > 0 ? options.adminPort + 1 + i : options.adminPort;
        if (options.backendFactory != null) {
          int index = i;
          sc.backendFactory = () -> options.backendFactory.apply(index);
        }
        options.serverContext.accept(sc);
        servers.add(new AttentionServer(sc, allocator));
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /** Ordinals 0..n-1 of the GPUs the CUDA driver reports, or {0} where it reports none. */
  private static int[] allGpus() {
    int n = Backends.cudaDeviceCount();
    int[] all = new int[Math.max(1, n)];
    for (int i = 0; i < all.length; i++) {
      all[i] = i;
    }
    return all;
  }

  /**
   * {@code devices} (as {@link #serverDevices()} lists them) for a one-line report: each device
   * once, in server order, comma-separated.
   */
  public static String describeDevices(List<String> devices) {
    return String.join(", ", new LinkedHashSet<>(devices));
  }

  /** Each server's backend device, in server order ("GPU 1: ..." where the servers have one GPU each). */
  public List<String> serverDevices() {
    List<String> devices = new ArrayList<>();
    for (AttentionServer s : servers) {
      devices.add(s.backend().device());
    }
    return List.copyOf(devices);
  }

  public int dispatcherPort() {
    return dispatcher.port();
  }

  public Dispatcher dispatcher() {
    return dispatcher;
  }

  public List<AttentionServer> servers() {
    return servers;
  }

  /** Waits until every server is registered and live at the dispatcher. */
  public void awaitReady(long timeoutMs) throws InterruptedException {
    long until = System.currentTimeMillis() + timeoutMs;
    while (dispatcher.membership().live().size() < servers.size()) {
      if (System.currentTimeMillis() > until) {
        throw new IllegalStateException("only " + dispatcher.membership().live().size() + " of " + servers.size()
            + " servers registered within " + timeoutMs + " ms");
      }
      Thread.sleep(20);
    }
  }

  @Override
  public void close() {
    for (AttentionServer s : servers) {
      s.close();
    }
    dispatcher.close();
  }
}
