package io.distca.cli;

import io.distca.server.backend.Backends;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** The GPU a command's cuda or auto backend runs on: one attention server per GPU. */
final class GpuFlags {
  @Spec(Spec.Target.MIXEE)
  CommandSpec mixee;

  @Option(names = "--cuda-device", paramLabel = "N", description = "GPU of the cuda and auto backends, as the CUDA"
      + " driver numbers them (after CUDA_VISIBLE_DEVICES); run one server per GPU (default: ${DEFAULT-VALUE}).")
  int cudaDevice = 0;

  /** --cuda-device for {@code backend}, or a usage error (exit 2) where it is negative or the backend has no GPU. */
  int forBackend(String backend) {
    String bad = Backends.cudaDeviceProblem("--cuda-device", cudaDevice, backend);
    if (bad != null) {
      throw new ParameterException(mixee.commandLine(), bad);
    }
    return cudaDevice;
  }
}
