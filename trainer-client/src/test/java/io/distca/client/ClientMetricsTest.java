package io.distca.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.message.ProtocolException;
import io.distca.protocol.transport.ConnectionLostException;
import io.micrometer.core.instrument.Metrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

class ClientMetricsTest {
  private static StepStats stats() {
    return new StepStats(10, 4, 1000, 500, 2e9, 1, 1_000_000, 50_000_000, 1.02, 2_000_000, 0, List.of());
  }

  @Test
  void callsRetriesAndRedispatchesAreCountedByTheirCatalogueTags() {
    SimpleMeterRegistry registry = new SimpleMeterRegistry();
    ClientMetrics m = new ClientMetrics(registry);
    m.callSucceeded("forward", stats());
    m.callSucceeded("backward", stats());
    m.callFailed("forward", 1000);
    m.retried(new ConnectionLostException("gone"), true);
    m.retried(new TimeoutException(), false);
    m.retried(new ProtocolException(ErrorCode.OVERLOADED, null, "busy", 10, null), true);
    m.plannedLocally();

    assertEquals(1, registry.get("distca.client.calls").tags("phase", "forward", "outcome", "succeeded").timer().count());
    assertEquals(0.05, registry.get("distca.client.calls").tags("phase", "forward", "outcome", "succeeded").timer()
        .totalTime(TimeUnit.SECONDS), 1e-9);
    assertEquals(1, registry.get("distca.client.calls").tags("phase", "forward", "outcome", "failed").timer().count());
    assertEquals(10, registry.get("distca.client.tasks").tags("phase", "backward").counter().count());
    assertEquals(2000, registry.get("distca.client.payload").tags("direction", "sent").counter().count());
    assertEquals(1, registry.get("distca.client.retries").tags("reason", "connection_lost").counter().count());
    assertEquals(1, registry.get("distca.client.retries").tags("reason", "timeout").counter().count());
    assertEquals(1, registry.get("distca.client.retries").tags("reason", "overloaded").counter().count());
    assertEquals(0, registry.get("distca.client.retries").tags("reason", "draining").counter().count());
    assertEquals(2, registry.get("distca.client.redispatches").counter().count());
    assertEquals(1, registry.get("distca.client.local.plans").counter().count());
  }

  @Test
  void clientsSharingTheGlobalRegistryDoNotClash() {
    new ClientMetrics(Metrics.globalRegistry).callSucceeded("forward", stats());
    new ClientMetrics(Metrics.globalRegistry).callSucceeded("forward", stats());
  }
}
