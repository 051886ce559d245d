//! Random and malformed input at every route of the real HTTP stack (seeded, so a
//! failure replays): random bytes, random JSON of random depth and size, valid shapes
//! with random field values, huge strings, unicode and NUL bytes; random content types,
//! bad `Authorization` forms and long headers; unknown, malformed and extreme query
//! parameters; valid, unknown and malformed path ids.
//!
//! Every answer must be a status the OpenAPI document lists for the route (or one any
//! route may give: 400, 401, 404, 405, 413, 415) and never a 5xx but 503; a refused
//! command must write no event; Berth must still be healthy at the end.

mod api_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use api_support::{fixture_entry, server_body, TestApp};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Requests sent in all.
const CASES: usize = 1500;

/// Statuses any route may answer, documented once for the whole API.
const ANY_ROUTE: [u16; 6] = [400, 401, 404, 405, 413, 415];

/// Routes whose successful answer never ends.
fn streaming(path: &str) -> bool {
    path.ends_with("/events/stream") || path.ends_with("/events/ws") || path.ends_with("/logs")
}

struct Ids {
    catalog: String,
    server: String,
    bulk: String,
}

#[tokio::test]
async fn random_input_never_breaks_berth() {
    let app = TestApp::spawn().await;
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b347);
    println!("fuzz seed {seed} (set BERTH_FUZZ_SEED to replay another)");
    let mut rng = StdRng::seed_from_u64(seed);

    let catalog = app.register_fixture("fuzz-entry").await.expect(201).id();
    let server = app
        .post("/api/v1/servers", &server_body(&catalog, "fuzz-1", "tok"))
        .await
        .expect(201)
        .id();
    let bulk = app
        .post(
            "/api/v1/bulk",
            &json!({"operation": "enable", "server_ids": [server]}),
        )
        .await
        .expect(202)
        .id();
    let mut ids = Ids {
        catalog,
        server,
        bulk,
    };

    let documented = documented_statuses(&app).await;
    let routes = berth_api::http::routes::all_routes();
    let client = reqwest::Client::builder()
        .build()
        .expect("building the HTTP client");
    let sql = app.sql().await;

    let started = Instant::now();
    let mut seen: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in 0..CASES {
        let (route_method, route_path) = &routes[case % routes.len()];
        let method = if rng.gen_bool(0.08) {
            [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]
            .choose(&mut rng)
            .cloned()
            .unwrap_or(Method::GET)
        } else {
            Method::from_bytes(route_method.as_str().as_bytes()).unwrap_or(Method::GET)
        };
        let mut path = route_path.replace("{id}", &path_id(&mut rng, route_path, &ids));
        if path.contains("{position}") {
            path = path.replace("{position}", &path_position(&mut rng));
        }
        let query = query_string(&mut rng, route_path);
        let url = format!("{}{path}{query}", app.url(""));
        let mut request = client.request(method.clone(), &url);
        let mut body_kind = "none";
        if method != Method::GET || rng.gen_bool(0.05) {
            let (kind, body) = body(&mut rng, route_path, &ids);
            body_kind = kind;
            if let Some(body) = body {
                request = request.body(body);
            }
        }
        request = headers(&mut rng, request, app.token());

        let before = sql
            .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
            .await
            .expect("reading the head")
            .get::<_, i64>(0);
        let limit = if streaming(route_path) {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(20)
        };
        let answer = tokio::time::timeout(limit, async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            response.bytes().await.map(|b| (status, request_id, b))
        })
        .await;
        let key = (route_method.to_string(), route_path.clone());
        let (status, request_id, body) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                failures.push(format!("case {case}: {method} {url}: transport error {e}"));
                continue;
            }
            Err(_) if streaming(route_path) => {
                *seen
                    .entry(key)
                    .or_default()
                    .entry("stream".into())
                    .or_default() += 1;
                continue;
            }
            Err(_) => {
                failures.push(format!(
                    "case {case}: {method} {url}: no answer in {limit:?}"
                ));
                continue;
            }
        };
        *seen
            .entry(key.clone())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;

        let allowed = documented
            .get(&(method.as_str().to_ascii_lowercase(), route_path.clone()))
            .is_some_and(|codes| codes.contains(&status))
            || ANY_ROUTE.contains(&status);
        if !allowed || (status >= 500 && status != 503) {
            failures.push(format!(
                "case {case}: {method} {url} ({body_kind} body) answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        if method == Method::DELETE && (200..300).contains(&status) {
            // Keep something to aim at: a fresh entry and server replace deleted ones.
            let n = case;
            ids.catalog = app
                .register_fixture(&format!("fuzz-entry-{n}"))
                .await
                .expect(201)
                .id();
            ids.server = app
                .post(
                    "/api/v1/servers",
                    &server_body(&ids.catalog, &format!("fuzz-{n}"), "tok"),
                )
                .await
                .expect(201)
                .id();
        }
        if (400..500).contains(&status) && method != Method::GET {
            let after = sql
                .query_one("SELECT coalesce(max(global_position), 0) FROM events", &[])
                .await
                .expect("reading the head")
                .get::<_, i64>(0);
            if after != before {
                // Something else (the bulk driver) may write meanwhile: only events of
                // this very request count.
                let written: i64 = sql
                    .query_one(
                        "SELECT count(*) FROM events WHERE global_position > $1 \
                         AND metadata->>'request_id' = $2",
                        &[&before, &request_id.clone().unwrap_or_default()],
                    )
                    .await
                    .expect("reading what the request wrote")
                    .get(0);
                if written > 0 || request_id.is_none() {
                    failures.push(format!(
                        "case {case}: {method} {url} answered {status} but wrote {written} events"
                    ));
                }
            }
        }
    }

    let mut summary = String::new();
    for ((method, path), statuses) in &seen {
        let counts: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        summary.push_str(&format!("  {method:6} {path}: {}\n", counts.join(" ")));
    }
    println!(
        "fuzzed {CASES} requests over {} routes in {:.1?}:\n{summary}",
        routes.len(),
        started.elapsed()
    );

    app.get("/healthz").await.expect(200);
    app.get("/api/v1/catalog").await.expect(200);
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `(method, path) → statuses` from the served OpenAPI document.
async fn documented_statuses(app: &TestApp) -> BTreeMap<(String, String), BTreeSet<u16>> {
    let doc = app.get("/api/v1/openapi.json").await.expect(200).json();
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let codes = operation["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(code, _)| code.parse().ok())
                .collect();
            out.insert((method.clone(), path.clone()), codes);
        }
    }
    out
}

