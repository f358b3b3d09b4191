package io.distca.server.backend;

/**
 * Implemented by backends that hold memory outside the JVM's view (a GPU's device memory, pinned
 * host staging), so the server can report it as a metric. Values are bytes currently reserved.
 */
public interface BackendMemory {
  long deviceBytes();

  long pinnedHostBytes();
}
