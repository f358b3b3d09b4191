package io.distca.server.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.distca.server.ServerContext;
import io.distca.server.backend.cpu.CpuBackend;
import org.junit.jupiter.api.Test;

/** Backend selection with a GPU ordinal: what is refused before anything opens, on any machine. */
class BackendsTest {

  @Test
  void aGpuOrdinalNeedsABackendThatRunsOnAGpu() {
    for (String kind : new String[] {"cpu", "reference"}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backends.create(kind, 1, 0, 1));
      assertTrue(e.getMessage().contains("CUDA device 1 needs the cuda or auto backend"), e.getMessage());
    }
    IllegalArgumentException negative = assertThrows(IllegalArgumentException.class,
        () -> Backends.create("auto", 1, 0, -1));
    assertTrue(negative.getMessage().contains("must be >= 0"), negative.getMessage());
    try (AttentionBackend cpu = Backends.create("cpu", 1, 0, 0)) {
      assertEquals(CpuBackend.NAME, cpu.name());
    }
  }

  @Test
  void autoOnAMachineWithoutGpusStillRunsOnTheCpuWhateverTheOrdinal() {
    assumeTrue(Backends.cudaDeviceCount() == 0, "this machine has a GPU (the gpu tests cover it)");
    try (AttentionBackend b = Backends.create("auto", 1, 0, 3)) {
      assertEquals(CpuBackend.NAME, b.name());
    }
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> Backends.create("cuda", 1, 0, 3).close(),
        "cuda without a GPU is an error, not a silent CPU");
    assertTrue(e.getMessage().startsWith("the cuda backend cannot run here: "), e.getMessage());
  }

  @Test
  void serverContextChecksTheGpuOrdinal() {
    ServerContext negative = new ServerContext();
    negative.cudaDevice = -1;
    assertTrue(assertThrows(IllegalArgumentException.class, negative::conclude).getMessage().contains("cudaDevice"));

    ServerContext onCpu = new ServerContext();
    onCpu.backend = "cpu";
    onCpu.cudaDevice = 2;
    assertTrue(assertThrows(IllegalArgumentException.class, onCpu::conclude).getMessage()
        .contains("cudaDevice 2 needs the cuda or auto backend"));

    ServerContext onCuda = new ServerContext();
    onCuda.backend = "cuda";
    onCuda.cudaDevice = 2;
    assertEquals(2, onCuda.conclude().cudaDevice);
  }
}
