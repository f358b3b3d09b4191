package io.distca.client;

import io.distca.observability.CatalogueMeters;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.transport.ConnectionLostException;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Record calls of a {@link DistcaClient} into its {@link ClientMeters} catalogue. */
final class ClientMetrics {
  private final CatalogueMeters<ClientMeters> meters = new CatalogueMeters<>(ClientMeters.class);

  ClientMetrics(MeterRegistry registry) {
    meters.bindTo(registry);
  }

  void callSucceeded(String phase, StepStats stats) {
    meters.timer(ClientMeters.CALLS, phase, "succeeded").record(stats.totalNanos(), TimeUnit.NANOSECONDS);
    meters.timer(ClientMeters.PLAN_WAIT).record(stats.planWaitNanos(), TimeUnit.NANOSECONDS);
    meters.counter(ClientMeters.TASKS, phase).increment(stats.tasks());
    meters.counter(ClientMeters.REQUESTS, phase).increment(stats.requests());
    meters.counter(ClientMeters.PAYLOAD, "sent").increment(stats.bytesSent());
    meters.counter(ClientMeters.PAYLOAD, "received").increment(stats.bytesReceived());
    meters.counter(ClientMeters.ATTENTION, phase).increment(stats.flops());
  }

  void callFailed(String phase, long nanos) {
    meters.timer(ClientMeters.CALLS, phase, "failed").record(nanos, TimeUnit.NANOSECONDS);
  }

  void retried(Throwable cause, boolean toAnotherServer) {
    meters.counter(ClientMeters.RETRIES, reason(cause)).increment();
    if (toAnotherServer) {
      meters.counter(ClientMeters.REDISPATCHES).increment();
    }
  }

  void plannedLocally() {
    meters.counter(ClientMeters.LOCAL_PLANS).increment();
  }

  /** The retry reasons the catalogue lists; the client retries nothing else. */
  private static String reason(Throwable cause) {
    if (cause instanceof ConnectionLostException) {
      return "connection_lost";
    }
    if (cause instanceof TimeoutException) {
      return "timeout";
    }
    if (cause instanceof ProtocolException pe) {
      switch (pe.code()) {
        case OVERLOADED:
          return "overloaded";
        case DRAINING:
          return "draining";
        default:
          return "internal";
      }
    }
    return "internal";
  }
}
