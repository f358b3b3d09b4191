package io.distca.observability;

import io.micrometer.core.instrument.Meter;

/** How a catalogue entry is measured, and so which Prometheus series it becomes. */
public enum MeterKind {
  /** Monotonic count, incremented where the event happens: {@code _total}. */
  COUNTER(Meter.Type.COUNTER),
  /** Monotonic count read from a component's own counter at scrape time: {@code _total}. */
  FUNCTION_COUNTER(Meter.Type.COUNTER),
  /** A value read at scrape time (queue depth, bytes held, state). */
  GAUGE(Meter.Type.GAUGE),
  /** Durations in seconds as a histogram: {@code _bucket}, {@code _count}, {@code _sum}, {@code _max}. */
  TIMER(Meter.Type.TIMER),
  /** A distribution of non-time values as a histogram (batch fill, requests per batch). */
  SUMMARY(Meter.Type.DISTRIBUTION_SUMMARY);

  private final Meter.Type micrometerType;

  MeterKind(Meter.Type micrometerType) {
    this.micrometerType = micrometerType;
  }

  public Meter.Type micrometerType() {
    return micrometerType;
  }

  /** Registered for every tag combination when the catalogue is bound, so their series exist from the start. */
  boolean eager() {
    return this == COUNTER || this == TIMER || this == SUMMARY;
  }
}
