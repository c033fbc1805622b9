//! A real browser (Debian's chromium, driven over WebDriver by chromedriver) against the
//! pages (CONTRACTS.md §4.6). The tests run one at a time (`serial`), each with a
//! chromedriver of its own that is ended by its pid when the test ends. Screenshots go to
//! `target/screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};

/// One browser test at a time: a browser is two cores' worth of work on its own.
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A headless chromium and the chromedriver that drives it.
pub(crate) struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
        let browser_args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,1000",
            "--hide-scrollbars",
        ];
        let caps = json!({"goog:chromeOptions": {"binary": chromium(), "args": browser_args}});
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => return Browser { client, driver },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer: {last:?}");
    }

    /// Ends the session and the driver (by its pid).
    pub(crate) async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub(crate) async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The page's text.
    pub(crate) async fn text(&self) -> String {
        self.js("return document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the page's text contains `needle` (panics after 20 s).
    pub(crate) async fn wait_text(&self, needle: &str) {
        let seen = wait_until(Duration::from_secs(20), || async {
            self.text().await.contains(needle)
        })
        .await;
        assert!(
            seen,
            "the page never said {needle:?}; it says:\n{}",
            self.text().await
        );
    }

    /// Waits until `script` returns `true`.
    pub(crate) async fn wait_js(&self, what: &str, script: &str) {
        let held = wait_until(Duration::from_secs(20), || async {
            self.js(script).await == json!(true)
        })
        .await;
        assert!(
            held,
            "{what} never held; the page says:\n{}",
            self.text().await
        );
    }

    /// Clicks the element `css` selects. The live sections are replaced now and then: an
    /// element replaced between finding and clicking is found again.
    pub(crate) async fn click(&self, css: &str) {
        let mut last = None;
        for _ in 0..10 {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(e) => Err(e),
            };
            match clicked {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not click {css}: {last:?}");
    }

    /// Saves a screenshot of the page as `target/screenshots/{name}.png`.
    pub(crate) async fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        png
    }

    /// The page's cookies, as scripts see them (`HttpOnly` ones are not among them).
    pub(crate) async fn script_cookies(&self) -> String {
        self.js("return document.cookie")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn chromium() -> &'static str {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("/usr/bin/chromium")
}

/// Signs `user` in through a sign-in link (`/#token=…`): outside demo mode the page names
/// the link's account and the visitor confirms (CONTRACTS.md §4.7).
pub(crate) async fn sign_in(b: &Browser, app: &TestApp, user: &str) {
    b.goto(&app.url(&format!("/#token={}", app.token(user))))
        .await;
    b.wait_text(&format!("This link signs in as {user}.")).await;
    b.click("#signin button[type=submit]").await;
    b.wait_js(
        "the user's page",
        "return document.body.dataset.page === 'user'",
    )
    .await;
}

/// Decodes the QR code in a PNG image.
pub(crate) fn decode_qr(png: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let i = (y * w + x) * channels;
        let px = &buf[i..i + channels.min(3)];
        (px.iter().map(|&v| v as u32).sum::<u32>() / px.len() as u32) as u8
    });
    let grids = img.detect_grids();
    assert!(!grids.is_empty(), "no QR code found in the image");
    grids[0].decode().unwrap().1
}
