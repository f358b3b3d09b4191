package io.distca.loadtest;

/**
 * Where time goes in a load test, one latency histogram each. The first six follow one request
 * from the trainer to a server and back; the rest are whole calls and steps.
 */
public enum LatencyPhase {
  PLAN("plan", "per step and rank: waiting for the dispatcher's plan (it gathers every rank's documents first)"),
  SEND("send", "per request: gathering the request's rows into its tensors and handing the frame over"),
  QUEUE("queue", "per request: waiting in the server's rebatcher (server-reported)"),
  KERNEL("kernel", "per request: the backend call that ran it, shared with the requests fused with it (server-reported)"),
  RECEIVE("receive", "per request: round trip less queue and kernel: transfer both ways, codecs, validation"),
  MERGE("merge", "per request: placing its results into the caller's layout"),
  ASSEMBLE("assemble", "per call: converting merged fp32 rows into the output tensors"),
  FORWARD_CALL("forward call", "per call: one layer's forward, plan to result"),
  BACKWARD_CALL("backward call", "per call: one layer's backward, plan to result"),
  STEP("step", "per step: all layers of all ranks, the slowest rank's time");

  private final String label;
  private final String description;

  LatencyPhase(String label, String description) {
    this.label = label;
    this.description = description;
  }

  public String label() {
    return label;
  }

  public String description() {
    return description;
  }

  /** The JSON key: the label in snake case. */
  public String key() {
    return label.replace(' ', '_');
  }
}
