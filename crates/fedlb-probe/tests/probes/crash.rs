use std::time::Duration;

use fedlb_probe::{ListenEvent, ListenWatcher, is_listening};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

#[tokio::test]
async fn the_watcher_fires_when_the_listener_closes() {
    let listener = TcpListener::bind("127.0.0.9:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(is_listening(port).unwrap());
    let mut watcher = ListenWatcher::spawn(port, Duration::from_millis(50));
    assert_eq!(watcher.port(), port);
    let first = timeout(Duration::from_secs(2), watcher.changed())
        .await
        .unwrap();
    assert_eq!(first, Some(ListenEvent::Listening { port }));

    let closed = Instant::now();
    drop(listener);
    let event = timeout(Duration::from_secs(2), watcher.changed())
        .await
        .unwrap();
    assert_eq!(event, Some(ListenEvent::Vanished { port }));
    // Polled every 50 ms: noticed well within one probe interval.
    assert!(
        closed.elapsed() < Duration::from_millis(500),
        "{:?}",
        closed.elapsed()
    );
    assert!(!is_listening(port).unwrap());

    // And it comes back.
    let _again = TcpListener::bind(("127.0.0.9", port)).await.unwrap();
    let event = timeout(Duration::from_secs(2), watcher.changed())
        .await
        .unwrap();
    assert_eq!(event, Some(ListenEvent::Listening { port }));
}

#[tokio::test]
async fn established_connections_are_not_mistaken_for_a_listener() {
    let listener = TcpListener::bind("127.0.0.9:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (_server, _) = listener.accept().await.unwrap();
    drop(listener);
    // The accepted connection still has the port as its local port, yet nothing listens.
    assert!(!is_listening(addr.port()).unwrap());
}
