//! Prometheus metrics: HTTP traffic recorded by a middleware, and the store's state
//! (projection lag and position, head position, oldest open transaction) read from the
//! database at each scrape.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use berth_infrastructure::{feed, StoreError};
use deadpool_postgres::Pool;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of what [`Metrics::render`] produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    server_id: String,
    tool: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    server_id: String,
    tool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    server_id: String,
    state: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric Berth exports, in one registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    projection_lag: Family<ProjectionLabels, FloatGauge>,
    projection_position: Family<ProjectionLabels, Gauge>,
    head_position: Gauge,
    oldest_transaction_age: FloatGauge,
    gateway_calls: Family<CallLabels, Counter>,
    gateway_call_durations: Family<ToolLabels, Histogram, fn() -> Histogram>,
    gateway_circuits: Family<CircuitLabels, Gauge>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered under the `berth_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            requests.clone(),
        );
        let durations: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer HTTP requests, by method and route pattern",
            Unit::Seconds,
            durations.clone(),
        );
        let projection_lag = Family::<ProjectionLabels, FloatGauge>::default();
        registry.register_with_unit(
            "projection_lag",
            "How far each read model is behind the event store, in time",
            Unit::Seconds,
            projection_lag.clone(),
        );
        let projection_position = Family::<ProjectionLabels, Gauge>::default();
        registry.register(
            "projection_position",
            "Global position of the last event each read model applied",
            projection_position.clone(),
        );
        let head_position = Gauge::default();
        registry.register(
            "event_store_head_position",
            "Highest global position in the event store",
            head_position.clone(),
        );
        let oldest_transaction_age = FloatGauge::default();
        registry.register_with_unit(
            "oldest_open_transaction_age",
            "Age of the oldest open transaction holding an xid or snapshot; event subscribers wait behind it",
            Unit::Seconds,
            oldest_transaction_age.clone(),
        );
        let gateway_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "gateway_tool_calls",
            "Tool calls through the MCP gateway, by server, tool and outcome (ok, tool_error, failed)",
            gateway_calls.clone(),
        );
        let gateway_call_durations: Family<ToolLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "gateway_tool_call_duration",
            "Time tool calls through the MCP gateway took, by server and tool",
            Unit::Seconds,
            gateway_call_durations.clone(),
        );
        let gateway_circuits = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "gateway_circuit",
            "Servers whose gateway circuit is not closed (1 for `open` or `half_open`)",
            gateway_circuits.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            projection_lag,
            projection_position,
            head_position,
            oldest_transaction_age,
            gateway_calls,
            gateway_call_durations,
            gateway_circuits,
        }
    }

    /// Records one tool call through the gateway.
    pub fn observe_tool_call(&self, server_id: &str, tool: &str, outcome: &str, seconds: f64) {
        self.gateway_calls
            .get_or_create(&CallLabels {
                server_id: server_id.to_owned(),
                tool: tool.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.gateway_call_durations
            .get_or_create(&ToolLabels {
                server_id: server_id.to_owned(),
                tool: tool.to_owned(),
            })
            .observe(seconds);
    }

    /// Shows exactly `tripped` (server id, circuit state) as the servers whose circuit
    /// is not closed.
    pub fn set_circuits(&self, tripped: impl IntoIterator<Item = (String, &'static str)>) {
        self.gateway_circuits.clear();
        for (server_id, state) in tripped {
            self.gateway_circuits
                .get_or_create(&CircuitLabels {
                    server_id,
                    state: state.to_owned(),
                })
                .set(1);
        }
    }

    /// Records one answered request.
    pub fn observe_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method: method.clone(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                method,
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// Reads the store's gauges from the database.
    pub async fn refresh_store_gauges(&self, pool: &Pool) -> Result<(), StoreError> {
        for status in berth_projections::status(pool).await? {
            let labels = ProjectionLabels {
                projection: status.name.to_string(),
            };
            self.projection_lag
                .get_or_create(&labels)
                .set(status.lag_seconds);
            self.projection_position
                .get_or_create(&labels)
                .set(status.position);
        }
        let client = pool.get().await?;
        self.head_position.set(feed::head_position(&client).await?);
        self.oldest_transaction_age
            .set(feed::oldest_open_transaction_age(&client).await?);
        Ok(())
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Only the standard methods become label values, so odd clients cannot grow the
/// number of series without bound.
fn method_label(method: &Method) -> String {
    const KNOWN: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    if KNOWN.contains(method) {
        method.as_str().to_string()
    } else {
        "OTHER".to_string()
    }
}

/// Middleware: counts and times every request by its route pattern (`/api/v1/servers/{id}`),
/// never by its raw path, so ids do not become label values.
pub async fn track_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let metrics = req
        .app_data::<actix_web::web::Data<Metrics>>()
        .map(|m| m.clone().into_inner());
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.call(req).await?.map_into_boxed_body();
    if let Some(metrics) = metrics {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        metrics.observe_request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_their_berth_names() {
        let metrics = Metrics::new();
        metrics.observe_request(&Method::GET, "/api/v1/servers/{id}", 200, 0.002);
        metrics.head_position.set(7);
        metrics.observe_tool_call("s1", "echo", "ok", 0.003);
        metrics.set_circuits([("s2".to_owned(), "open")]);
        let text = metrics.render().unwrap_or_default();
        for name in [
            "berth_http_requests_total{method=\"GET\",route=\"/api/v1/servers/{id}\",status=\"200\"} 1",
            "berth_http_request_duration_seconds_bucket",
            "berth_event_store_head_position 7",
            "berth_oldest_open_transaction_age_seconds",
            "# TYPE berth_projection_lag_seconds gauge",
            "# TYPE berth_projection_position gauge",
            "berth_gateway_tool_calls_total{server_id=\"s1\",tool=\"echo\",outcome=\"ok\"} 1",
            "berth_gateway_tool_call_duration_seconds_bucket",
            "berth_gateway_circuit{server_id=\"s2\",state=\"open\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let odd = Method::from_bytes(b"BREW").unwrap_or(Method::GET);
        assert_eq!(method_label(&odd), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
