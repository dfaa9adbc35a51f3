package flinkanomaly.metrics;

import io.prometheus.client.CollectorRegistry;
import io.prometheus.client.exporter.HTTPServer;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.prometheus.AbstractPrometheusReporter;
import org.apache.flink.util.PortRange;

import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.util.Iterator;

/**
 * Flink's Prometheus reporter, serving {@code /metrics} on one chosen interface.
 *
 * <p>Flink's own {@code PrometheusReporter} binds its HTTP server to every interface of the
 * host. This one registers the metrics exactly as Flink's does (it is the same collector
 * code, {@link AbstractPrometheusReporter}) and binds to {@code host} (default
 * {@code 127.0.0.1}), on the first free port of {@code port} (a range such as
 * {@code 9249-9269}, one port per JobManager and TaskManager process).
 *
 * <pre>
 * metrics.reporter.prom.factory.class: flinkanomaly.metrics.LoopbackPrometheusReporterFactory
 * metrics.reporter.prom.host: 127.0.0.1
 * metrics.reporter.prom.port: 9249-9269
 * </pre>
 *
 * <p>It runs as a Flink plugin beside Flink's reporter jar (scripts/cluster.sh builds the
 * plugin folder), so that both share one class loader.
 */
public class LoopbackPrometheusReporter extends AbstractPrometheusReporter {

    private final String host;
    private final PortRange ports;
    private HTTPServer server;

    LoopbackPrometheusReporter(String host, PortRange ports) {
        this.host = host;
        this.ports = ports;
    }

    @Override
    public void open(MetricConfig config) {
        super.open(config);
        CollectorRegistry registry = registry();
        Iterator<Integer> it = ports.getPortsIterator();
        IOException last = null;
        while (it.hasNext()) {
            int port = it.next();
            try {
                server = new HTTPServer(new InetSocketAddress(host, port), registry, true);
                log.info("Started Prometheus reporter on {}:{}", host, server.getPort());
                return;
            } catch (IOException e) {
                last = e;
            }
        }
        throw new RuntimeException(
                "Could not start the Prometheus reporter on " + host + " at any port of " + ports,
                last);
    }

    /** The registry the collectors of {@link AbstractPrometheusReporter} are registered in. */
    private CollectorRegistry registry() {
        try {
            Field f = AbstractPrometheusReporter.class.getDeclaredField("registry");
            f.setAccessible(true);
            return (CollectorRegistry) f.get(this);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(
                    "this Flink's AbstractPrometheusReporter has no 'registry' field", e);
        }
    }

    @Override
    public void close() {
        if (server != null) {
            server.stop();
        }
        super.close();
    }
}
