package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.github.dockerjava.api.DockerClient;
import com.github.dockerjava.api.model.ExposedPort;
import com.github.dockerjava.api.model.Ports;
import io.distca.client.ClientContext;
import io.distca.client.DistcaClient;
import io.distca.observability.AdminServer;
import io.distca.server.backend.ReferenceAttention;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.containers.GenericContainer;
import org.testcontainers.containers.Network;
import org.testcontainers.containers.output.Slf4jLogConsumer;
import org.testcontainers.containers.wait.strategy.Wait;
import org.testcontainers.images.builder.ImageFromDockerfile;

/**
 * DistCA in real containers: the dispatcher and three attention servers, each a container of the
 * image deploy/docker/Dockerfile builds (here on the locally imported JRE base), on one Docker
 * network; trainer clients run in the test JVM. Forward and backward steps are checked against the
 * float64 reference; a server killed mid-step and a server frozen with {@code docker pause} both
 * leave every step correct, because the client re-dispatches their work.
 *
 * <p>Servers listen on a free port P mapped to the same host port and advertise 127.0.0.1:P, so the
 * plans the dispatcher hands out reach the servers from the test JVM over loopback.
 */
class ContainerClusterTest {
  static final String BASE_IMAGE = "distca/jre-base:local";
  private static final int SERVERS = 3;
  private static ImageFromDockerfile image;

  private Network network;
  private GenericContainer<?> dispatcher;
  private final List<GenericContainer<?>> servers = new ArrayList<>();

  @BeforeAll
  static void buildImage() throws Exception {
    boolean docker;
    try {
      docker = DockerClientFactory.instance().isDockerAvailable();
    } catch (RuntimeException e) {
      docker = false;
    }
    Environment.require(docker, "a Docker engine (dockerd)");
    Path root = Environment.repoRoot();
    ensureBaseImage(root);
    Path target = root.resolve("cli/target");
    assertTrue(Files.isRegularFile(target.resolve("distca-cli.jar")) && Files.isDirectory(target.resolve("lib")),
        "cli/target/distca-cli.jar and lib/ are missing: run mvn package (the reactor builds cli before deploy)");
    image = new ImageFromDockerfile("distca/distca-test", false)
        .withFileFromPath("Dockerfile", root.resolve("deploy/docker/Dockerfile"))
        .withFileFromPath("distca-cli.jar", target.resolve("distca-cli.jar"))
        .withFileFromPath("lib", target.resolve("lib"))
        .withBuildArg("BASE_IMAGE", BASE_IMAGE);
    image.get(5, TimeUnit.MINUTES);
  }

