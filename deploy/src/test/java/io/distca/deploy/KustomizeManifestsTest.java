package io.distca.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.EnvFromSource;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.KubernetesResource;
import io.fabric8.kubernetes.api.model.LabelSelector;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.batch.v1.Job;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyIngressRule;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyPort;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Renders every kustomize overlay (and the example trainer) with {@code kubectl kustomize} and checks
 * the result with the Kubernetes model classes (fabric8): every document parses into its typed
 * model; selectors match the labels of the pods they select; every probe, Service, NetworkPolicy
 * and monitor port exists on the containers; GPU servers ask for a GPU and CPU ones do not; every
 * image is one the project builds; settings the containers expand exist in the ConfigMap.
 */
class KustomizeManifestsTest {
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final ObjectMapper JSON = new ObjectMapper();
  /** The project version; images are tagged with it, without -SNAPSHOT. */
  private static final String PROJECT_VERSION = System.getProperty("distca.version", "0.1.0-SNAPSHOT");
  private static final String VERSION = PROJECT_VERSION.replace("-SNAPSHOT", "");
  /** The images deploy/docker/build-images.sh builds. */
  private static final Set<String> PROJECT_IMAGES = Set.of("distca/distca:" + VERSION, "distca/distca-cuda:" + VERSION);
  private static final Pattern VAR = Pattern.compile("\\$\\(([A-Z_][A-Z0-9_]*)\\)");

  @Test
  void everyOverlayRendersIntoConsistentTypedObjects() throws Exception {
    Path k8s = Environment.repoRoot().resolve("deploy/k8s");
    List<Path> roots = new ArrayList<>();
    try (Stream<Path> overlays = Files.list(k8s.resolve("overlays"))) {
      overlays.filter(Files::isDirectory).sorted().forEach(roots::add);
    }
    assertTrue(roots.size() >= 2, "expected the cpu-dev and gpu overlays, found " + roots);
    roots.add(k8s.resolve("base"));
    roots.add(k8s.resolve("examples/trainer"));
    for (Path root : roots) {
      List<KubernetesResource> objects = render(root);
      String overlay = k8s.relativize(root).toString();
      check(overlay, objects);
    }
  }

  @Test
  void buildScriptBuildsTheImagesTheManifestsUse() throws IOException {
    String script = Files.readString(Environment.repoRoot().resolve("deploy/docker/build-images.sh"));
    assertTrue(script.contains("distca/distca:$version") && script.contains("distca/distca-cuda:$version"), script);
    String pom = Files.readString(Environment.repoRoot().resolve("pom.xml"));
    assertTrue(pom.contains("<version>" + PROJECT_VERSION + "</version>"));
    assertTrue(script.contains("version=\"${1:-" + VERSION + "}\""),
        "build-images.sh's default tag must be the project version " + VERSION);
  }

