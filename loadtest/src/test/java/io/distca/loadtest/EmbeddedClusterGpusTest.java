package io.distca.loadtest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.distca.server.AttentionServer;
import io.distca.server.backend.cpu.CpuBackend;
import io.distca.server.backend.cpu.CpuBackendOptions;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The embedded cluster gives its servers GPUs in turn (server i on cudaDevices[i % n]), and none
 * to a CPU cluster. The backends here are CPU ones from a factory, so no GPU is needed to see what
 * each server was told.
 */
class EmbeddedClusterGpusTest {

  private static List<Integer> devicesOf(String backend, int[] gpus, int servers) throws Exception {
    EmbeddedCluster.Options options = new EmbeddedCluster.Options();
    options.servers = servers;
    options.backend = backend;
    options.cudaDevices = gpus;
    options.computeThreads = 1;
    options.backendFactory = i -> new CpuBackend(new CpuBackendOptions().threads(1));
    List<Integer> devices = new ArrayList<>();
    options.serverContext = sc -> devices.add(sc.cudaDevice);
    try (BufferAllocator root = new RootAllocator(); EmbeddedCluster cluster = new EmbeddedCluster(options, root)) {
      cluster.awaitReady(20_000);
      for (AttentionServer s : cluster.servers()) {
        assertEquals(CpuBackend.NAME, s.backend().name());
      }
    }
    return devices;
  }

  @Test
  void serversTakeTheGpusInTurn() throws Exception {
    assertEquals(List.of(0, 1, 0), devicesOf("cuda", new int[] {0, 1}, 3));
    assertEquals(List.of(3, 2), devicesOf("auto", new int[] {3, 2}, 2));
  }

  @Test
  void aCpuClusterHasNoGpusAndAnEmptyListIsRefused() throws Exception {
    assertEquals(List.of(0, 0), devicesOf("cpu", new int[] {5}, 2));
    assertThrows(IllegalArgumentException.class, () -> devicesOf("cuda", new int[0], 1));
  }
}
