package io.distca.client;

import static io.distca.observability.MeterDefinition.counter;
import static io.distca.observability.MeterDefinition.latencyBuckets;
import static io.distca.observability.MeterDefinition.timer;

import io.distca.observability.MeterDefinition;
import io.distca.observability.MeterSpec;
import io.distca.observability.TagSpec;

/**
 * Every meter the trainer client records (into {@link ClientContext#meterRegistry}). Only counters
 * and timers, so that several clients in one process add up in one registry.
 */
public enum ClientMeters implements MeterSpec {
  CALLS(timer("distca.client.calls",
      "Forward or backward calls of a micro-batch, end to end: plan, send, compute, merge.", latencyBuckets(),
      TagSpec.PHASE, TagSpec.of("outcome", "succeeded", "failed"))),
  PLAN_WAIT(timer("distca.client.plan.wait",
      "How long a call waited for its step plan (the dispatcher gathers every rank first).", latencyBuckets())),
  TASKS(counter("distca.client.tasks", "tasks", "CA-tasks of successful calls.", TagSpec.PHASE)),
  REQUESTS(counter("distca.client.requests", "requests",
      "Requests (nano-batches) of successful calls, retries included.", TagSpec.PHASE)),
  PAYLOAD(counter("distca.client.payload", "bytes", "Tensor bytes sent to and received from servers.",
      TagSpec.DIRECTION)),
  ATTENTION(counter("distca.client.attention", "flops",
      "Core-attention FLOPs the servers computed for successful calls (backward counts 2.5x).", TagSpec.PHASE)),
  RETRIES(counter("distca.client.retries", "retries",
      "Requests sent again after a failure, by cause.",
      TagSpec.of("reason", "connection_lost", "timeout", "overloaded", "draining", "internal"))),
  REDISPATCHES(counter("distca.client.redispatches", null,
      "Retries sent to a different server than the one that failed them.")),
  LOCAL_PLANS(counter("distca.client.local.plans", "plans",
      "Steps planned on the client because the dispatcher was unreachable."));

  private final MeterDefinition definition;

  ClientMeters(MeterDefinition definition) {
    this.definition = definition;
  }

  @Override
  public MeterDefinition definition() {
    return definition;
  }
}