  private static void check(String overlay, List<KubernetesResource> objects) throws IOException {
    Map<String, PodTemplateSpec> pods = new LinkedHashMap<>();
    Map<String, ConfigMap> configMaps = new LinkedHashMap<>();
    for (KubernetesResource r : objects) {
      HasMetadata m = (HasMetadata) r;
      String where = overlay + ": " + m.getKind() + "/" + m.getMetadata().getName();
      assertNotNull(m.getApiVersion(), where);
      if (!(r instanceof Namespace)) {
        assertEquals("distca", m.getMetadata().getNamespace(), where + " is outside the distca namespace");
      }
      if (r instanceof Deployment d) {
        assertSelects(where, d.getSpec().getSelector(), d.getSpec().getTemplate().getMetadata().getLabels());
        pods.put(where, d.getSpec().getTemplate());
      } else if (r instanceof Job j) {
        pods.put(where, j.getSpec().getTemplate());
      } else if (r instanceof ConfigMap c) {
        configMaps.put(c.getMetadata().getName(), c);
      } else if (r instanceof GenericKubernetesResource g) {
        assertTrue(g.getApiVersion().startsWith("monitoring.coreos.com/"), where + " is of an unknown kind");
      }
    }
    assertFalse(pods.isEmpty(), overlay + " renders no pods");
    for (var e : pods.entrySet()) {
      checkPod(overlay, e.getKey(), e.getValue().getSpec().getContainers(), e.getValue(), configMaps);
    }
    for (KubernetesResource r : objects) {
      String where = overlay + ": " + ((HasMetadata) r).getKind() + "/" + ((HasMetadata) r).getMetadata().getName();
      if (r instanceof Service s) {
        List<PodTemplateSpec> selected = selected(pods, s.getSpec().getSelector());
        assertFalse(selected.isEmpty(), where + " selects no pod");
        for (ServicePort p : s.getSpec().getPorts()) {
          for (PodTemplateSpec pod : selected) {
            assertPortExists(where + " port " + p.getName(), p.getTargetPort(), pod);
          }
        }
      } else if (r instanceof PodDisruptionBudget pdb) {
        assertFalse(selected(pods, pdb.getSpec().getSelector().getMatchLabels()).isEmpty(), where + " selects no pod");
      } else if (r instanceof NetworkPolicy np) {
        List<PodTemplateSpec> selected = selected(pods, np.getSpec().getPodSelector().getMatchLabels());
        assertFalse(selected.isEmpty(), where + " selects no pod");
        for (NetworkPolicyIngressRule rule : np.getSpec().getIngress()) {
          assertFalse(rule.getFrom().isEmpty(), where + ": a rule without 'from' admits everyone");
          for (NetworkPolicyPort port : rule.getPorts()) {
            for (PodTemplateSpec pod : selected) {
              assertPortExists(where, port.getPort(), pod);
            }
          }
        }
      } else if (r instanceof GenericKubernetesResource g) {
        checkMonitor(where, g, objects, pods);
      }
    }
    checkDashboards(overlay, configMaps);
  }

  private static void checkPod(String overlay, String where, List<Container> containers, PodTemplateSpec pod,
      Map<String, ConfigMap> configMaps) {
    String component = pod.getMetadata().getLabels().get("app.kubernetes.io/component");
    for (Container c : containers) {
      String at = where + " container " + c.getName();
      assertTrue(PROJECT_IMAGES.contains(c.getImage()), at + " runs " + c.getImage() + ", not an image the project builds "
          + PROJECT_IMAGES);
      Map<String, String> env = new LinkedHashMap<>();
      for (EnvVar v : c.getEnv()) {
        env.put(v.getName(), "");
      }
      for (EnvFromSource from : c.getEnvFrom()) {
        ConfigMap cm = configMaps.get(from.getConfigMapRef().getName());
        assertNotNull(cm, at + " reads ConfigMap " + from.getConfigMapRef().getName() + ", which is not rendered");
        env.putAll(cm.getData());
      }
      for (String arg : c.getArgs()) {
        Matcher m = VAR.matcher(arg);
        while (m.find()) {
          assertTrue(env.containsKey(m.group(1)), at + " expands $(" + m.group(1) + ") that no env or ConfigMap defines");
        }
      }
      Quantity gpus = c.getResources() == null || c.getResources().getLimits() == null ? null
          : c.getResources().getLimits().get("nvidia.com/gpu");
      boolean cudaImage = c.getImage().startsWith("distca/distca-cuda:");
      if (overlay.contains("gpu") && "attention-server".equals(component)) {
        assertNotNull(gpus, at + ": a GPU attention server needs an nvidia.com/gpu limit");
        assertTrue(Integer.parseInt(gpus.getAmount()) >= 1, at);
        assertTrue(cudaImage, at + " must run the CUDA image");
        assertEquals("cuda", backend(c, configMaps), at);
      } else {
        assertEquals(null, gpus, at + " asks for a GPU");
        assertFalse(cudaImage, at + " runs the CUDA image without a GPU");
      }
      if ("attention-server".equals(component) || "dispatcher".equals(component)) {
        assertProbe(at + " startup", c.getStartupProbe(), "/healthz", pod);
        assertProbe(at + " liveness", c.getLivenessProbe(), "/healthz", pod);
        assertProbe(at + " readiness", c.getReadinessProbe(), "/readyz", pod);
        assertEquals("true", pod.getMetadata().getAnnotations().get("prometheus.io/scrape"), at);
        String scrapePort = pod.getMetadata().getAnnotations().get("prometheus.io/port");
        assertPortExists(at + " scrape annotation", new IntOrString(Integer.parseInt(scrapePort)), pod);
        assertTrue(c.getArgs().contains("--admin-port=" + scrapePort), at + " scrapes a port that is not its admin port");
      }
      if ("attention-server".equals(component)) {
        // a drain may take up to the server's drain timeout (30 s) and must finish before SIGKILL
        assertTrue(pod.getSpec().getTerminationGracePeriodSeconds() > 30, at + ": grace period too short to drain");
      }
    }
  }

