package io.distca.cli;

import io.distca.protocol.transport.ConnectionLimits;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * What every long-running service takes alike (authentication, TLS, connection limits), and how it
 * runs: until SIGTERM, then its own shutdown (a server drains first).
 */
final class ServiceFlags {
  @Option(names = "--token", description = "Shared token peers must present (default: $DISTCA_TOKEN or none).")
  String token = System.getenv().getOrDefault("DISTCA_TOKEN", "");

  @Mixin
  TlsFlags tls = new TlsFlags();

  @Option(names = "--max-connections-per-peer", description = "Connections one remote address may hold; more are refused (default: ${DEFAULT-VALUE}).")
  int maxConnectionsPerPeer = ConnectionLimits.DEFAULT_MAX_CONNECTIONS_PER_PEER;

  /** Blocks until the JVM is asked to stop (SIGTERM, Ctrl-C), after running {@code shutdown} on its way out. */
  static void runUntilTerminated(String threadName, Runnable shutdown) throws InterruptedException {
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      try {
        shutdown.run();
      } finally {
        stopped.countDown();
      }
    }, threadName));
    stopped.await();
  }
}
