package io.distca.dispatcher.service;

import io.distca.dispatcher.plan.Plan;
import io.distca.observability.CatalogueMeters;
import io.distca.observability.HealthCheck;
import io.distca.observability.ServiceTelemetry;
import io.distca.observability.TagSpec;
import io.distca.protocol.transport.WireTraffic;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/** The dispatcher's telemetry: its {@link DispatcherMeters} catalogue, the admin port, and record calls. */
final class DispatcherMetrics implements StepCoordinator.PlanListener, AutoCloseable {
  private final ServiceTelemetry telemetry;
  private final CatalogueMeters<DispatcherMeters> meters = new CatalogueMeters<>(DispatcherMeters.class);
  private final WireTraffic traffic = new WireTraffic();
  private final AtomicReference<Double> lastImbalance = new AtomicReference<>(Double.NaN);

  DispatcherMetrics(DispatcherContext ctx, HealthCheck readiness) {
    ServiceTelemetry.Options o = new ServiceTelemetry.Options();
    o.component = "dispatcher";
    o.adminHost = ctx.host;
    o.adminPort = ctx.adminPort;
    o.readiness = readiness;
    this.telemetry = new ServiceTelemetry(o);
    meters.bindTo(telemetry.registry());
    meters.bindTraffic(traffic, DispatcherMeters.WIRE, DispatcherMeters.CONNECTIONS, DispatcherMeters.ERRORS);
    // NaN until the first plan: Prometheus then has the series but no misleading 0 or 1
    meters.gauge(DispatcherMeters.PLAN_IMBALANCE, lastImbalance, AtomicReference::get);
  }

  void bindDispatcher(Membership membership, StepCoordinator steps) {
    for (Membership.State state : Membership.State.values()) {
      meters.gauge(DispatcherMeters.SERVERS, membership, m -> m.count(state), TagSpec.value(state));
    }
    meters.gauge(DispatcherMeters.OPEN_STEPS, steps, StepCoordinator::openSteps);
    meters.requireAllBound("dispatcher");
  }

  WireTraffic traffic() {
    return traffic;
  }

  MeterRegistry registry() {
    return telemetry.registry();
  }

  int adminPort() {
    return telemetry.adminPort();
  }

  void registered() {
    meters.counter(DispatcherMeters.REGISTRATIONS).increment();
  }

  void heartbeat(boolean known) {
    meters.counter(DispatcherMeters.HEARTBEATS, String.valueOf(known)).increment();
  }

  void died(int servers) {
    meters.counter(DispatcherMeters.DEATHS).increment(servers);
  }

  void planRequested() {
    meters.counter(DispatcherMeters.PLAN_REQUESTS).increment();
  }

  @Override
  public void planned(Plan plan, long planNanos, long gatherNanos) {
    meters.counter(DispatcherMeters.PLANS, "planned").increment();
    meters.counter(DispatcherMeters.PLANNED_TASKS).increment(plan.taskCount());
    meters.counter(DispatcherMeters.PLANNED_WORK).increment(plan.totalFlops());
    meters.counter(DispatcherMeters.PLANNED_TRAFFIC).increment(plan.bytesMoved());
    meters.timer(DispatcherMeters.PLAN_DURATION).record(planNanos, TimeUnit.NANOSECONDS);
    meters.timer(DispatcherMeters.GATHER_DURATION).record(gatherNanos, TimeUnit.NANOSECONDS);
    lastImbalance.set(plan.imbalance());
  }

  @Override
  public void planFailed() {
    meters.counter(DispatcherMeters.PLANS, "failed").increment();
  }

  @Override
  public void close() {
    telemetry.close();
  }
}
