//! The volunteer's view in a real browser: a real host (libp2p on
//! loopback, wasmtime, sled) with its status page, driven by headless
//! Chromium over the DevTools protocol; `/metrics` read with a Prometheus
//! text parser; `biop2p host --http` and its graceful SIGTERM as a process.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use biop2p::config::NodeConfig;
use biop2p::node::client::JobParams;
use biop2p::proto::{JobResponse, RefuseReason};
use biop2p::workloads;
use serde_json::{Value, json};

use crate::cli::biop2p;
use crate::durability::Killer;
use crate::network::{client, run_job, start_host};

/// The Debian package's browser; `.ci/run` installs it.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium and one DevTools connection to its first page.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    /// Console errors, exceptions and error log entries seen so far.
    errors: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMIUM} (apt-get install chromium): {e}"));
        // Chromium writes its DevTools port here once it listens. Its start
        // takes seconds, and far longer on a loaded 2-core machine (20 s was
        // seen to be too short there), so the bound is generous; a Chromium
        // that exits fails at once.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(120);
        let port: u16 = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(p) = text.lines().next().and_then(|l| l.trim().parse().ok())
            {
                break p;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited before opening DevTools: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open DevTools within 120 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let list = get_json(&format!("http://127.0.0.1:{port}/json/list"));
        let list = list.as_array().expect("a list of targets");
        let url = list
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        for m in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.call(m, json!({}));
        }
        b
    }

    /// One DevTools command; events read meanwhile are checked for errors.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().expect("devtools message");
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            let is_error = match v["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => v["params"]["type"] == "error",
                Some("Log.entryAdded") => v["params"]["entry"]["level"] == "error",
                _ => false,
            };
            if is_error {
                self.errors.push(v);
            }
        }
    }

    /// Evaluates a JavaScript expression in the page; its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy, at most `within`; how long it took.
    fn wait_for(&mut self, expr: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == false || v == "") {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "not within {within:?}: {expr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics`, parsed: (name, labels) → value.
fn scrape(base: &str) -> prometheus_parse::Scrape {
    let text = ureq::get(format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

fn value(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn get_json(url: &str) -> Value {
    let text = ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

fn post(url: &str, token: Option<&str>) -> u16 {
    let mut req = ureq::post(url).config().http_status_as_error(false).build();
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    req.send_empty().unwrap().status().as_u16()
}

fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_tasks_live_and_its_controls_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.network.mdns = false;
    let mut host = start_host(dir.path(), config.clone()).await;
    let events = std::mem::replace(&mut host.events, tokio::sync::mpsc::channel(1).1);
    let http = biop2p::http::start(
        biop2p::http::HttpOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            control: host.control.clone(),
            facts: biop2p::http::HostFacts {
                peer_id: host.peer_id.to_string(),
                addrs: host.addrs.iter().map(ToString::to_string).collect(),
                role: config.biological.primary_role.clone(),
                price_per_mfuel: config.market.price_per_mfuel,
                workers: config.resources.workers(),
                max_fuel: config.resources.max_fuel,
                max_memory_bytes: config.resources.max_memory_bytes,
            },
        },
        events,
    )
    .await
    .unwrap();
    let base = format!("http://{}", http.addr);
    let token = std::fs::read_to_string(dir.path().join("http.token")).unwrap();
    let token = token.trim().to_string();
    assert_eq!(token, http.token);
    let peer = host.peer_id;
    let addr = host.addr("tcp").unwrap();
    let mut c = client().await;
    c.connect(&addr).await.unwrap();

    let page_url = format!("{base}/");
    let peer_s = peer.to_string();
    let browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.call("Page.navigate", json!({"url": page_url}));
        b.wait_for(
            &format!("document.getElementById('peer')?.textContent === '{peer_s}'"),
            Duration::from_secs(60),
        );
        assert_eq!(
            b.eval("document.getElementById('state').textContent"),
            "serving"
        );
        b
    })
    .await
    .unwrap();

    // A task run through the host shows on the page, with its counters,
    // pushed to the open page (no reload: a mark set in this document
    // survives). How fast is a figure of the page, not a test of time: the
    // wait is bounded only so a broken page fails instead of hanging.
    let mut browser = tokio::task::spawn_blocking(move || {
        let mut browser = browser;
        browser.eval("window.__biop2p_mark = 'same document'; true");
        browser
    })
    .await
    .unwrap();
    let before = scrape(&base);
    let (job, r) = run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"to the page",
        &JobParams::default(),
    )
    .await;
    let JobResponse::Done { receipt, .. } = &r else {
        panic!("{r:?}")
    };
    let body = receipt.verify().unwrap();
    let job_hex: String = job.id().iter().map(|b| format!("{b:02x}")).collect();
    let row = format!("#tasks tr[data-job='{job_hex}'][data-state='done']");
    let (mut browser, mark, fuel_text, price_text) = tokio::task::spawn_blocking(move || {
        let took = browser.wait_for(
            &format!("document.querySelector(\"{row}\")"),
            Duration::from_secs(60),
        );
        println!("the task appeared on the open page {took:?} after its result");
        let mark = browser.eval("window.__biop2p_mark");
        let fuel = browser.eval(&format!(
            "document.querySelector(\"{row} .fuel\").textContent"
        ));
        let price = browser.eval(&format!(
            "document.querySelector(\"{row} .price\").textContent"
        ));
        (browser, mark, fuel, price)
    })
    .await
    .unwrap();
    assert_eq!(
        mark, "same document",
        "the page reloaded instead of updating live"
    );
    let digits: String = fuel_text
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(digits, body.fuel_used.to_string());
    assert_eq!(price_text, body.price.to_string());

    // /metrics parses and moved with the task.
    let after = scrape(&base);
    let ok = Some(("outcome", "ok"));
    assert_eq!(
        value(&after, "biop2p_tasks_total", ok) - value(&before, "biop2p_tasks_total", ok),
        1.0
    );
    assert_eq!(
        value(&after, "biop2p_fuel_used_total", None)
            - value(&before, "biop2p_fuel_used_total", None),
        body.fuel_used as f64
    );
    assert_eq!(value(&after, "biop2p_job_latency_seconds_count", None), 1.0);
    assert_eq!(
        value(&after, "biop2p_peers", None),
        1.0,
        "the client is connected"
    );
    // Bytes in and out are the transport's own counts, and the job moved
    // both ways.
    for dir in ["Inbound", "Outbound"] {
        let d = Some(("direction", dir));
        let (b, a) = (
            value(&before, "libp2p_bandwidth_bytes_total", d),
            value(&after, "libp2p_bandwidth_bytes_total", d),
        );
        assert!(a > b, "{dir} bytes did not move with the job: {b} -> {a}");
    }

    // Adverts of another host in the swarm are counted as they arrive.
    assert_eq!(value(&after, "biop2p_adverts_seen_total", None), 0.0);
    let other_dir = tempfile::tempdir().unwrap();
    let mut other_config = NodeConfig::default();
    other_config.network.advert_interval_secs = 1;
    other_config.network.bootstrap = vec![addr.to_string()];
    let other = start_host(other_dir.path(), other_config).await;
    let mut seen = 0.0;
    for _ in 0..150 {
        seen = value(&scrape(&base), "biop2p_adverts_seen_total", None);
        if seen >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen >= 2.0, "a first and a fresher advert: saw {seen}");
    other.shutdown().await;

    // The controls refuse a request without the right token.
    assert_eq!(post(&format!("{base}/api/pause"), None), 401);
    assert_eq!(
        post(&format!("{base}/api/pause"), Some(&"0".repeat(64))),
        401
    );
    let status = get_json(&format!("{base}/api/status"));
    assert_eq!(status["state"], "serving");
    assert_eq!(status["peer_id"], peer.to_string());
    assert_eq!(status["tasks_done"], 1);
    // Its receipt is claimed, not earned, until its submitter accepts it
    // (this raw client never does); the page says so from the ledger.
    let mut status = status;
    for _ in 0..300 {
        if status["ledger_unaccepted"] == body.price {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = get_json(&format!("{base}/api/status"));
    }
    assert_eq!(status["ledger_unaccepted"], body.price, "{status}");
    assert_eq!(status["ledger_earned"], 0);

    // Pause from the page: a job is refused busy; resume restores.
    let t = token.clone();
    let browser = tokio::task::spawn_blocking(move || {
        browser.eval(&format!("document.getElementById('token').value = '{t}'; document.getElementById('pause').click(); true"));
        browser.wait_for("document.getElementById('state').textContent === 'paused'", Duration::from_secs(60));
        browser
    })
    .await
    .unwrap();
    let (_, r) = run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"while paused",
        &JobParams::default(),
    )
    .await;
    match &r {
        JobResponse::Refused { reason, message } => {
            assert_eq!(*reason, RefuseReason::Busy);
            assert!(message.contains("paused"), "{message}");
        }
        other => panic!("expected busy, got {other:?}"),
    }
    let mut browser = tokio::task::spawn_blocking(move || {
        let mut browser = browser;
        browser.wait_for(
            "document.getElementById('refusals').textContent.includes('busy 1')",
            Duration::from_secs(60),
        );
        browser.eval("document.getElementById('resume').click(); true");
        browser.wait_for(
            "document.getElementById('state').textContent === 'serving'",
            Duration::from_secs(60),
        );
        browser
    })
    .await
    .unwrap();
    let (_, r) = run_job(
        &mut c,
        &peer,
        workloads::ECHO,
        b"resumed",
        &JobParams::default(),
    )
    .await;
    assert!(matches!(r, JobResponse::Done { .. }), "{r:?}");
    let scraped = scrape(&base);
    assert_eq!(
        value(&scraped, "biop2p_refusals_total", Some(("reason", "busy"))),
        1.0
    );

    // A screenshot, then no console errors at all.
    let shot = artifact("http-status-page.png");
    let shot2 = shot.clone();
    let browser_errors = tokio::task::spawn_blocking(move || {
        browser.wait_for(
            "document.getElementById('tasks-done').textContent === '2'",
            Duration::from_secs(60),
        );
        let r = browser.call("Page.captureScreenshot", json!({"format": "png"}));
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(&shot2, png).unwrap();
        std::mem::take(&mut browser.errors)
    })
    .await
    .unwrap();
    println!("screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    assert!(
        browser_errors.is_empty(),
        "console errors: {browser_errors:#?}"
    );
    http.shutdown().await;
    host.shutdown().await;
}

