package io.distca.dispatcher.service;

import io.distca.dispatcher.plan.PlanOptions;
import io.distca.protocol.tls.TlsOptions;
import io.distca.protocol.transport.ConnectionLimits;

/** Dispatcher settings with defaults; {@link #conclude()} validates them once. */
public final class DispatcherContext {
  public String host = "0.0.0.0";
  /** Plan and registration port; 0 picks a free one. */
  public int port = 7300;
  public int ioThreads = 2;
  /** Shared token required in HELLO; empty disables the check (development only). */
  public String token = "";
  /** TLS of the port (certificate and key from PEM files; optionally mutual TLS). Null: plaintext. */
  public TlsOptions tls;
  /** Connections one remote address may hold; more are refused (TOO_MANY_CONNECTIONS). */
  public int maxConnectionsPerPeer = ConnectionLimits.DEFAULT_MAX_CONNECTIONS_PER_PEER;
  public long maxFrameBytes = 64L << 20;
  /** How often servers are asked to heartbeat. */
  public long heartbeatIntervalMs = 1000;
  /** Silence after which a server is declared dead and gets no more work. */
  public long deadAfterMs = 3500;
  /** How long the plan of a step waits for all ranks of the job before planning with those present. */
  public long gatherTimeoutMs = 2000;
  /** "distca" (communication-aware, the default) or "greedy". */
  public String planner = "distca";
  public PlanOptions planOptions = PlanOptions.defaults();
  /**
   * Per server and layer, plan at most this fraction of the memory it reported (its admission
   * budget is half of it by default); beyond it the planner raises its tolerance step by step.
   * 0 plans without byte budgets.
   */
  public double byteBudgetFraction = 0.5;
  /**
   * Admin HTTP port (/metrics, /healthz, /readyz) on {@link #host}, separate from the plan port;
   * 0 picks a free one, -1 (the default for embedded use; `distca dispatcher` uses 9300) serves none.
   */
  public int adminPort = -1;

  private boolean concluded;

  public DispatcherContext conclude() {
    if (concluded) {
      return this;
    }
    require(port >= 0 && port < 65536, "port must be in [0, 65535], got " + port);
    require(ioThreads >= 1, "ioThreads must be >= 1");
    require(heartbeatIntervalMs > 0, "heartbeatIntervalMs must be positive");
    require(deadAfterMs > heartbeatIntervalMs, "deadAfterMs must exceed heartbeatIntervalMs");
    require(gatherTimeoutMs > 0, "gatherTimeoutMs must be positive");
    require(adminPort >= -1 && adminPort < 65536, "adminPort must be -1 (none), 0 (any) or a TCP port, got " + adminPort);
    require(byteBudgetFraction >= 0 && byteBudgetFraction <= 1, "byteBudgetFraction must be in [0, 1]");
    require(planner.equals("distca") || planner.equals("greedy"), "planner must be distca or greedy, got " + planner);
    require(maxConnectionsPerPeer >= 1, "maxConnectionsPerPeer must be >= 1, got " + maxConnectionsPerPeer);
    if (tls != null) {
      require(tls.conclude().canServe(), "tls needs a certificate chain and a private key to serve: " + tls);
    }
    concluded = true;
    return this;
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new IllegalArgumentException(message);
    }
  }
}
