//! The status page as an operator sees it: a live federation serves it, headless Chromium
//! renders it, and the rendered DOM shows the chosen path (global → farm → server). A
//! screenshot is kept in the test's temporary directory (set `FEDLB_KEEP_SCREENSHOT=DIR`
//! to copy it out and look at it).
//!
//! Needs Chromium (`apt-get install -y chromium`). Without it the test fails under CI (env
//! `CI` set) and is skipped, loudly, elsewhere.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use support::chromium::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_chosen_path() {
    let Some(bin) = chromium_or_skip("chromium_renders_the_chosen_path") else {
        return;
    };

    const B: u8 = 206;
    let mut w = World::near_and_far(B).await;
    // n1 fails from the start: the chosen path is global → near → n2
    w.backend("n1").set_failing(true);
    w.start_global();
    w.start_farm("near");
    w.start_farm("far");
    let global_status = SocketAddr::new(ip(B, 1), 7480);
    let near_status = SocketAddr::new(ip(B, 2), 7481);
    let dns = SocketAddr::new(ip(B, 1), 5353);
    wait_answers(global_status, dns, &[ip(B, 12)]).await;
    wait_for("the global node to see farm far's servers", || async {
        let v = status(global_status).await?;
        if local_chosen(&v, "far") == ["f1"] && local_chosen(&v, "near") == ["n2"] {
            Ok(())
        } else {
            Err(describe(&v))
        }
    })
    .await;

    let profile = w.dir.path().join("chromium-profile");
    let dom = run_chromium(
        &bin,
        &profile,
        &format!("http://{global_status}/"),
        &["--dump-dom"],
    )
    .await;
    for want in [
        r#"<li class="chosen up" data-id="near">"#,
        r#"<li class="chosen up" data-id="n2">"#,
        r#"<li class=" down" data-id="n1">"#,
        r#"<li class=" up" data-id="far">"#,
        r#"<li class="chosen up" data-id="f1">"#,
    ] {
        assert!(dom.contains(want), "rendered page lacks {want}:\n{dom}");
    }
    assert!(
        dom.contains("127.0.206.12"),
        "the published answer is shown"
    );
    assert!(dom.contains("failover order"), "the farm's policy is shown");

    // the farm node's own page shows its local choice
    let dom = run_chromium(
        &bin,
        &profile,
        &format!("http://{near_status}/"),
        &["--dump-dom"],
    )
    .await;
    assert!(
        dom.contains(r#"<li class="chosen up" data-id="n2">"#),
        "farm page lacks the chosen server:\n{dom}"
    );
    assert!(
        dom.contains(r#"<li class=" down" data-id="n1">"#),
        "farm page lacks the failing server:\n{dom}"
    );

    // and it draws something: a screenshot far larger than a blank page
    let png = w.dir.path().join("page.png");
    run_chromium(
        &bin,
        &profile,
        &format!("http://{global_status}/"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
            "--hide-scrollbars",
        ],
    )
    .await;
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 900));
    // a blank 1200×900 page compresses to about 5 kB; text and boxes make it much larger
    assert!(
        bytes.len() > 20_000,
        "screenshot is suspiciously small: {} bytes",
        bytes.len()
    );
    if let Some(dir) = std::env::var_os("FEDLB_KEEP_SCREENSHOT") {
        std::fs::copy(&png, Path::new(&dir).join("fedlb-status-page.png"))
            .expect("copying the screenshot");
    }

    w.assert_nodes_running();
    w.shutdown().await;
}
