package io.distca.server;

import io.distca.protocol.tls.TlsOptions;
import io.distca.protocol.transport.ConnectionLimits;
import io.distca.server.backend.AttentionBackend;
import io.distca.server.backend.Backends;
import java.util.UUID;
import java.util.function.Supplier;

/** Attention-server settings with their defaults; {@link #conclude()} validates them once. */
public final class ServerContext {
  public String host = "0.0.0.0";
  /** Data port for trainer clients; 0 picks a free one. */
  public int port = 7400;
  /** Address the dispatcher hands to clients; defaults to 127.0.0.1 when listening on all interfaces. */
  public String advertisedHost;
  /** Dispatcher to register with; null runs the server standalone (clients connect directly). */
  public String dispatcherHost;
  public int dispatcherPort = 7300;
  public String serverId = "server-" + UUID.randomUUID().toString().substring(0, 8);
  /** Shared token: required from clients in HELLO and presented to the dispatcher. Empty disables it. */
  public String token = "";
  /**
   * TLS of the data port and of the dispatcher connection (certificate and key from PEM files, e.g.
   * a mounted Kubernetes TLS Secret; optionally mutual TLS). Null: plaintext.
   */
  public TlsOptions tls;
  /** Connections one remote address may hold on the data port; more are refused (TOO_MANY_CONNECTIONS). */
  public int maxConnectionsPerPeer = ConnectionLimits.DEFAULT_MAX_CONNECTIONS_PER_PEER;
  /** cpu, cuda, auto (CUDA when a GPU and the kernels are there, else CPU) or reference (float64, slow). */
  public String backend = "auto";
  /** Compute threads of the CPU backend; 0 means one per core. */
  public int computeThreads = 0;
  /**
   * The GPU of the cuda and auto backends, as the CUDA driver numbers them (after
   * CUDA_VISIBLE_DEVICES): one attention server per GPU. Must stay 0 with the cpu and reference
   * backends.
   */
  public int cudaDevice = 0;
  /**
   * Makes the backend instead of {@link #backend}, when set: for embedding a backend the factory
   * does not know (tests, tools). The server owns and closes what it returns.
   */
  public Supplier<AttentionBackend> backendFactory;
  public int ioThreads = 2;
  public long maxFrameBytes = 512L << 20;
  public RequestLimits limits = RequestLimits.DEFAULT;
  /** How long the rebatcher waits for more requests to fuse with the oldest one. */
  public long batchWindowMicros = 200;
  public long maxBatchQueryTokens = 65_536;
  public int maxBatchRequests = 64;
  /**
   * Hard cap on the server's buffer memory (received frames, outputs, responses being written): the
   * allocator refuses beyond it, and the decoder answers OVERLOADED.
   */
  public long maxMemoryBytes = 4L << 30;
  /**
   * Admission bound: bytes of admitted requests plus their responses, until written out. Default:
   * half the memory cap. Request frames are limited to half of it (see {@link #maxRequestFrameBytes()}).
   */
  public long maxInflightBytes = 0;
  /**
   * With the CUDA backend: receive large frames into, and allocate outputs from, a pool of page-locked
   * host buffers of up to {@link #pinnedPoolBytes()}, so that the GPU copies request and response
   * tensors directly (no host staging copy). Off: every transfer is staged. No effect on other backends.
   */
  public boolean pinnedReceive = true;
  /** Admission bound: FLOPs queued or running, in seconds of this server's calibrated throughput. */
  public double maxQueuedSeconds = 30;
  /** Port clients should use, when it differs from the listening port (NAT, a proxy); 0 = the listening port. */
  public int advertisedPort = 0;
  /** How long a drain waits for queued and running work before closing anyway. */
  public long drainTimeoutMs = 30_000;
  /**
   * Admin HTTP port (/metrics, /healthz, /readyz) on {@link #host}, separate from the data port;
   * 0 picks a free one, -1 (the default for embedded use; `distca server` uses 9400) serves none.
   */
  public int adminPort = -1;

  private boolean concluded;

  public ServerContext conclude() {
    if (concluded) {
      return this;
    }
    require(port >= 0 && port < 65536, "port must be in [0, 65535], got " + port);
    require(serverId != null && !serverId.isEmpty(), "serverId must be set");
    require(computeThreads >= 0, "computeThreads must be >= 0");
    require(ioThreads >= 1, "ioThreads must be >= 1");
    require(maxFrameBytes >= 1 << 20, "maxFrameBytes must be at least 1 MiB");
    require(batchWindowMicros >= 0, "batchWindowMicros must be >= 0");
    require(backend.equals("cpu") || backend.equals("cuda") || backend.equals("auto") || backend.equals("reference"),
        "backend must be cpu, cuda, auto or reference, got " + backend);
    String badDevice = Backends.cudaDeviceProblem("cudaDevice", cudaDevice, backend);
    require(badDevice == null, badDevice);
    require(maxMemoryBytes >= 16 << 20, "maxMemoryBytes must be at least 16 MiB");
    if (maxInflightBytes == 0) {
      maxInflightBytes = maxMemoryBytes / 2;
    }
    require(maxInflightBytes > 0 && maxInflightBytes <= maxMemoryBytes, "maxInflightBytes must be in (0, maxMemoryBytes]");
    require(maxQueuedSeconds > 0, "maxQueuedSeconds must be positive");
    require(advertisedPort >= 0 && advertisedPort < 65536, "advertisedPort must be a TCP port or 0");
    require(maxConnectionsPerPeer >= 1, "maxConnectionsPerPeer must be >= 1, got " + maxConnectionsPerPeer);
    if (tls != null) {
      require(tls.conclude().canServe(), "tls needs a certificate chain and a private key to serve: " + tls);
    }
    require(adminPort >= -1 && adminPort < 65536, "adminPort must be -1 (none), 0 (any) or a TCP port, got " + adminPort);
    if (advertisedHost == null) {
      advertisedHost = host.equals("0.0.0.0") || host.equals("::") ? "127.0.0.1" : host;
    }
    concluded = true;
    return this;
  }

  /**
   * Largest request frame the data port accepts and advertises in HELLO_OK: {@link #maxFrameBytes},
   * or less when the admission budget is small, so that every request a client may send can be
   * admitted (a request is charged twice its tensor bytes, for itself and its response). Clients
   * split their work into requests of at most this size.
   */
  long maxRequestFrameBytes() {
    return Math.max(io.distca.protocol.wire.WireOptions.MIN_MAX_FRAME_BYTES, Math.min(maxFrameBytes, maxInflightBytes / 2));
  }

  /** Cap of the CUDA backend's pinned buffer pool: three quarters of {@link #maxMemoryBytes}; 0 when {@link #pinnedReceive} is off. */
  public long pinnedPoolBytes() {
    return pinnedReceive ? maxMemoryBytes / 4 * 3 : 0;
  }

  Rebatcher.Options rebatchOptions() {
    Rebatcher.Options o = new Rebatcher.Options();
    o.batchWindowNanos = batchWindowMicros * 1000;
    o.maxBatchQueryTokens = maxBatchQueryTokens;
    o.maxBatchRequests = maxBatchRequests;
    return o;
  }

  private static void require(boolean ok, String message) {
    if (!ok) {
      throw new IllegalArgumentException(message);
    }
  }
}
