package io.distca.dispatcher.service;

import static io.distca.observability.MeterDefinition.counter;
import static io.distca.observability.MeterDefinition.functionCounter;
import static io.distca.observability.MeterDefinition.gauge;
import static io.distca.observability.MeterDefinition.latencyBuckets;
import static io.distca.observability.MeterDefinition.timer;

import io.distca.observability.MeterDefinition;
import io.distca.observability.MeterSpec;
import io.distca.observability.TagSpec;
import io.distca.protocol.message.ErrorCode;

/** Every meter the dispatcher exports; each also carries the common tag {@code component}. */
public enum DispatcherMeters implements MeterSpec {
  SERVERS(gauge("distca.dispatcher.servers", "servers",
      "Attention servers the dispatcher knows, by state: live ones get work, draining and dead ones do not.",
      TagSpec.ofEnum("state", Membership.State.class))),
  REGISTRATIONS(counter("distca.dispatcher.registrations", "registrations",
      "REGISTER messages accepted (a server starting, or re-registering after a dispatcher restart).")),
  HEARTBEATS(counter("distca.dispatcher.heartbeats", "heartbeats", "HEARTBEAT messages received.",
      TagSpec.of("known", "true", "false"))),
  DEATHS(counter("distca.dispatcher.server.deaths", null,
      "Servers declared dead after missing their heartbeats.")),
  PLAN_REQUESTS(counter("distca.dispatcher.plan.requests", "requests",
      "PLAN_REQUEST messages of trainer ranks (one per rank and step).")),
  PLANS(counter("distca.dispatcher.plans", "plans",
      "Step plans made over the gathered ranks, by outcome.", TagSpec.of("outcome", "planned", "failed"))),
  PLANNED_TASKS(counter("distca.dispatcher.planned.tasks", "tasks", "CA-tasks the plans placed on servers.")),
  PLANNED_WORK(counter("distca.dispatcher.planned.work", "flops",
      "Forward FLOPs of the documents planned (by the cost model).")),
  PLANNED_TRAFFIC(counter("distca.dispatcher.planned.traffic", "bytes",
      "Bytes the plans ship per layer and forward pass (Q, K/V once per server, O, LSE).")),
  PLAN_DURATION(timer("distca.dispatcher.plan.duration",
      "Time the planner took for one step (all ranks together).", latencyBuckets())),
  GATHER_DURATION(timer("distca.dispatcher.plan.gather",
      "From a step's first plan request to planning: how long ranks of a job straggle.", latencyBuckets())),
  PLAN_IMBALANCE(gauge("distca.dispatcher.plan.imbalance", "ratio",
      "Imbalance of the last plan: the most loaded server's load over the target (1 = perfect balance).")),
  OPEN_STEPS(gauge("distca.dispatcher.open.steps", "steps", "Steps waiting for the plan requests of more ranks.")),
  WIRE(functionCounter("distca.dispatcher.wire", "bytes",
      "Bytes on the dispatcher's connections, frame headers included.", TagSpec.DIRECTION)),
  CONNECTIONS(functionCounter("distca.dispatcher.connections", "connections", "Connections accepted.")),
  ERRORS(functionCounter("distca.dispatcher.errors", "errors",
      "ERROR replies sent, by code (no_servers, invalid_metadata, ...).", TagSpec.ofEnum("code", ErrorCode.class)));

  private final MeterDefinition definition;

  DispatcherMeters(MeterDefinition definition) {
    this.definition = definition;
  }

  @Override
  public MeterDefinition definition() {
    return definition;
  }
}
