//! What a run ran on, for the JSON file and the report: CPU, memory, kernel, toolchain, the
//! versions of kube, k8s-openapi and the cluster, and the commit measured.

use std::process::Command;

use serde_json::{Value, json};
use testkit::{Cluster, repo};

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine(cluster: &Cluster) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap_or_default();
    let version_of = |krate: &str| {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        lock.find(&needle)
            .map(|i| {
                lock[i + needle.len()..]
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let versions = std::fs::read_to_string(cluster.bin_dir.join("VERSIONS")).unwrap_or_default();
    let dirty = !sh(
        "git",
        &[
            "-C",
            repo().to_str().unwrap(),
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .is_empty();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_gib * 10.0).round() / 10.0,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": sh("rustc", &["-V"]),
        "kube": version_of("kube"),
        "k8s_openapi": version_of("k8s-openapi"),
        "cluster": versions.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        "commit": format!("{}{}", sh("git", &["-C", repo().to_str().unwrap(), "rev-parse", "--short", "HEAD"]), if dirty { " (with uncommitted changes)" } else { "" }),
        "date": jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
    })
}
