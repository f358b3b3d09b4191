package io.distca.observability;

import io.distca.protocol.message.ErrorCode;
import io.distca.protocol.transport.WireTraffic;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.binder.MeterBinder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.ToDoubleFunction;

/**
 * Binds a meter catalogue (an enum of {@link MeterSpec}) to a registry. Counters, timers and
 * summaries are registered for every combination of their tag values when bound, so each series
 * exists (at zero) from the first scrape: a dashboard shows "0 errors", not "no data". Gauges and
 * function counters read a component's state, so the component binds them with {@link #gauge} and
 * {@link #functionCounter}; {@link #unbound()} tells which are still missing.
 *
 * <p>Every lookup checks the tag values against the catalogue, so no code path can create a meter
 * or a tag value the catalogue (and so the documentation) does not list.
 */
public final class CatalogueMeters<S extends Enum<S> & MeterSpec> implements MeterBinder {
  private final Class<S> catalogue;
  private final Map<Key, Meter> meters = new ConcurrentHashMap<>();
  private final Set<S> bound;
  private volatile MeterRegistry registry;

  private record Key(Enum<?> spec, List<String> tagValues) {}

  public CatalogueMeters(Class<S> catalogue) {
    this.catalogue = catalogue;
    this.bound = EnumSet.noneOf(catalogue);
  }

  @Override
  public synchronized void bindTo(MeterRegistry target) {
    if (registry != null) {
      throw new IllegalStateException(catalogue.getSimpleName() + " is already bound to a registry");
    }
    registry = target;
    for (S spec : catalogue.getEnumConstants()) {
      MeterDefinition d = spec.definition();
      if (!d.kind().eager()) {
        continue;
      }
      for (List<String> values : combinations(d.tags())) {
        meters.put(new Key(spec, values), register(d, values));
      }
      bound.add(spec);
    }
  }

  private Meter register(MeterDefinition d, List<String> values) {
    Tags tags = tags(d, values);
    switch (d.kind()) {
      case COUNTER:
        return Counter.builder(d.name()).baseUnit(d.baseUnit()).description(d.description()).tags(tags).register(registry);
      case TIMER: {
        double[] b = d.buckets();
        Duration[] slos = new Duration[b.length];
        for (int i = 0; i < b.length; i++) {
          slos[i] = Duration.ofNanos(Math.round(b[i] * 1e9));
        }
        return Timer.builder(d.name()).description(d.description()).tags(tags).serviceLevelObjectives(slos)
            .register(registry);
      }
      case SUMMARY:
        return DistributionSummary.builder(d.name()).baseUnit(d.baseUnit()).description(d.description()).tags(tags)
            .serviceLevelObjectives(d.buckets()).register(registry);
      default:
        throw new IllegalArgumentException(d + " is not registered eagerly");
    }
  }

  public Counter counter(S spec, String... tagValues) {
    return (Counter) lookup(spec, MeterKind.COUNTER, tagValues);
  }

  public Timer timer(S spec, String... tagValues) {
    return (Timer) lookup(spec, MeterKind.TIMER, tagValues);
  }

  public DistributionSummary summary(S spec, String... tagValues) {
    return (DistributionSummary) lookup(spec, MeterKind.SUMMARY, tagValues);
  }

  /** Registers a gauge reading {@code fn(obj)} at scrape time; Micrometer holds {@code obj} weakly. */
  public synchronized <T> void gauge(S spec, T obj, ToDoubleFunction<T> fn, String... tagValues) {
    MeterDefinition d = checked(spec, MeterKind.GAUGE, tagValues);
    Gauge.builder(d.name(), obj, fn).baseUnit(d.baseUnit()).description(d.description()).tags(tags(d, List.of(tagValues)))
        .strongReference(true).register(requireRegistry());
    bound.add(spec);
  }

  /** Registers a counter whose value a component keeps itself (monotonic), read at scrape time. */
  public synchronized <T> void functionCounter(S spec, T obj, ToDoubleFunction<T> fn, String... tagValues) {
    MeterDefinition d = checked(spec, MeterKind.FUNCTION_COUNTER, tagValues);
    FunctionCounter.builder(d.name(), obj, fn).baseUnit(d.baseUnit()).description(d.description())
        .tags(tags(d, List.of(tagValues))).register(requireRegistry());
    bound.add(spec);
  }

