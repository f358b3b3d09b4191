package io.distca.dispatcher.service;

import io.distca.protocol.message.Heartbeat;
import io.distca.protocol.message.Register;
import io.distca.protocol.message.ServerInfo;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.LongSupplier;

/**
 * The dispatcher's view of the attention-server pool. A server is LIVE after REGISTER, DRAINING when
 * it says so in a heartbeat, and DEAD after {@code deadAfterMs} without a heartbeat; only LIVE
 * servers receive work. State is rebuilt from re-registrations after a dispatcher restart, so it is
 * never persisted.
 */
public final class Membership {
  public enum State { LIVE, DRAINING, DEAD }

  /** One server as the dispatcher last heard of it. */
  public record Member(Register info, State state, long lastSeenMs, int inflightTasks, double queuedFlops) {
    ServerInfo serverInfo() {
      return new ServerInfo(info.serverId(), info.host(), info.port(), info.flopsPerSecond());
    }
  }

  private final long deadAfterMs;
  private final LongSupplier clock;
  private final Map<String, Member> members = new TreeMap<>();

  public Membership(long deadAfterMs, LongSupplier clockMs) {
    this.deadAfterMs = deadAfterMs;
    this.clock = clockMs;
  }

  public synchronized void register(Register r) {
    members.put(r.serverId(), new Member(r, State.LIVE, clock.getAsLong(), 0, 0));
  }

  /** @return false when the server is unknown (it must register again) */
  public synchronized boolean heartbeat(Heartbeat h) {
    Member m = members.get(h.serverId());
    if (m == null) {
      return false;
    }
    State state = h.draining() ? State.DRAINING : State.LIVE;
    members.put(h.serverId(), new Member(m.info(), state, clock.getAsLong(), h.inflightTasks(), h.queuedFlops()));
    return true;
  }

  public synchronized void remove(String serverId) {
    members.remove(serverId);
  }

  /** Marks servers silent for longer than the limit as DEAD; returns the ids that just died. */
  public synchronized List<String> sweep() {
    long now = clock.getAsLong();
    List<String> died = new ArrayList<>();
    for (var e : members.entrySet()) {
      Member m = e.getValue();
      if (m.state() != State.DEAD && now - m.lastSeenMs() > deadAfterMs) {
        e.setValue(new Member(m.info(), State.DEAD, m.lastSeenMs(), 0, 0));
        died.add(e.getKey());
      }
    }
    return died;
  }

  /** Buffer memory a live server reported, bytes; 0 when unknown. */
  public synchronized long memoryBytes(String serverId) {
    Member m = members.get(serverId);
    return m == null ? 0 : Math.max(0, m.info().memoryBytes());
  }

  /** LIVE servers ordered by id, so plans are deterministic for the same membership. */
  public synchronized List<ServerInfo> live() {
    List<ServerInfo> out = new ArrayList<>();
    for (Member m : members.values()) {
      if (m.state() == State.LIVE) {
        out.add(m.serverInfo());
      }
    }
    out.sort(Comparator.comparing(ServerInfo::serverId));
    return out;
  }

  public synchronized List<Member> all() {
    return new ArrayList<>(members.values());
  }

  public synchronized int count(State state) {
    int n = 0;
    for (Member m : members.values()) {
      if (m.state() == state) {
        n++;
      }
    }
    return n;
  }
}
