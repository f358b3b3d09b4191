package io.distca.observability;

/**
 * One probe of a service: {@code null} while the condition holds, otherwise a short reason that the
 * admin port returns with HTTP 503 (so {@code kubectl describe pod} shows why).
 */
@FunctionalInterface
public interface HealthCheck {
  HealthCheck ALWAYS = () -> null;

  String failure();
}
