package io.distca.server.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.distca.protocol.model.AttentionShape;
import io.distca.protocol.tensor.DType;
import io.distca.server.backend.AttentionFixture;
import io.distca.server.backend.BackendMemory;
import io.distca.server.backend.AttentionFixture.SliceSpec;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/** What the CUDA backend reports as its memory pools (the server's distca.server.memory.used gauge). */
@Tag("gpu")
class CudaBackendMemoryGpuTest {
  @Test
  void arenaBytesGrowWithTheFirstBatchesAndStayFlatAfter() {
    CudaBackendOptions options = new CudaBackendOptions();
    try (BufferAllocator allocator = new RootAllocator(); CudaBackend backend = GpuTests.openOrSkip(options)) {
      BackendMemory memory = backend;
      long deviceBefore = memory.deviceBytes();
      long pinnedBefore = memory.pinnedHostBytes();
      AttentionShape shape = new AttentionShape(8, 2, 128, DType.BF16, AttentionShape.defaultScale(128));
      try (AttentionFixture f = new AttentionFixture(allocator, shape, new int[] {500, 800},
          List.of(SliceSpec.causalBottomRight(0, 500, 500), SliceSpec.causalBottomRight(1, 800, 800)), 7)) {
        for (int i = 0; i < options.pipelineDepth(); i++) {
          backend.forward(f.forwardBatch());
        }
        long device = memory.deviceBytes();
        long pinned = memory.pinnedHostBytes();
        // q, k, v, o and lse of 1300 tokens must have been staged and placed on the device
        long minimum = 1300L * (8 + 2 + 2 + 8) * 128 * 2;
        assertTrue(device >= minimum && device >= deviceBefore, "device arena bytes " + device + " < " + minimum);
        assertTrue(pinned >= minimum && pinned >= pinnedBefore, "pinned arena bytes " + pinned + " < " + minimum);
        for (int i = 0; i < 5; i++) {
          backend.forward(f.forwardBatch());
        }
        assertEquals(device, memory.deviceBytes(), "same-sized batches do not grow the device arenas");
        assertEquals(pinned, memory.pinnedHostBytes());
        System.out.printf("CUDA arenas after warm-up: device %d bytes, pinned %d bytes (before: %d, %d)%n", device,
            pinned, deviceBefore, pinnedBefore);
      }
    }
  }
}