fn path_id(rng: &mut StdRng, path: &str, ids: &Ids) -> String {
    let known = if path.contains("/catalog/") {
        &ids.catalog
    } else if path.contains("/bulk/") {
        &ids.bulk
    } else {
        &ids.server
    };
    match rng.gen_range(0..8) {
        0..=2 => known.clone(),
        3 => uuid::Uuid::new_v4().to_string(),
        4 => "not-a-uuid".into(),
        5 => "%00%FF%E5%90%8D".into(),
        6 => "a".repeat(rng.gen_range(37..2000)),
        _ => format!("{known}x"),
    }
}

/// An event position: existing, missing, out of range or not a number.
fn path_position(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0..=2 => rng.gen_range(1..40).to_string(),
        3 => rng.gen_range(40..1_000_000).to_string(),
        4 => ["0", "-1", "9223372036854775807"][rng.gen_range(0..3)].into(),
        5 => "99999999999999999999999".into(),
        6 => "%00%FF".into(),
        _ => "stream2".into(),
    }
}

const PARAMS: [&str; 25] = [
    "q",
    "at",
    "page",
    "page_size",
    "limit",
    "after",
    "kind",
    "transport",
    "state",
    "catalog_id",
    "server_id",
    "actor",
    "action",
    "from",
    "to",
    "correlation_id",
    "format",
    "tail",
    "follow",
    "aggregate_type",
    "aggregate_id",
    "event_type",
    "bogus",
    "page[]",
    "",
];

