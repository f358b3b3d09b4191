package io.distca.cli;

import io.distca.dispatcher.plan.PlanOptions;
import io.distca.dispatcher.service.Dispatcher;
import io.distca.dispatcher.service.DispatcherContext;
import java.util.concurrent.Callable;
import org.apache.arrow.memory.RootAllocator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code distca dispatcher}: membership and per-step plans for the attention-server pool. */
@Command(name = "dispatcher", mixinStandardHelpOptions = true, description = "Run the dispatcher.")
final class DispatcherCommand implements Callable<Integer> {
  @Option(names = "--host", description = "Listen address (default: ${DEFAULT-VALUE}).")
  String host = "0.0.0.0";

  @Option(names = "--port", description = "Port for servers and trainers (default: ${DEFAULT-VALUE}).")
  int port = 7300;

  @Option(names = "--planner", description = "distca or greedy (default: ${DEFAULT-VALUE}).")
  String planner = "distca";

  @Option(names = "--tolerance", description = "Scheduler imbalance tolerance epsilon (default: ${DEFAULT-VALUE}).")
  double tolerance = PlanOptions.DEFAULT_TOLERANCE;

  @Option(names = "--heartbeat-ms", description = "Heartbeat interval asked of servers (default: ${DEFAULT-VALUE}).")
  long heartbeatMs = 1000;

  @Option(names = "--dead-after-ms", description = "Silence after which a server is dead (default: ${DEFAULT-VALUE}).")
  long deadAfterMs = 3500;

  @Option(names = "--gather-ms", description = "How long a step's plan waits for all ranks (default: ${DEFAULT-VALUE}).")
  long gatherMs = 2000;

  @Option(names = "--admin-port", description = "Admin HTTP port for /metrics, /healthz, /readyz; 0 picks one, -1 serves none (default: ${DEFAULT-VALUE}).")
  int adminPort = 9300;

  @Mixin
  ServiceFlags service = new ServiceFlags();

  @Override
  public Integer call() throws Exception {
    DispatcherContext ctx = new DispatcherContext();
    ctx.host = host;
    ctx.port = port;
    ctx.planner = planner;
    ctx.planOptions = PlanOptions.defaults().withTolerance(tolerance);
    ctx.heartbeatIntervalMs = heartbeatMs;
    ctx.deadAfterMs = deadAfterMs;
    ctx.gatherTimeoutMs = gatherMs;
    ctx.token = service.token;
    ctx.tls = service.tls.options();
    ctx.maxConnectionsPerPeer = service.maxConnectionsPerPeer;
    ctx.adminPort = adminPort;
    RootAllocator root = new RootAllocator();
    Dispatcher dispatcher = new Dispatcher(ctx, root);
    System.out.printf("dispatcher listening on %s:%d, admin port %d (planner %s)%n", host, dispatcher.port(),
        dispatcher.adminPort(), planner);
    ServiceFlags.runUntilTerminated("distca-dispatcher-stop", () -> {
      dispatcher.close();
      root.close();
    });
    return 0;
  }
}
