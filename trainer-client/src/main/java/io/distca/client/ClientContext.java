package io.distca.client;

import io.micrometer.core.instrument.MeterRegistry;
import io.distca.protocol.tls.TlsOptions;
import io.netty.channel.ChannelPipeline;
import java.time.Duration;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * Every setting of a {@link DistcaClient}, with documented defaults; {@link #conclude()} validates
 * them once. Mutable until concluded, like an Aeron context.
 */
public final class ClientContext {
  /** Dispatcher address; required. */
  public String dispatcherHost = "127.0.0.1";
  public int dispatcherPort = 7300;
  /** Shared secret sent in HELLO; empty when the cluster runs without authentication. */
  public String token = "";
  /**
   * TLS to servers and dispatcher: the CA to trust (and, for mutual TLS, this client's certificate
   * and key), PEM files. Null: plaintext. Ignored when {@link #pipelineSetup} is set.
   */
  public TlsOptions tls;
  /** Training job name: plans are made per (job, step) across its ranks. */
  public String job = "job";
  public int rank = 0;
  public int worldSize = 1;
  /** Largest query shard the planner may cut (tokens); shards are at least 128 except a document's last. */
  public int shardTokens = 4096;
  /** How long one request to a server may take before it is sent elsewhere. */
  public Duration requestTimeout = Duration.ofSeconds(60);
  /** How long a whole forward or backward call may take. */
  public Duration stepTimeout = Duration.ofSeconds(300);
  public Duration connectTimeout = Duration.ofSeconds(5);
  /**
   * Attempts per nano-batch (first try included). The step deadline is what normally ends a call:
   * the default cap only stops a pathological hot loop.
   */
  public int maxAttempts = 1000;
  /**
   * A server that lost a connection or timed out is avoided by this client's later calls for this
   * long (the dispatcher may still list it: it can be alive to the dispatcher and unreachable from
   * here); 0 disables.
   */
  public long quarantineMs = 5000;
  /** Data connections ping their server this often ... */
  public long pingIntervalMs = 500;
  /** ... and are declared dead (pending requests re-sent elsewhere) when a PONG is this late. */
  public long pingTimeoutMs = 2000;
  /**
   * Largest frame this client sends or accepts (header, metadata and tensors). Each server also
   * advertises the largest request it takes (in HELLO_OK); the client cuts its work into requests
   * that fit both, splitting a task's query rows when one task alone is too large. Default 512 MiB,
   * the attention server's default.
   */
  public long maxFrameBytes = 512L << 20;
  /** Netty I/O threads. */
  public int ioThreads = 2;
  /** Split each server's share into two requests so transfer of one overlaps compute of the other. */
  public boolean pingPong = true;
  /** Installs the wire codec on new channels; set by {@link DistcaClient} when left null. */
  public Consumer<ChannelPipeline> pipelineSetup;
  /**
   * Where the client records its {@link ClientMeters} (calls, retries, re-dispatches, bytes); null
   * records into Micrometer's global registry, which keeps nothing unless the application added a
   * registry to it. A trainer sidecar passes the registry its admin port exports.
   */
  public MeterRegistry meterRegistry;
  /** Name sent in HELLO, for server logs. */
  public String clientName = "trainer";

  private boolean concluded;

  public ClientContext conclude() {
    if (concluded) {
      return this;
    }
    Objects.requireNonNull(dispatcherHost, "dispatcherHost");
    require(dispatcherPort > 0 && dispatcherPort < 65536, "dispatcherPort must be a TCP port, got " + dispatcherPort);
    require(job != null && !job.isEmpty(), "job must be a non-empty name");
    require(worldSize >= 1, "worldSize must be >= 1, got " + worldSize);
    require(rank >= 0 && rank < worldSize, "rank must be in [0, worldSize), got " + rank);
    require(shardTokens >= 128, "shardTokens must be >= 128 (the kernel's efficient minimum), got " + shardTokens);
    require(maxAttempts >= 1, "maxAttempts must be >= 1");
    require(pingIntervalMs > 0 && pingTimeoutMs > 0, "ping interval and timeout must be positive");
    require(quarantineMs >= 0, "quarantineMs must be >= 0");
    require(ioThreads >= 1, "ioThreads must be >= 1");
    require(maxFrameBytes >= 1 << 20 && maxFrameBytes <= Integer.MAX_VALUE,
        "maxFrameBytes must be in [1 MiB, 2 GiB), got " + maxFrameBytes);
    require(!requestTimeout.isNegative() && !requestTimeout.isZero(), "requestTimeout must be positive");
    require(!stepTimeout.isNegative() && !stepTimeout.isZero(), "stepTimeout must be positive");
    if (tls != null) {
      tls.conclude(); // a wrong path or key fails here, naming the file
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