  private static String backend(Container c, Map<String, ConfigMap> configMaps) {
    for (EnvFromSource from : c.getEnvFrom()) {
      String b = configMaps.get(from.getConfigMapRef().getName()).getData().get("DISTCA_BACKEND");
      if (b != null) {
        return b;
      }
    }
    return null;
  }

  private static void assertProbe(String where, Probe probe, String path, PodTemplateSpec pod) {
    assertNotNull(probe, where + " probe is missing");
    assertNotNull(probe.getHttpGet(), where + " probe must be an HTTP probe on the admin port");
    assertEquals(path, probe.getHttpGet().getPath(), where);
    ContainerPort port = assertPortExists(where, probe.getHttpGet().getPort(), pod);
    assertEquals("admin", port.getName(), where + " probes a port other than the admin port");
  }

  private static void checkMonitor(String where, GenericKubernetesResource monitor, List<KubernetesResource> objects,
      Map<String, PodTemplateSpec> pods) {
    @SuppressWarnings("unchecked")
    Map<String, Object> spec = (Map<String, Object>) monitor.getAdditionalProperties().get("spec");
    @SuppressWarnings("unchecked")
    Map<String, String> match = (Map<String, String>) ((Map<String, Object>) spec.get("selector")).get("matchLabels");
    if (monitor.getKind().equals("ServiceMonitor")) {
      List<Service> services = new ArrayList<>();
      for (KubernetesResource r : objects) {
        if (r instanceof Service s && labelsMatch(match, s.getMetadata().getLabels())) {
          services.add(s);
        }
      }
      assertFalse(services.isEmpty(), where + " selects no Service");
      for (Object endpoint : (List<?>) spec.get("endpoints")) {
        String port = (String) ((Map<?, ?>) endpoint).get("port");
        for (Service s : services) {
          assertTrue(s.getSpec().getPorts().stream().anyMatch(p -> port.equals(p.getName())),
              where + ": Service " + s.getMetadata().getName() + " has no port " + port);
        }
      }
    } else if (monitor.getKind().equals("PodMonitor")) {
      List<PodTemplateSpec> selected = selected(pods, match);
      assertFalse(selected.isEmpty(), where + " selects no pod");
      for (Object endpoint : (List<?>) spec.get("podMetricsEndpoints")) {
        String port = (String) ((Map<?, ?>) endpoint).get("port");
        for (PodTemplateSpec pod : selected) {
          assertPortExists(where, new IntOrString(port), pod);
        }
      }
    } else {
      fail(where + ": unexpected monitoring kind " + monitor.getKind());
    }
  }