/// `biop2p host --http` prints the page's address and token, serves the
/// status, and on SIGTERM stops taking work, lets the running task finish
/// and exits 0 with nothing accepted lost.
#[test]
fn host_serves_http_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = biop2p()
        .args([
            "host",
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
            "--paused",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("BIOP2P_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let pid = child.id();
    let mut guard = Killer(child);
    let mut url = None;
    let mut line = String::new();
    for _ in 0..10 {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "http" {
            let token = std::fs::read_to_string(dir.path().join("http.token")).unwrap();
            assert_eq!(v["token"], token.trim());
            url = v["url"].as_str().map(str::to_string);
            break;
        }
    }
    let url = url.expect("an http event");
    let status = get_json(&format!("{url}api/status"));
    assert_eq!(status["state"], "paused", "--paused");
    assert_eq!(status["tasks_done"], 0);
    assert!(status["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    // What the host learned of its reachability (`unknown` while alone;
    // other tests' hosts on this machine may have told it more).
    let reach = status["reachability"].as_str().unwrap();
    assert!(
        ["unknown", "public", "private ("]
            .iter()
            .any(|w| reach.starts_with(w)),
        "reachability: {reach}"
    );
    let page = ureq::get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(page.contains("<title>biop2p host</title>") && !page.contains("src=\"http"));

    // The terminal's controls: the same API, the token and address found
    // in the data dir.
    let ctl = |args: &[&str]| {
        let out = biop2p()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), text, err)
    };
    let (ok, o, err) = ctl(&["resume", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&o).unwrap()["state"],
        "serving"
    );
    let (ok, o, err) = ctl(&["policy", "--json", "--set", "duty_cycle=0.5"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&o).unwrap()["duty_cycle"],
        0.5
    );
    assert_eq!(get_json(&format!("{url}api/policy"))["duty_cycle"], 0.5);
    let (ok, _, err) = ctl(&["policy", "--set", "duty_cyle=0.5"]);
    assert!(
        !ok && err.contains("duty_cyle") && err.contains("no such policy key"),
        "{err}"
    );
    let (ok, _, err) = ctl(&["policy", "--set", "duty_cycle=7"]);
    assert!(
        !ok && err.contains("400"),
        "an invalid value is the host's refusal: {err}"
    );
    let (ok, o, err) = ctl(&["pause", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&o).unwrap()["state"],
        "paused"
    );

    // SIGTERM: a "stopping" event, then exit 0.
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut saw_stopping = false;
    for l in out.lines() {
        let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
        saw_stopping |= v["event"] == "stopping";
    }
    assert!(saw_stopping);
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
