package io.distca.deploy;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/** Plain GETs against loopback services (admin ports, Prometheus's HTTP API). */
final class Http {
  private static final HttpClient CLIENT = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private Http() {}

  record Response(int status, String body) {}

  static Response get(String url) throws IOException, InterruptedException {
    HttpResponse<String> r = CLIENT.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30)).build(),
        HttpResponse.BodyHandlers.ofString());
    return new Response(r.statusCode(), r.body());
  }

  static Response get(int port, String path) throws IOException, InterruptedException {
    return get("http://127.0.0.1:" + port + path);
  }
}