fn query_value(rng: &mut StdRng) -> String {
    let values = [
        "",
        "1",
        "0",
        "-1",
        "500",
        "501",
        "-9223372036854775808",
        "99999999999999999999999",
        "1e3",
        "NaN",
        "abc",
        "not-a-uuid",
        "2026-01-01T00:00:00Z",
        "2026-13-45T99:99:99Z",
        "yesterday",
        "true",
        "false",
        "csv",
        "jsonl",
        "xml",
        "predefined",
        "custom",
        "stdio",
        "running",
        "server",
        "user:admin",
        "名前🚀",
        "\u{0}nul",
        "$(rm -rf /)",
    ];
    match rng.gen_range(0..12) {
        0 => uuid::Uuid::new_v4().to_string(),
        1 => "x".repeat(rng.gen_range(200..400)),
        _ => values.choose(rng).copied().unwrap_or("").to_string(),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query_string(rng: &mut StdRng, path: &str) -> String {
    let mut pairs: Vec<String> = Vec::new();
    // Streams with valid parameters never end: give them something to refuse, mostly.
    if streaming(path) && rng.gen_bool(0.9) {
        pairs.push("bogus=1".into());
    }
    let count = if rng.gen_bool(0.5) {
        0
    } else {
        rng.gen_range(1..4)
    };
    for _ in 0..count {
        let name = PARAMS.choose(rng).copied().unwrap_or("q");
        pairs.push(format!("{}={}", encode(name), encode(&query_value(rng))));
    }
    match rng.gen_range(0..20) {
        // A consistency wait that is reached at once, or malformed.
        0 => pairs.push(format!(
            "min_position={}",
            ["0", "1", "-5", "x"][rng.gen_range(0..4)]
        )),
        // Raw garbage the parser must survive.
        1 => pairs.push("%ZZ&&==&page=%".into()),
        _ => {}
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

fn random_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0 => String::new(),
        1 => "名前🚀\u{202e}é".repeat(rng.gen_range(1..50)),
        2 => "a\u{0}b".into(),
        3 => "x".repeat(rng.gen_range(60..20_000)),
        4 => "$(touch /tmp/pwned); `id` | cat /etc/passwd".into(),
        5 => "../../etc/passwd".into(),
        _ => (0..rng.gen_range(1..20))
            .map(|_| rng.gen_range(b'a'..=b'z') as char)
            .collect(),
    }
}

fn random_json(rng: &mut StdRng, depth: usize) -> Value {
    let leaf = depth == 0 || rng.gen_bool(0.4);
    match rng.gen_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => match rng.gen_range(0..4) {
            0 => json!(rng.gen::<i64>()),
            1 => json!(rng.gen::<f64>() * 1e300),
            2 => json!(u64::MAX),
            _ => json!(rng.gen_range(-3..3)),
        },
        3 | 4 => json!(random_string(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..6))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.gen_range(0..6))
                .map(|_| (random_string(rng), random_json(rng, depth - 1)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn template(path: &str, ids: &Ids) -> Value {
    if path.ends_with("/catalog") || path.ends_with("/catalog/{id}") {
        fixture_entry("fuzzed")
    } else if path.ends_with("/servers") {
        server_body(&ids.catalog, "fuzzed", "tok")
    } else if path.ends_with("/servers/{id}") {
        json!({"config": {"API_URL": "https://x.test"}, "secrets": {"API_TOKEN": "t"},
               "restart_policy": {"type": "on_failure", "max_retries": 3}})
    } else if path.ends_with("/bulk") {
        json!({"operation": "stop", "server_ids": [ids.server]})
    } else {
        json!({})
    }
}

/// Replaces one value somewhere in `value` (or adds or removes a key).
fn mutate(rng: &mut StdRng, value: &mut Value) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.gen_bool(0.7) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.gen_range(0..keys.len())].clone();
            match rng.gen_range(0..5) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(random_string(rng), random_json(rng, 2));
                }
                2 | 3 => {
                    if let Some(inner) = map.get_mut(&key) {
                        mutate(rng, inner);
                    }
                }
                _ => {
                    map.insert(key, random_json(rng, 3));
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.gen_bool(0.7) => {
            let i = rng.gen_range(0..items.len());
            mutate(rng, &mut items[i]);
        }
        other => *other = random_json(rng, 3),
    }
}

fn body(rng: &mut StdRng, path: &str, ids: &Ids) -> (&'static str, Option<Vec<u8>>) {
    match rng.gen_range(0..20) {
        0 => ("no", None),
        1 => (
            "random-bytes",
            Some((0..rng.gen_range(0..2000)).map(|_| rng.gen()).collect()),
        ),
        2 | 3 => {
            let depth = rng.gen_range(0..8);
            let doc = random_json(rng, depth);
            ("random-json", Some(doc.to_string().into_bytes()))
        }
        4 => {
            let depth = rng.gen_range(20..5000);
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            ("deep-array", Some(text.into_bytes()))
        }
        5 => {
            let mut doc = template(path, ids);
            doc["name"] = json!("x".repeat(MIB + 10));
            ("huge", Some(doc.to_string().into_bytes()))
        }
        6 => {
            let map: Map<String, Value> = (0..rng.gen_range(101..400))
                .map(|i| (format!("K{i}"), json!("v")))
                .collect();
            let mut doc = template(path, ids);
            doc["config"] = Value::Object(map.clone());
            doc["secrets"] = Value::Object(map);
            ("many-keys", Some(doc.to_string().into_bytes()))
        }
        7 => {
            let text = template(path, ids).to_string();
            let cut = rng.gen_range(0..text.len().max(1));
            ("truncated", Some(text.as_bytes()[..cut].to_vec()))
        }
        8 => ("valid", Some(template(path, ids).to_string().into_bytes())),
        _ => {
            let mut doc = template(path, ids);
            for _ in 0..rng.gen_range(1..4) {
                mutate(rng, &mut doc);
            }
            ("mutated", Some(doc.to_string().into_bytes()))
        }
    }
}

const MIB: usize = 1024 * 1024;

fn headers(
    rng: &mut StdRng,
    mut request: reqwest::RequestBuilder,
    token: &str,
) -> reqwest::RequestBuilder {
    let content_type = [
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/merge-patch+json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("garbage"),
        Some(""),
        None,
    ];
    let content_type = if rng.gen_bool(0.6) {
        Some("application/json")
    } else {
        content_type.choose(rng).copied().flatten()
    };
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let long = "A".repeat(rng.gen_range(100..4000));
    let authorization = match rng.gen_range(0..40) {
        0 => None,
        1 => Some("Basic dXNlcjpwYXNz".to_string()),
        2 => Some("Bearer".to_string()),
        3 => Some("Bearer wrong-token".to_string()),
        4 => Some(format!("Bearer {long}")),
        5 => Some(format!("bearer   {token}  ")),
        6 => Some(token.to_string()),
        _ => Some(format!("Bearer {token}")),
    };
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    match rng.gen_range(0..8) {
        0 => request.header("x-fuzz", long),
        1 => request.header("idempotency-key", random_visible(rng)),
        2 => request.header("last-event-id", random_visible(rng)),
        3 => request.header("accept", "text/event-stream"),
        4 => request.header("x-request-id", random_visible(rng)),
        _ => request,
    }
}

fn random_visible(rng: &mut StdRng) -> String {
    (0..rng.gen_range(0..400))
        .map(|_| rng.gen_range(b' '..=b'~') as char)
        .collect()
}
