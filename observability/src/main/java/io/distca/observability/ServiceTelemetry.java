package io.distca.observability;

import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.netty4.NettyAllocatorMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.ByteBufAllocatorMetricProvider;
import io.netty.buffer.PooledByteBufAllocator;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * What every DistCA service shares for operations: a Prometheus meter registry tagged with the
 * component (and any other per-process tags, such as the server id), JVM and Netty allocator
 * metrics, and, when asked for, the {@link AdminServer} on its own port. The service binds its own
 * catalogue to {@link #registry()}.
 */
public final class ServiceTelemetry implements AutoCloseable {
  /** The admin port is off: metrics are kept in-process only (libraries, tests). */
  public static final int NO_ADMIN_PORT = -1;

  private final PrometheusMeterRegistry registry;
  private final JvmGcMetrics gcMetrics;
  private final AdminServer admin;
  private boolean closed;

  /** Settings with defaults; {@link #conclude()} validates them. */
  public static final class Options {
    /** Value of the {@code component} tag on every meter: attention-server, dispatcher, trainer-client. */
    public String component;
    /** Further tags on every meter; keep them per-process constants (e.g. {@code server=server-0}). */
    public List<Tag> commonTags = new ArrayList<>();
    public String adminHost = "0.0.0.0";
    /** Admin HTTP port; 0 picks a free one, {@link #NO_ADMIN_PORT} serves none. */
    public int adminPort = NO_ADMIN_PORT;
    /** Liveness: failing it makes the orchestrator restart the process. */
    public HealthCheck liveness = HealthCheck.ALWAYS;
    /** Readiness: failing it takes the process out of service without restarting it. */
    public HealthCheck readiness = HealthCheck.ALWAYS;

    /** Options for {@code component} with its admin port on a free port of 127.0.0.1. */
    public static Options loopback(String component) {
      Options o = new Options();
      o.component = component;
      o.adminHost = "127.0.0.1";
      o.adminPort = 0;
      return o;
    }

    public Options conclude() {
      if (component == null || component.isEmpty()) {
        throw new IllegalArgumentException("component must be set");
      }
      if (adminPort < NO_ADMIN_PORT || adminPort > 65535) {
        throw new IllegalArgumentException("admin port must be -1 (none), 0 (any) or a TCP port, got " + adminPort);
      }
      Objects.requireNonNull(adminHost, "adminHost");
      Objects.requireNonNull(liveness, "liveness");
      Objects.requireNonNull(readiness, "readiness");
      return this;
    }
  }

  public ServiceTelemetry(Options options) {
    options.conclude();
    this.registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    List<Tag> tags = new ArrayList<>(options.commonTags);
    tags.add(Tag.of("component", options.component));
    registry.config().commonTags(tags);
    new ClassLoaderMetrics().bindTo(registry);
    new JvmMemoryMetrics().bindTo(registry);
    this.gcMetrics = new JvmGcMetrics();
    gcMetrics.bindTo(registry);
    new JvmThreadMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    new UptimeMetrics().bindTo(registry);
    new FileDescriptorMetrics().bindTo(registry);
    bindNettyAllocators();
    AdminServer a = null;
    if (options.adminPort != NO_ADMIN_PORT) {
      try {
        a = new AdminServer(options.adminHost, options.adminPort, registry.getPrometheusRegistry(), options.liveness,
            options.readiness);
      } catch (RuntimeException e) {
        gcMetrics.close();
        registry.close();
        throw e;
      }
    }
    this.admin = a;
  }

  /** Netty's default allocator (adaptive in Netty 4.2) and the pooled one, when they report metrics. */
  private void bindNettyAllocators() {
    ByteBufAllocator byDefault = ByteBufAllocator.DEFAULT;
    if (byDefault instanceof ByteBufAllocatorMetricProvider provider) {
      new NettyAllocatorMetrics(provider).bindTo(registry);
    }
    if (byDefault != PooledByteBufAllocator.DEFAULT) {
      new NettyAllocatorMetrics(PooledByteBufAllocator.DEFAULT).bindTo(registry);
    }
  }

  public PrometheusMeterRegistry registry() {
    return registry;
  }

  /** The admin port, or {@link #NO_ADMIN_PORT} when none is served. */
  public int adminPort() {
    return admin == null ? NO_ADMIN_PORT : admin.port();
  }

  /** The Prometheus text exposition, as the admin port would serve it. */
  public String scrape() {
    return registry.scrape();
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (admin != null) {
      admin.close();
    }
    gcMetrics.close();
    registry.close();
  }
}
