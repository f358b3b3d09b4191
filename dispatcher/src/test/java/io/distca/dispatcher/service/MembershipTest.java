package io.distca.dispatcher.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.Register;
import io.distca.protocol.message.ServerInfo;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** Server life cycle at the dispatcher, on a clock the test moves by hand. */
class MembershipTest {
  private final AtomicLong now = new AtomicLong(1_000);
  private final Membership m = new Membership(3_000, now::get);

  private static Register server(String id, double flops) {
    return new Register(id, "10.0.0.1", 7400, "cpu", "test", 1 << 30, flops, List.of());
  }

  @Test
  void liveServersAreOrderedByIdAndCarryTheirThroughput() {
    m.register(server("s-b", 2e12));
    m.register(server("s-a", 1e12));
    List<ServerInfo> live = m.live();
    assertEquals(List.of("s-a", "s-b"), live.stream().map(ServerInfo::serverId).toList());
    assertEquals(2e12, live.get(1).flopsPerSecond());
  }

  @Test
  void drainingServersGetNoWorkAndComeBackWhenTheyStopDraining() {
    m.register(server("s-1", 1));
    m.register(server("s-2", 1));
    assertTrue(m.heartbeat(new Heartbeat("s-1", 3, 0, true)));
    assertEquals(List.of("s-2"), m.live().stream().map(ServerInfo::serverId).toList());
    assertEquals(1, m.count(Membership.State.DRAINING));
    assertTrue(m.heartbeat(new Heartbeat("s-1", 0, 0, false)));
    assertEquals(2, m.live().size());
  }

  @Test
  void silentServersDieAndARegistrationBringsThemBack() {
    m.register(server("s-1", 1));
    m.register(server("s-2", 1));
    now.addAndGet(2_000);
    m.heartbeat(new Heartbeat("s-2", 0, 0, false));
    assertTrue(m.sweep().isEmpty(), "nobody is silent for more than 3 s yet");
    now.addAndGet(1_500);
    assertEquals(List.of("s-1"), m.sweep());
    assertEquals(List.of("s-2"), m.live().stream().map(ServerInfo::serverId).toList());
    assertTrue(m.sweep().isEmpty(), "a death is reported once");
    m.register(server("s-1", 1));
    assertEquals(2, m.live().size());
  }

  @Test
  void aRestartedDispatcherTellsUnknownServersToRegister() {
    assertFalse(m.heartbeat(new Heartbeat("never-registered", 0, 0, false)));
    assertTrue(m.live().isEmpty());
  }
}
