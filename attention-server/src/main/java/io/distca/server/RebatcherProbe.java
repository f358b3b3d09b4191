package io.distca.server;

import io.distca.protocol.message.Message;
import io.distca.server.backend.AttentionBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;

/**
 * A benchmark hook into the server's request path without the network: each request is validated
 * ({@link RequestValidator}), queued in a {@link Rebatcher} that fuses it with others into backend
 * calls, run, and released, exactly as {@link AttentionServer} does between decoding a request and
 * encoding its response. Exists so that the rebatcher's cost can be measured against calling the
 * backend directly (loadtest's RebatcherBenchmark); not used by the server itself.
 */
public final class RebatcherProbe implements AutoCloseable {
  private final RequestValidator validator = new RequestValidator(RequestLimits.DEFAULT);
  private final Rebatcher rebatcher;
  private final BufferAllocator allocator;
  private boolean closed;

  /**
   * @param backend            runs the fused batches; stays the caller's to close
   * @param batchWindowMicros  how long a batch waits for more requests (the server's default is 200)
   * @param maxBatchRequests   requests fused into one backend call at most; 1 turns fusing off
   */
  public RebatcherProbe(AttentionBackend backend, long batchWindowMicros, int maxBatchRequests, BufferAllocator allocator) {
    Rebatcher.Options options = new Rebatcher.Options();
    options.batchWindowNanos = TimeUnit.MICROSECONDS.toNanos(batchWindowMicros);
    options.maxBatchRequests = maxBatchRequests;
    this.rebatcher = new Rebatcher(backend, options);
    this.allocator = allocator;
  }

  /**
   * Validates and queues every request (taking ownership of each message); the future completes
   * once all have run and been released, or fails with the first request's error.
   */
  public CompletableFuture<Void> submit(List<Message> requests) {
    List<CompletableFuture<?>> done = new ArrayList<>(requests.size());
    List<PreparedRequest> prepared = new ArrayList<>(requests.size());
    try {
      for (Message m : requests) {
        prepared.add(validator.prepare(m, allocator));
      }
    } catch (RuntimeException e) {
      prepared.forEach(PreparedRequest::close);
      for (int i = prepared.size() + 1; i < requests.size(); i++) {
        requests.get(i).close();
      }
      throw e;
    }
    for (PreparedRequest p : prepared) {
      done.add(p.done.whenComplete((stats, err) -> p.close()));
      rebatcher.offer(p);
    }
    return CompletableFuture.allOf(done.toArray(new CompletableFuture<?>[0]));
  }

  /** Backend calls made so far. */
  public long batches() {
    return rebatcher.batches();
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    rebatcher.close();
  }
}
