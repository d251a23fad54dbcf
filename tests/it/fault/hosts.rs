//! The suite's hosts: each broker, each opptak process and the load
//! generator in its own network namespace on this machine, joined by a
//! bridge (`deploy/local/hosts.sh`), so that their traffic crosses real
//! interfaces and the network faults hit one host's links: a partition (its
//! link down), or a delay and loss between two groups of hosts.
//!
//! A run gets a net of its own (`hosts.sh --net auto`: 10.77.N.0/24, the
//! bridge `opk-brN` with 10.77.N.1 in the root namespace, where the test
//! process and the shared services stay); [`Hosts`] takes it down when
//! dropped, and a run that died before is cleaned up by the next one (its
//! owner pid is gone). The shared services listen on loopback only: the
//! hosts reach them through forwarders on 10.77.N.1 ([`Hosts::forward`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/hosts.sh");

pub struct Hosts {
    pub net: u32,
    addrs: HashMap<String, String>,
}

/// Why hosts cannot be made here (not root, no `ip`), or nothing.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("the network scenarios need root (network namespaces)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the network scenarios need `ip` (iproute2)".into()),
    }
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .map_err(|e| format!("hosts.sh {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "hosts.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Hosts {
    /// A new net with one host per name.
    pub fn up(names: &[&str]) -> Result<Self, String> {
        let owner = std::process::id().to_string();
        let mut args = vec!["--net", "auto", "up", "--owner", &owner];
        args.extend_from_slice(names);
        let out = run(&args)?;
        let net: u32 = out
            .lines()
            .find_map(|l| l.strip_prefix("net "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("hosts.sh up: no net in {out:?}"))?;
        let mut hosts = Self {
            net,
            addrs: HashMap::new(),
        };
        for name in names {
            let addr = run(&["--net", &net.to_string(), "addr", name])?;
            hosts.addrs.insert((*name).to_owned(), addr.trim().to_owned());
        }
        Ok(hosts)
    }

    fn net_arg(&self) -> String {
        self.net.to_string()
    }

    /// The root namespace's address on the bridge (the test, the services).
    pub fn gateway(&self) -> String {
        format!("10.77.{}.1", self.net)
    }

    pub fn addr(&self, name: &str) -> &str {
        self.addrs
            .get(name)
            .unwrap_or_else(|| panic!("no host {name} in net {}", self.net))
    }

    /// The namespace of host `name` (for `ip netns exec`).
    pub fn netns(&self, name: &str) -> String {
        format!("opk{}-{name}", self.net)
    }

    /// `program` to run on host `name`: `ip netns exec` execs it, so the
    /// child's pid is the program's (a SIGKILL reaches it).
    pub fn command(&self, name: &str, program: impl Into<PathBuf>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns(name)]).arg(program.into());
        c
    }

    /// Forwarders 10.77.N.1:PORT -> 127.0.0.1:PORT for each port.
    pub fn forward(&self, ports: &[u16]) -> Result<(), String> {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut args = vec!["--net".to_string(), self.net_arg(), "forward".into()];
        args.extend(ports);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>()).map(drop)
    }

    /// `url` with its loopback host replaced by the gateway, and its port
    /// forwarded there: how the hosts reach a service of the root namespace.
    pub fn reach(&self, url: &str) -> Result<String, String> {
        let at = url
            .find("127.0.0.1:")
            .ok_or_else(|| format!("{url}: expected a service on 127.0.0.1"))?;
        let rest = &url[at + "127.0.0.1:".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let port: u16 = digits.parse().map_err(|_| format!("{url}: no port"))?;
        self.forward(&[port])?;
        Ok(url.replacen("127.0.0.1", &self.gateway(), 1))
    }

    /// Host `name` cut off from every other (its link down).
    pub fn partition(&self, name: &str) -> Result<(), String> {
        run(&["--net", &self.net_arg(), "partition", name]).map(drop)
    }

    pub fn heal(&self, name: &str) -> Result<(), String> {
        run(&["--net", &self.net_arg(), "heal", name]).map(drop)
    }

    /// Every packet between `name` and `peers`, both ways, delayed by
    /// `delay_ms` and dropped with `loss_pct` percent (each way).
    pub fn netem(&self, name: &str, delay_ms: u32, loss_pct: f64, peers: &[&str]) -> Result<(), String> {
        let (delay, loss, to) = (format!("{delay_ms}ms"), format!("{loss_pct}%"), peers.join(","));
        let net = self.net_arg();
        let mut args = vec!["--net", &net, "netem", name, "delay", &delay, "loss", &loss];
        if !peers.is_empty() {
            args.extend(["to", &to]);
        }
        run(&args).map(drop)
    }

    pub fn netem_off(&self, name: &str) -> Result<(), String> {
        run(&["--net", &self.net_arg(), "netem", name, "off"]).map(drop)
    }

    /// TCP connections established from host `name` to `port` of any host:
    /// proof that a host's traffic leaves it.
    pub fn connections_to(&self, name: &str, port: u16) -> usize {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns(name), "ss", "-Htn", "state", "established"])
            .arg(format!("( dport = :{port} )"))
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }

    /// `hosts.sh status`: the hosts, their links and impairments.
    pub fn status(&self) -> String {
        run(&["--net", &self.net_arg(), "status"]).unwrap_or_else(|e| e)
    }

    /// Runs `f` on a thread that lives in host `name`'s namespace: every
    /// socket it opens, and every thread it starts (librdkafka's broker
    /// threads), is in that namespace. How the load generator, which is a
    /// part of this test process, runs on a host of its own.
    pub fn within<T: Send + 'static>(&self, name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.netns(name));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
            use std::os::fd::AsFd;
            // setns moves only this thread, which ends with `f`; the threads
            // it started keep the namespace.
            move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(|e| format!("setns {path}: {e}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| format!("the thread in {name} panicked"))?
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if let Err(e) = run(&["--net", &self.net_arg(), "down"]) {
            eprintln!("[fault] {e}");
        }
    }
}
