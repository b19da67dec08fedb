//! The operator's kube clients: one for requests, bounded by a timeout, and one for watches.
//!
//! kube sets no read timeout by default, so a request whose answer never comes (an apiserver
//! that stalls, or a kubelet that hangs while serving a pod's log, which the apiserver proxies)
//! would hold a reconcile worker forever; with `--concurrency` such reads, every worker is stuck
//! and nothing is reconciled again. Requests therefore fail after `timeout` without progress and
//! the reconcile is retried.
//!
//! A watch cannot take that timeout: it is a long request that stays silent while nothing
//! changes. kube's watcher already bounds it: it asks the apiserver to end each watch after
//! 290 s (`timeoutSeconds`) and itself drops a watch that has been silent for 295 s, then
//! watches again from where it stopped. So the watch client reads with a timeout just above
//! those, [`WATCH_READ_TIMEOUT`], which only catches what they cannot: a hung initial list.

use std::time::Duration;

use kube::client::ClientBuilder;
use kube::{Client, Config};

use crate::telemetry::CountRequests;

/// Read timeout of the watch client: above kube's 290 s watch timeout and 295 s idle timeout,
/// so that a quiet watch ends as kube intends, never by this error.
pub const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(310);

/// A client for ordinary requests, and one for watches.
#[derive(Clone)]
pub struct Clients {
    pub requests: Client,
    pub watches: Client,
}

/// `config` with every phase of a request bounded by `timeout`: connecting, sending, and each
/// wait for the server's next bytes (a slow answer that keeps coming is fine).
pub fn request_config(mut config: Config, timeout: Duration) -> Config {
    config.connect_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    // Count from when the request was sent, not from when its pooled connection went idle.
    config.reset_reader_on_write = true;
    config
}

/// `config` for watches (and their lists): connecting and sending bounded by `timeout`, each
/// wait for the next bytes by [`WATCH_READ_TIMEOUT`] (see the module comment).
pub fn watch_config(mut config: Config, timeout: Duration) -> Config {
    config.connect_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.read_timeout = Some(WATCH_READ_TIMEOUT);
    config.reset_reader_on_write = true;
    config
}

/// Both clients from one configuration, each counting its requests in the operator's metrics.
pub fn clients(
    config: Config,
    timeout: Duration,
    count: &CountRequests,
) -> Result<Clients, kube::Error> {
    let build = |config: Config| -> Result<Client, kube::Error> {
        Ok(ClientBuilder::try_from(config)?.with_layer(count).build())
    };
    Ok(Clients {
        requests: build(request_config(config.clone(), timeout))?,
        watches: build(watch_config(config, timeout))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::{LogParams, WatchParams};

    use super::*;
    use crate::telemetry::Metrics;

    /// A server that accepts connections and never answers: a hung apiserver, or a hung
    /// kubelet behind it. (The kernel buffers the small requests, so nothing needs reading.)
    fn silent_server() -> Config {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for socket in listener.incoming() {
                open.extend(socket.ok());
            }
        });
        Config::new(url.parse().unwrap())
    }

    fn test_clients(config: Config, timeout: Duration) -> Clients {
        let metrics = Metrics::default();
        let count = CountRequests {
            family: metrics.api_requests.clone(),
        };
        clients(config, timeout, &count).unwrap()
    }

    #[tokio::test]
    async fn a_request_without_an_answer_fails_after_the_timeout() {
        let clients = test_clients(silent_server(), Duration::from_millis(300));
        let pods: Api<Pod> = Api::namespaced(clients.requests, "ns");
        let started = Instant::now();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            pods.logs("job-master-0", &LogParams::default()),
        )
        .await;
        let result = read.expect("the log read ends by itself instead of hanging");
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_silent_watch_is_not_cut_by_the_request_timeout() {
        let clients = test_clients(silent_server(), Duration::from_millis(300));
        let pods: Api<Pod> = Api::namespaced(clients.watches, "ns");
        let watch = tokio::time::timeout(
            Duration::from_secs(2),
            pods.watch(&WatchParams::default(), "0"),
        )
        .await;
        assert!(
            watch.is_err(),
            "the watch ended early: {:?}",
            watch.map(|r| r.is_ok())
        );
    }

    #[test]
    fn watches_read_longer_than_the_watch_timeout() {
        let base = Config::new("https://example.invalid".parse().unwrap());
        let timeout = Duration::from_secs(60);
        let requests = request_config(base.clone(), timeout);
        assert_eq!(requests.read_timeout, Some(timeout));
        assert_eq!(requests.write_timeout, Some(timeout));
        assert_eq!(requests.connect_timeout, Some(timeout));
        assert!(requests.reset_reader_on_write);
        let watches = watch_config(base, timeout);
        // Above the 290 s the watcher asks the apiserver for, and its own 295 s idle timeout.
        assert!(watches.read_timeout > Some(Duration::from_secs(295)));
        assert!(watches.reset_reader_on_write);
        assert_eq!(watches.connect_timeout, Some(timeout));
        assert_eq!(watches.write_timeout, Some(timeout));
    }
}
