//! A small W3C WebDriver client for browser tests: headless Debian Chromium
//! driven by `chromedriver` over HTTP (`reqwest` + `serde_json`, no
//! WebDriver crate), so a test sees what a real browser does with the review
//! service's pages — CSP, audio decoding, focus order — which a plain HTTP
//! client cannot.
//!
//! [`Browser::start`] runs `chromedriver --port=0` (it picks a free port and
//! prints it: no race with other tests over a port chosen here), waits for
//! `/status` to say ready and opens one session. Every command panics with
//! the WebDriver error and message when it fails, naming the command, so a
//! failing test says what the browser refused. Dropping the [`Browser`]
//! deletes the session (Chromium exits with it) and kills `chromedriver`.
//!
//! Paths: `OPPTAK_CHROMIUM` (default `/usr/bin/chromium`) and
//! `OPPTAK_CHROMEDRIVER` (default `/usr/bin/chromedriver`, else `PATH`).

use serde_json::{json, Value};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The W3C key of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver key codes (W3C "keyboard actions" table) for
/// [`Browser::press_keys`] and [`Browser::send_keys`].
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const SHIFT: &str = "\u{E008}";
    pub const SPACE: &str = "\u{E00D}";
    pub const ARROW_LEFT: &str = "\u{E012}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_RIGHT: &str = "\u{E014}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// The two programs a browser test needs.
