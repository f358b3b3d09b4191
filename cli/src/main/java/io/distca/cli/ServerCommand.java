package io.distca.cli;

import io.distca.server.AttentionServer;
import io.distca.server.ServerContext;
import java.util.concurrent.Callable;
import org.apache.arrow.memory.RootAllocator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code distca server}: one attention server, registered with a dispatcher, drained on SIGTERM. */
@Command(name = "server", mixinStandardHelpOptions = true, description = "Run an attention server.")
final class ServerCommand implements Callable<Integer> {
  @Option(names = "--host", description = "Listen address (default: ${DEFAULT-VALUE}).")
  String host = "0.0.0.0";

  @Option(names = "--port", description = "Data port for trainer clients; 0 picks one (default: ${DEFAULT-VALUE}).")
  int port = 7400;

  @Option(names = "--advertise", description = "Address clients should use (default: 127.0.0.1 when listening on all interfaces).")
  String advertise;

  @Option(names = "--advertise-port", description = "Port clients should use when it differs from --port (NAT, proxy); 0 = --port.")
  int advertisePort = 0;

  @Option(names = "--dispatcher", description = "Dispatcher host:port to register with; omit to run standalone.")
  String dispatcher;

  @Option(names = "--id", description = "Server id (default: random).")
  String id;

  @Option(names = "--backend", description = "cpu, cuda, auto or reference (default: ${DEFAULT-VALUE}).")
  String backend = "auto";

  @Option(names = "--threads", description = "CPU backend compute threads; 0 = one per core (default: ${DEFAULT-VALUE}).")
  int threads = 0;

  @Option(names = "--io-threads", description = "Netty I/O threads (default: ${DEFAULT-VALUE}).")
  int ioThreads = 2;

  @Option(names = "--batch-window-us", description = "Rebatching window in microseconds (default: ${DEFAULT-VALUE}).")
  long batchWindowMicros = 200;

  @Option(names = "--max-batch-tokens", description = "Query tokens per fused batch (default: ${DEFAULT-VALUE}).")
  long maxBatchTokens = 65_536;

  @Option(names = "--admin-port", description = "Admin HTTP port for /metrics, /healthz, /readyz; 0 picks one, -1 serves none (default: ${DEFAULT-VALUE}).")
  int adminPort = 9400;

  @Mixin
  ServiceFlags service = new ServiceFlags();

  @Mixin
  GpuFlags gpu = new GpuFlags();

  @Override
  public Integer call() throws Exception {
    ServerContext ctx = new ServerContext();
    ctx.host = host;
    ctx.port = port;
    ctx.advertisedHost = advertise;
    ctx.advertisedPort = advertisePort;
    if (dispatcher != null) {
      HostPort hp = HostPort.parse(dispatcher, 7300);
      ctx.dispatcherHost = hp.host();
      ctx.dispatcherPort = hp.port();
    }
    if (id != null) {
      ctx.serverId = id;
    }
    ctx.backend = backend;
    ctx.cudaDevice = gpu.forBackend(backend);
    ctx.computeThreads = threads;
    ctx.ioThreads = ioThreads;
    ctx.batchWindowMicros = batchWindowMicros;
    ctx.maxBatchQueryTokens = maxBatchTokens;
    ctx.token = service.token;
    ctx.tls = service.tls.options();
    ctx.maxConnectionsPerPeer = service.maxConnectionsPerPeer;
    ctx.adminPort = adminPort;
    RootAllocator root = new RootAllocator();
    AttentionServer server = new AttentionServer(ctx, root);
    System.out.printf("attention server %s listening on %s:%d, admin port %d (backend %s on %s)%n", server.serverId(),
        host, server.port(), server.adminPort(), server.backend().name(), server.backend().device());
    ServiceFlags.runUntilTerminated("distca-drain", () -> {
      server.drain();
      server.close();
      root.close();
    });
    return 0;
  }
}
