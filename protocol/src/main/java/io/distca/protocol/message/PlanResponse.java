package io.distca.protocol.message;

import java.util.List;

/** The placement for one rank, plus the global balance the dispatcher reached for the step. */
public record PlanResponse(
    String job,
    long step,
    int rank,
    List<ServerInfo> servers,
    List<PlannedTask> tasks,
    double imbalance,
    long planNanos) {}