  /** The dashboards ConfigMap carries each dashboard file unchanged. */
  private static void checkDashboards(String overlay, Map<String, ConfigMap> configMaps) throws IOException {
    if (overlay.startsWith("examples")) {
      return;
    }
    ConfigMap dashboards = configMaps.get("distca-grafana-dashboards");
    assertNotNull(dashboards, overlay + " has no dashboards ConfigMap");
    assertEquals("1", dashboards.getMetadata().getLabels().get("grafana_dashboard"));
    try (Stream<Path> files = Files.list(Environment.repoRoot().resolve("deploy/grafana/dashboards"))) {
      for (Path f : files.filter(p -> p.toString().endsWith(".json")).toList()) {
        String data = dashboards.getData().get(f.getFileName().toString());
        assertNotNull(data, overlay + ": " + f.getFileName() + " is not in the dashboards ConfigMap");
        assertEquals(JSON.readTree(f.toFile()), JSON.readTree(data));
      }
    }
  }

  private static void assertSelects(String where, LabelSelector selector, Map<String, String> labels) {
    assertTrue(selector.getMatchExpressions() == null || selector.getMatchExpressions().isEmpty(), where);
    assertTrue(labelsMatch(selector.getMatchLabels(), labels), where + ": selector " + selector.getMatchLabels()
        + " does not match the pod labels " + labels);
  }

  private static boolean labelsMatch(Map<String, String> selector, Map<String, String> labels) {
    return selector != null && !selector.isEmpty() && labels != null && labels.entrySet().containsAll(selector.entrySet());
  }

  private static List<PodTemplateSpec> selected(Map<String, PodTemplateSpec> pods, Map<String, String> selector) {
    List<PodTemplateSpec> out = new ArrayList<>();
    for (PodTemplateSpec p : pods.values()) {
      if (labelsMatch(selector, p.getMetadata().getLabels())) {
        out.add(p);
      }
    }
    return out;
  }

  /** The container port a (named or numbered) port reference resolves to; fails when none does. */
  private static ContainerPort assertPortExists(String where, IntOrString ref, PodTemplateSpec pod) {
    assertNotNull(ref, where + ": no port");
    for (Container c : pod.getSpec().getContainers()) {
      for (ContainerPort p : c.getPorts()) {
        if (ref.getStrVal() != null ? ref.getStrVal().equals(p.getName()) : ref.getIntVal().equals(p.getContainerPort())) {
          return p;
        }
      }
    }
    fail(where + ": port " + (ref.getStrVal() != null ? ref.getStrVal() : ref.getIntVal()) + " is on no container");
    return null;
  }

  /** {@code kubectl kustomize} (or {@code kustomize build}) of one kustomization, parsed into typed objects. */
  static List<KubernetesResource> render(Path kustomization) throws Exception {
    Path kubectl = Environment.executable("kubectl");
    Path kustomize = Environment.executable("kustomize");
    Environment.require(kubectl != null || kustomize != null, "kubectl or kustomize (renders the manifests offline)");
    List<String> cmd = kubectl != null ? List.of(kubectl.toString(), "kustomize", kustomization.toString())
        : List.of(kustomize.toString(), "build", kustomization.toString());
    Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
    byte[] out = p.getInputStream().readAllBytes();
    String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "kustomize timed out");
    assertEquals(0, p.exitValue(), String.join(" ", cmd) + " failed: " + err);
    List<KubernetesResource> objects = new ArrayList<>();
    try (var docs = YAML.readerFor(JsonNode.class).<JsonNode>readValues(out)) {
      while (docs.hasNext()) {
        JsonNode doc = docs.next();
        if (doc == null || doc.isEmpty()) {
          continue;
        }
        KubernetesResource r = JSON.treeToValue(doc, KubernetesResource.class);
        assertTrue(r instanceof HasMetadata, kustomization + ": " + doc.path("kind") + " did not parse into a model object");
        objects.add(r);
      }
    }
    assertFalse(objects.isEmpty(), kustomization + " renders nothing");
    return objects;
  }
}