#[derive(Clone, Debug)]
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Tools {
    /// Finds Chromium and chromedriver; the error says which is missing
    /// and how to get it.
    pub fn find() -> Result<Self, String> {
        let chromium = std::env::var_os("OPPTAK_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        let chromedriver = match std::env::var_os("OPPTAK_CHROMEDRIVER") {
            Some(p) => PathBuf::from(p),
            None => on_path("chromedriver").unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver")),
        };
        let mut missing = Vec::new();
        for p in [&chromium, &chromedriver] {
            if !p.is_file() {
                missing.push(p.display().to_string());
            }
        }
        if missing.is_empty() {
            Ok(Self { chromium, chromedriver })
        } else {
            Err(format!(
                "{} not found (Debian packages chromium and chromium-driver: deploy/local/services.sh install; \
                 or set OPPTAK_CHROMIUM / OPPTAK_CHROMEDRIVER)",
                missing.join(" and ")
            ))
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// An element of the current page, as the WebDriver session names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element(pub String);

impl Element {
    /// The element as a script argument (arrives as a DOM node).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// One entry of the browser's console log (`goog:loggingPrefs`).
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    /// `console-api`, `network`, `security`, `javascript`, …
    pub source: String,
    pub message: String,
}

/// A cookie as the browser keeps it (W3C cookie serialization).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`.
    pub same_site: String,
}

/// A WebDriver error response.
#[derive(Clone, Debug)]
pub struct WdError {
    /// The W3C error code (`no such element`, `javascript error`, …).
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    /// `127.0.0.1:<port>` of chromedriver.
    addr: String,
    session: String,
    http: reqwest::Client,
    /// chromedriver's stdout and stderr, for failure messages.
    output: Arc<Mutex<String>>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1280×900,
    /// autoplay allowed, console log collected at every level) asking for
    /// Norwegian pages, as the bank's browsers do.
    pub async fn start(tools: &Tools) -> Self {
        Self::start_in(tools, "nb-NO,nb").await
    }

    /// Like [`Browser::start`], with `Accept-Language: accept_languages`.
    pub async fn start_in(tools: &Tools, accept_languages: &str) -> Self {
        let mut driver = Command::new(&tools.chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tools.chromedriver.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
        let stdout = driver.stdout.take().expect("piped stdout");
        let stderr = driver.stderr.take().expect("piped stderr");
        {
            // Keep reading so chromedriver never blocks on a full pipe.
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(p) = line
                        .split("started successfully on port ")
                        .nth(1)
                        .and_then(|r| r.trim_end_matches('.').trim().parse().ok())
                    {
                        let _ = port_tx.send(p);
                    }
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&format!("{line}\n"));
                }
            });
        }
        let port = match port_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "chromedriver did not report its port within 30 s; its output:\n{}",
                    output.lock().unwrap()
                );
            }
        };
        let addr = format!("127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut b = Self {
            driver,
            addr,
            session: String::new(),
            http,
            output,
        };
        let status_url = format!("http://{}/status", b.addr);
        let http = b.http.clone();
        wait_until("chromedriver /status ready", Duration::from_secs(30), || {
            let (http, url) = (http.clone(), status_url.clone());
            async move {
                let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": {
                        "binary": tools.chromium.display().to_string(),
                        "prefs": { "intl.accept_languages": accept_languages },
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--autoplay-policy=no-user-gesture-required",
                            "--window-size=1280,900",
                            format!("--lang={}", accept_languages.split(',').next().unwrap_or("en")),
                        ],
                    },
                }
            }
        });
        let v = match b.request(reqwest::Method::POST, "/session", Some(caps)).await {
            Ok(v) => v,
            Err(e) => panic!(
                "creating a Chromium session ({}): {e}\nchromedriver output:\n{}",
                tools.chromium.display(),
                b.output.lock().unwrap()
            ),
        };
        b.session = v["sessionId"].as_str().expect("sessionId").to_owned();
        b.cmd(
            reqwest::Method::POST,
            "/timeouts",
            json!({ "implicit": 0, "pageLoad": 60_000, "script": 60_000 }),
        )
        .await;
        b
    }

    /// Sends one command; the `value` of the answer or the WebDriver error.
    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("http://{}{path}", self.addr);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| WdError {
            error: "transport".into(),
            message: format!("{url}: {e}"),
        })?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| WdError {
            error: "transport".into(),
            message: format!("{url}: reading the answer: {e}"),
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// A session command (`path` below `/session/{id}`) that may fail.
    pub async fn try_cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, WdError> {
        let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE).then_some(body);
        self.request(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// A session command that must succeed.
    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let what = format!("{method} {path}");
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {what}: {e}"))
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        let v = self.cmd(reqwest::Method::GET, "/url", Value::Null).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn title(&self) -> String {
        let v = self.cmd(reqwest::Method::GET, "/title", Value::Null).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The first element matching `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!("no element matches {css:?} on {}", self.current_url().await),
        }
    }

    /// The first element matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": css });
        match self.try_cmd(reqwest::Method::POST, "/element", body).await {
            Ok(v) => Some(element_of(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("webdriver find {css:?}: {e}"),
        }
    }

    /// Every element matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let v = self.cmd(reqwest::Method::POST, "/elements", body).await;
        v.as_array()
            .map(|a| a.iter().map(element_of).collect())
            .unwrap_or_default()
    }

    /// The element that has the keyboard focus.
    pub async fn active_element(&self) -> Element {
        element_of(&self.cmd(reqwest::Method::GET, "/element/active", Value::Null).await)
    }

    pub async fn click(&self, e: &Element) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Focuses `e` and types `text` into it (see [`keys`] for special keys).
    pub async fn send_keys(&self, e: &Element, text: &str) {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.cmd(reqwest::Method::POST, &format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    /// The element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        let v = self
            .cmd(reqwest::Method::GET, &format!("/element/{}/text", e.0), Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The element's attribute as written in the markup.
    pub async fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        let v = self
            .cmd(
                reqwest::Method::GET,
                &format!("/element/{}/attribute/{name}", e.0),
                Value::Null,
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// The element's DOM property (a textarea's current `value`, …).
    pub async fn property(&self, e: &Element, name: &str) -> Value {
        self.cmd(
            reqwest::Method::GET,
            &format!("/element/{}/property/{name}", e.0),
            Value::Null,
        )
        .await
    }

    /// Runs `js` as a function body with `args` (`arguments[i]`); its
    /// return value. Scripts run through the driver, not the page, so the
    /// page's CSP does not stop them (it still governs what they load).
    pub async fn execute(&self, js: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": js, "args": args }),
        )
        .await
    }

    /// Like [`Browser::execute`], for a script that finishes by calling its
    /// last argument (a callback) with the result, within the script timeout
    /// (60 s).
    pub async fn execute_async(&self, js: &str, args: Vec<Value>) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            json!({ "script": js, "args": args }),
        )
        .await
    }

    /// The accessibility violations axe-core (Deque, npm `axe-core`, the file
    /// `deploy/local/services.sh` installs: `OPPTAK_TEST_AXE`) finds on the
    /// current page, WCAG 2.1 A and AA rules plus best practices, one line per
    /// rule with up to three of its elements; empty when the page is clean.
    /// Without the file: skipped with a note, or a panic under
    /// `OPPTAK_REQUIRE_SERVICES=1`.
    pub async fn axe(&self) -> Vec<String> {
        let Some(path) = std::env::var_os("OPPTAK_TEST_AXE") else {
            assert!(
                std::env::var_os("OPPTAK_REQUIRE_SERVICES").is_none(),
                "OPPTAK_TEST_AXE is not set (deploy/local/services.sh env sets it)"
            );
            eprintln!("skipping the accessibility check: OPPTAK_TEST_AXE is not set");
            return Vec::new();
        };
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"));
        self.execute(&format!("{source}\nreturn typeof axe;"), vec![]).await;
        let found = self
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' — '
                       + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await;
        serde_json::from_value(found.clone()).unwrap_or_else(|_| vec![format!("unexpected axe result: {found}")])
    }

    /// Presses `keys` on whatever has the focus, as a keyboard user would
    /// (W3C actions: key down, key up, per character).
    pub async fn press_keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({ "type": "keyDown", "value": k }),
                    json!({ "type": "keyUp", "value": k }),
                ]
            })
            .collect();
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
        self.cmd(reqwest::Method::DELETE, "/actions", Value::Null).await;
    }

    /// The HTTP status of the current page's document (Navigation Timing
    /// `responseStatus`, the last response after redirects): WebDriver
    /// itself does not say, and an error page looks like any other page.
    pub async fn status(&self) -> u16 {
        let v = self
            .execute(
                "const n = performance.getEntriesByType('navigation')[0];
                 return n ? n.responseStatus : null;",
                vec![],
            )
            .await;
        match v.as_u64().and_then(|s| u16::try_from(s).ok()) {
            Some(s) => s,
            None => panic!("no navigation status for {}: {v}", self.current_url().await),
        }
    }

    /// The cookies the browser sends to the current page, `HttpOnly` ones
    /// included (which no page script can read), so a test can make the
    /// browser's requests itself — a download, say, which a headless
    /// browser saves without showing.
    pub async fn cookies(&self) -> Vec<Cookie> {
        let v = self.cmd(reqwest::Method::GET, "/cookie", Value::Null).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| Cookie {
                        name: c["name"].as_str().unwrap_or_default().to_owned(),
                        value: c["value"].as_str().unwrap_or_default().to_owned(),
                        path: c["path"].as_str().unwrap_or_default().to_owned(),
                        http_only: c["httpOnly"].as_bool().unwrap_or(false),
                        secure: c["secure"].as_bool().unwrap_or(false),
                        same_site: c["sameSite"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// [`Browser::cookies`] as a `Cookie` request header.
    pub async fn cookie_header(&self) -> String {
        self.cookies()
            .await
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The text of an open `alert`/`confirm` dialog, if one is open.
    pub async fn alert_text(&self) -> Option<String> {
        match self.try_cmd(reqwest::Method::GET, "/alert/text", Value::Null).await {
            Ok(v) => Some(v.as_str().unwrap_or_default().to_owned()),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("webdriver alert text: {e}"),
        }
    }

    /// The browser console entries since the last call (the driver hands
    /// each entry out once): console messages, failed loads, CSP refusals.
    pub async fn browser_log(&self) -> Vec<LogEntry> {
        let body = json!({ "type": "browser" });
        let v = match self.try_cmd(reqwest::Method::POST, "/se/log", body.clone()).await {
            Ok(v) => v,
            // Older chromedrivers know only the legacy JSON-wire path.
            Err(e) if e.error == "unknown command" => self.cmd(reqwest::Method::POST, "/log", body).await,
            Err(e) => panic!("webdriver browser log: {e}"),
        };
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| LogEntry {
                        level: e["level"].as_str().unwrap_or_default().to_owned(),
                        source: e["source"].as_str().unwrap_or_default().to_owned(),
                        message: e["message"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes the visible part of the page (the window) to `path` as PNG.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", Value::Null).await;
        write_png(path, v.as_str().unwrap_or_default());
    }

    /// Writes the whole page, below the fold included, to `path` as PNG
    /// (Chrome DevTools `Page.captureScreenshot` through the driver: the
    /// W3C screenshot stops at the window).
    pub async fn screenshot_full(&self, path: &Path) {
        let size = self
            .execute(
                "const d = document.documentElement; return [d.scrollWidth, d.scrollHeight];",
                vec![],
            )
            .await;
        let (w, h) = (size[0].as_f64().unwrap_or(1280.0), size[1].as_f64().unwrap_or(900.0));
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/goog/cdp/execute",
                json!({
                    "cmd": "Page.captureScreenshot",
                    "params": {
                        "format": "png",
                        "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 },
                    }
                }),
            )
            .await;
        write_png(path, v["data"].as_str().unwrap_or_default());
    }

    /// Polls `condition` until it yields a value, up to `timeout`.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        wait_until(what, timeout, condition).await
    }

    /// Deletes the session (Chromium exits) and stops chromedriver.
    pub async fn quit(self) {
        drop(self);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Synchronous on purpose: drop may run outside the runtime or
            // during a panic, and a left-over Chromium outlives chromedriver.
            if let Err(e) = delete_session(&self.addr, &self.session) {
                eprintln!("webdriver: deleting session {}: {e}", self.session);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/{id}` over a plain socket (HTTP/1.1, connection close).
fn delete_session(addr: &str, session: &str) -> std::io::Result<()> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is enough (chromedriver answers once the browser
    // is closed, and may keep the connection open after it).
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(String::from_utf8_lossy(&answer).into_owned()))
    }
}

fn element_of(v: &Value) -> Element {
    Element(
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {v}"))
            .to_owned(),
    )
}

fn write_png(path: &Path, b64: &str) {
    let png = base64_decode(b64).unwrap_or_else(|e| panic!("screenshot for {}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "screenshot for {} is not a PNG",
        path.display()
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(format!("invalid base64 byte {c:#04x}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if out.is_empty() {
        return Err("empty".into());
    }
    Ok(out)
}

/// Polls `condition` every 50 ms until it yields a value; panics naming
/// `what` after `timeout`. Waits by condition, so a slow machine only
/// takes longer.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = condition().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