  /** Builds the JRE base with deploy/docker/build-local-base.sh when it is not there yet (.ci/run builds it first). */
  private static void ensureBaseImage(Path root) throws Exception {
    DockerClient docker = DockerClientFactory.instance().client();
    if (!docker.listImagesCmd().withImageNameFilter(BASE_IMAGE).exec().isEmpty()) {
      return;
    }
    Process p = new ProcessBuilder("bash", root.resolve("deploy/docker/build-local-base.sh").toString(), BASE_IMAGE)
        .redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(5, TimeUnit.MINUTES) && p.exitValue() == 0, "building the base image failed:\n" + out);
  }

  @BeforeEach
  void startCluster() throws Exception {
    network = Network.newNetwork();
    dispatcher = new GenericContainer<>(image)
        .withNetwork(network)
        .withNetworkAliases("dispatcher")
        .withEnv("JAVA_TOOL_OPTIONS", "-Xmx256m")
        .withCommand("dispatcher", "--port=7300", "--admin-port=9300", "--heartbeat-ms=200", "--dead-after-ms=1000",
            "--gather-ms=5000")
        .withExposedPorts(7300, 9300)
        .withLogConsumer(new Slf4jLogConsumer(org.slf4j.LoggerFactory.getLogger("container.dispatcher")))
        .waitingFor(Wait.forLogMessage(".*dispatcher listening on.*\\n", 1).withStartupTimeout(Duration.ofMinutes(2)));
    dispatcher.start();
    for (int i = 0; i < SERVERS; i++) {
      int port = freePort();
      GenericContainer<?> server = new GenericContainer<>(image)
          .withNetwork(network)
          .withEnv("JAVA_TOOL_OPTIONS", "-Xmx256m")
          .withCommand("server", "--id=server-" + i, "--port=" + port, "--advertise=127.0.0.1",
              "--dispatcher=dispatcher:7300", "--backend=cpu", "--threads=1", "--admin-port=9400")
          .withExposedPorts(9400)
          .withCreateContainerCmdModifier(cmd -> {
            Ports bindings = new Ports();
            bindings.bind(ExposedPort.tcp(port), Ports.Binding.bindIpAndPort("127.0.0.1", port));
            bindings.bind(ExposedPort.tcp(9400), Ports.Binding.empty());
            cmd.withExposedPorts(ExposedPort.tcp(port), ExposedPort.tcp(9400));
            cmd.getHostConfig().withPortBindings(bindings);
          })
          .withLogConsumer(new Slf4jLogConsumer(org.slf4j.LoggerFactory.getLogger("container.server-" + i)))
          .waitingFor(Wait.forLogMessage(".*attention server .* listening on.*\\n", 1)
              .withStartupTimeout(Duration.ofMinutes(2)));
      server.start();
      servers.add(server);
    }
    awaitLiveServers(SERVERS);
  }

  @AfterEach
  void stopCluster() {
    for (GenericContainer<?> s : servers) {
      s.stop();
    }
    servers.clear();
    if (dispatcher != null) {
      dispatcher.stop();
    }
    if (network != null) {
      network.close();
    }
  }

  @Test
  void forwardAndBackwardThroughContainersMatchTheReference() throws Exception {
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention reference = new ReferenceAttention()) {
      List<DistcaClient> clients = clients(root, 2, new SimpleMeterRegistry(), Duration.ofSeconds(60));
      try {
        StepRunner runner = new StepRunner(clients, reference, root);
        runner.step(1, new int[][] {{700, 1, 129, 37}, {513, 256, 3}}, true);
        runner.step(2, new int[][] {{300, 300}, {1, 900}}, false);
      } finally {
        clients.forEach(DistcaClient::close);
      }
    }
    double tasks = 0;
    for (GenericContainer<?> s : servers) {
      String metrics = Http.get(s.getMappedPort(9400), AdminServer.METRICS).body();
      double served = ServiceEndpointsTest.value(metrics, "distca_server_tasks_total", "phase=\"forward\"");
      assertTrue(served > 0, "a server container served no task: the plan did not spread work");
      tasks += served;
    }
    assertTrue(tasks >= 4);
  }

  @Test
  void aServerKilledMidStepLosesNoWork() throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention reference = new ReferenceAttention()) {
      List<DistcaClient> clients = clients(root, 2, meters, Duration.ofSeconds(30));
      try {
        StepRunner runner = new StepRunner(clients, reference, root);
        runner.step(1, bigDocs(), true);
        DockerClient docker = DockerClientFactory.instance().client();
        CompletableFuture<Void> step = CompletableFuture.runAsync(() -> run(runner, 2));
        // kill while the step's requests are in flight
        awaitInflight(servers.get(1));
        docker.killContainerCmd(servers.get(1).getContainerId()).exec();
        step.get(3, TimeUnit.MINUTES);
        runner.step(3, bigDocs(), true);
      } finally {
        clients.forEach(DistcaClient::close);
      }
    }
    assertTrue(meters.get("distca.client.retries").tag("reason", "connection_lost").counter().count() >= 1,
        "the killed server's work was not re-dispatched");
  }

  @Test
  void aPausedServerIsRoutedAround() throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    try (BufferAllocator root = new RootAllocator(); ReferenceAttention reference = new ReferenceAttention()) {
      List<DistcaClient> clients = clients(root, 2, meters, Duration.ofSeconds(3));
      DockerClient docker = DockerClientFactory.instance().client();
      String paused = servers.get(2).getContainerId();
      try {
        StepRunner runner = new StepRunner(clients, reference, root);
        runner.step(1, new int[][] {{700, 129, 37}, {513, 256, 3}}, true);
        // frozen, not dead: its connections stay open and it is still LIVE when the step is planned
        docker.pauseContainerCmd(paused).exec();
        runner.step(2, new int[][] {{700, 129, 37}, {513, 256, 3}}, true);
      } finally {
        docker.unpauseContainerCmd(paused).exec();
        clients.forEach(DistcaClient::close);
      }
    }
    // the client notices the frozen server by its request timeout or, sooner, by missed PONGs on
    // the idle connection (reported as a lost connection); either way the work moves elsewhere
    double noticed = meters.get("distca.client.retries").tag("reason", "timeout").counter().count()
        + meters.get("distca.client.retries").tag("reason", "connection_lost").counter().count();
    assertTrue(noticed >= 1, "no request to the paused server failed over: it got no work in the step");
    assertTrue(meters.get("distca.client.redispatches").counter().count() >= 1);
  }

  private static int[][] bigDocs() {
    return new int[][] {{1500, 700, 129}, {1200, 900, 3}};
  }

  private static void run(StepRunner runner, long step) {
    try {
      runner.step(step, bigDocs(), true);
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }

  private List<DistcaClient> clients(BufferAllocator root, int ranks, SimpleMeterRegistry meters, Duration requestTimeout) {
    List<DistcaClient> clients = new ArrayList<>();
    for (int r = 0; r < ranks; r++) {
      ClientContext cc = new ClientContext();
      cc.dispatcherHost = "127.0.0.1";
      cc.dispatcherPort = dispatcher.getMappedPort(7300);
      cc.job = "containers";
      cc.rank = r;
      cc.worldSize = ranks;
      cc.shardTokens = 256;
      cc.requestTimeout = requestTimeout;
      cc.stepTimeout = Duration.ofMinutes(2);
      cc.maxAttempts = 6;
      cc.meterRegistry = meters;
      clients.add(new DistcaClient(cc, root));
    }
    return clients;
  }

  private void awaitLiveServers(int n) throws Exception {
    long until = System.currentTimeMillis() + 60_000;
    while (true) {
      String metrics = Http.get(dispatcher.getMappedPort(9300), AdminServer.METRICS).body();
      if (ServiceEndpointsTest.value(metrics, "distca_dispatcher_servers", "state=\"live\"") == n) {
        return;
      }
      assertTrue(System.currentTimeMillis() < until, "servers did not register with the dispatcher container");
      Thread.sleep(100);
    }
  }

  /** Waits until the server holds admitted tasks, so a kill hits work in flight. */
  private static void awaitInflight(GenericContainer<?> server) throws Exception {
    long until = System.currentTimeMillis() + 60_000;
    while (System.currentTimeMillis() < until) {
      String metrics = Http.get(server.getMappedPort(9400), AdminServer.METRICS).body();
      if (ServiceEndpointsTest.value(metrics, "distca_server_inflight_tasks", "") > 0) {
        return;
      }
      Thread.sleep(5);
    }
    throw new AssertionError("the server never had work in flight");
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}