  /**
   * Binds a transport's counters: bytes each way ({@code wire}, tag direction), connections, and
   * ERROR replies by code ({@code errors}, tag code: one series per {@link ErrorCode}).
   */
  public void bindTraffic(WireTraffic traffic, S wire, S connections, S errors) {
    functionCounter(wire, traffic, WireTraffic::bytesReceived, "received");
    functionCounter(wire, traffic, WireTraffic::bytesSent, "sent");
    functionCounter(connections, traffic, WireTraffic::connectionsOpened);
    for (ErrorCode code : ErrorCode.values()) {
      functionCounter(errors, traffic, t -> t.errorsSent(code), TagSpec.value(code));
    }
  }

  /** Catalogue entries with no meter registered yet (gauges and function counters the component has not bound). */
  public synchronized List<S> unbound() {
    List<S> missing = new ArrayList<>();
    for (S spec : catalogue.getEnumConstants()) {
      if (!bound.contains(spec)) {
        missing.add(spec);
      }
    }
    return missing;
  }

  /**
   * Throws IllegalStateException naming the catalogue entries still unbound: a component calls it
   * once it has bound everything, so that a meter added to the catalogue but never bound fails at
   * start-up rather than missing from the dashboards.
   */
  public void requireAllBound(String component) {
    List<S> missing = unbound();
    if (!missing.isEmpty()) {
      throw new IllegalStateException(component + " meters left unbound: " + missing);
    }
  }

  private Meter lookup(S spec, MeterKind kind, String[] tagValues) {
    Meter m = meters.get(new Key(spec, List.of(tagValues)));
    if (m == null || spec.definition().kind() != kind) {
      checked(spec, kind, tagValues);
      throw new IllegalStateException(catalogue.getSimpleName() + " is not bound to a registry yet");
    }
    return m;
  }

  private MeterRegistry requireRegistry() {
    MeterRegistry r = registry;
    if (r == null) {
      throw new IllegalStateException(catalogue.getSimpleName() + " is not bound to a registry yet");
    }
    return r;
  }

  private static MeterDefinition checked(MeterSpec spec, MeterKind kind, String[] tagValues) {
    MeterDefinition d = spec.definition();
    if (d.kind() != kind) {
      throw new IllegalArgumentException(d.name() + " is a " + d.kind() + ", not a " + kind);
    }
    if (tagValues.length != d.tags().size()) {
      throw new IllegalArgumentException(d.name() + " takes tags " + d.tags() + ", got " + List.of(tagValues));
    }
    for (int i = 0; i < tagValues.length; i++) {
      if (!d.tags().get(i).values().contains(tagValues[i])) {
        throw new IllegalArgumentException(d.name() + ": tag " + d.tags().get(i).key() + " has no value '"
            + tagValues[i] + "' in the catalogue " + d.tags().get(i).values());
      }
    }
    return d;
  }

  private static Tags tags(MeterDefinition d, List<String> values) {
    Tags tags = Tags.empty();
    for (int i = 0; i < values.size(); i++) {
      tags = tags.and(d.tags().get(i).key(), values.get(i));
    }
    return tags;
  }

  /** Every combination of tag values, in catalogue order. */
  static List<List<String>> combinations(List<TagSpec> tags) {
    List<List<String>> out = new ArrayList<>();
    out.add(List.of());
    for (TagSpec t : tags) {
      List<List<String>> next = new ArrayList<>();
      for (List<String> prefix : out) {
        for (String v : t.values()) {
          List<String> combo = new ArrayList<>(prefix);
          combo.add(v);
          next.add(List.copyOf(combo));
        }
      }
      out = next;
    }
    return out;
  }

  /** The definitions of a catalogue, in declaration order. */
  public static <S extends Enum<S> & MeterSpec> List<MeterDefinition> definitions(Class<S> catalogue) {
    List<MeterDefinition> out = new ArrayList<>();
    for (S spec : catalogue.getEnumConstants()) {
      out.add(spec.definition());
    }
    return out;
  }
}
