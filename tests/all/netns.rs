//! Network namespaces that tests create for themselves, so that hosts get
//! real, distinct addresses and a LAN of their own, and nothing a test sends
//! (mDNS multicast included) leaves on the machine's real interfaces.
//!
//! Each host runs as a `biop2p host` child process launched by `ip netns
//! exec NS` ([`Namespaces::command`]), not as a thread that calls `setns`:
//! the host confines itself with seccomp and Landlock for the whole
//! process and forks sandbox workers' threads, and a process per host is
//! also what `kill -9` needs. `ip netns exec` execs the binary, so the
//! child's pid is the host's.
//!
//! Two kinds of network:
//! - [`Lan::bridge`]: veth pairs on a Linux bridge (in a namespace of its
//!   own, so the root namespace gains no interface): real Ethernet with
//!   multicast, for mDNS;
//! - [`Lan::wire`]: a TUN device per namespace, joined by this process,
//!   which forwards each IPv4 packet to the namespace that owns its
//!   destination after a fixed delay, dropping a seeded random fraction.
//!   This machine's kernel has no `sch_netem` (and no NFQUEUE) to delay
//!   packets, so the delay and loss are done here, one packet at a time,
//!   on real kernel TCP stacks.
//!
//! Namespaces are named `bp2p-PID-N-I` and deleted on drop, also when a
//! test panics; those of a test process that died (`kill -9` of the test
//! binary) are swept by the next one.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Set to `1` where namespaces cannot be created (no root, no `ip`): the
/// namespaced tests then say loudly that they did not run, instead of
/// failing. Without it they fail with the reason.
pub const NO_NETNS: &str = "BIOP2P_NO_NETNS";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`; the error carries its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this test may run: `false` (after a loud line) when
/// [`NO_NETNS`] is set, a panic with the reason when namespaces cannot be
/// made and it is not.
pub fn required(test: &str) -> bool {
    if std::env::var(NO_NETNS).is_ok_and(|v| v == "1") {
        eprintln!(
            "!!! {test}: NOT RUN: {NO_NETNS}=1 says this machine cannot create network namespaces"
        );
        return false;
    }
    let probe = format!(
        "bp2p-{}-probe{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let made = ip(&["netns", "add", &probe]);
    let _ = ip(&["netns", "del", &probe]);
    if let Err(e) = made {
        panic!(
            "{test} needs network namespaces (root and iproute2) and cannot create one: {e}. \
             Set {NO_NETNS}=1 to skip it knowingly."
        );
    }
    true
}

/// Deletes namespaces left by test processes that no longer run.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("bp2p-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Uniquely named namespaces, deleted on drop.
pub struct Namespaces {
    names: Vec<String>,
    /// Short unique tag for interface names (at most 15 bytes in all).
    tag: String,
}

impl Namespaces {
    /// `n` fresh namespaces, each with its loopback up.
    pub fn new(n: usize) -> Result<Self, String> {
        sweep_stale();
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut ns = Namespaces {
            names: Vec::new(),
            tag: format!("{:05x}", (pid.wrapping_mul(64).wrapping_add(k)) & 0xfffff),
        };
        for i in 0..n {
            let name = format!("bp2p-{pid}-{k}-{i}");
            ip(&["netns", "add", &name])?;
            ns.names.push(name);
            ip(&["-n", &ns.names[i], "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    /// The name of namespace `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// A veth pair `TAG<name>a` (in `i`, at `addr_i`, a CIDR) and
    /// `TAG<name>b` (in `j`, at `addr_j`), both up. Returns their names.
    pub fn veth(
        &self,
        name: &str,
        i: usize,
        addr_i: &str,
        j: usize,
        addr_j: &str,
    ) -> Result<(String, String), String> {
        let (a, b) = (
            format!("{}{name}a", self.tag),
            format!("{}{name}b", self.tag),
        );
        assert!(b.len() <= 15, "interface name {b} too long");
        ip(&[
            "-n",
            self.name(i),
            "link",
            "add",
            &a,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            self.name(j),
        ])?;
        for (ns, dev, addr) in [(i, &a, addr_i), (j, &b, addr_j)] {
            ip(&["-n", self.name(ns), "addr", "add", addr, "dev", dev])?;
            ip(&["-n", self.name(ns), "link", "set", dev, "up"])?;
        }
        Ok((a, b))
    }

    /// A bridge `br0` in namespace `switch` with one veth to each member,
    /// at its CIDR address. Returns the members' interface names.
    pub fn bridge(&self, switch: usize, members: &[(usize, &str)]) -> Result<Vec<String>, String> {
        let sw = self.name(switch).to_string();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        let mut names = Vec::new();
        for (k, (m, addr)) in members.iter().enumerate() {
            let (a, b) = (format!("{}p{k}", self.tag), format!("{}q{k}", self.tag));
            ip(&[
                "-n", &sw, "link", "add", &a, "type", "veth", "peer", "name", &b,
            ])?;
            ip(&["-n", &sw, "link", "set", &a, "netns", self.name(*m)])?;
            ip(&["-n", &sw, "link", "set", &b, "master", "br0", "up"])?;
            ip(&["-n", self.name(*m), "addr", "add", addr, "dev", &a])?;
            ip(&["-n", self.name(*m), "link", "set", &a, "up"])?;
            names.push(a);
        }
        Ok(names)
    }

    /// Runs `program ARGS` in namespace `i`; the error carries its stderr.
    pub fn run(&self, i: usize, program: &str, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(i, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{program} {}` in {} failed: {}",
                args.join(" "),
                self.name(i),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Replaces namespace `i`'s nftables ruleset with `rules` (needs the
    /// `nft` binary, Debian's `nftables`).
    pub fn nft(&self, i: usize, rules: &str) -> Result<(), String> {
        let mut child = self
            .command(i, "nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `nft` (install nftables): {e}"))?;
        let script = format!("flush ruleset\n{rules}");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in {} refused the rules: {}",
                self.name(i),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `program` to be run inside namespace `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }

    /// Runs `f` on a new thread that joined namespace `i` first. A network
    /// namespace is a per-thread attribute, so the test process's other
    /// threads stay where they are, and every socket `f` opens is made in
    /// `i`. For peers the test plays itself (a hostile one, speaking raw
    /// libp2p) rather than a `biop2p` process; `f` must not spawn threads
    /// of its own that open sockets (a current-thread runtime does not).
    pub fn spawn_in<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        use std::os::fd::AsFd;
        let path = format!("/run/netns/{}", self.names[i]);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns into {path}: {e}"));
            f()
        })
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}

/// A network of namespaces, member `i` at `10.99.0.(i+1)/24` (or where
/// [`Lan::bridge_at`] puts it).
/// Namespaces are private to the test, so every test may use that subnet.
pub struct Lan {
    /// Stopped before the namespaces go.
    wire: Option<Wire>,
    /// The members (and for a bridge, one more namespace: the switch).
    pub ns: Namespaces,
    n: usize,
    /// Member `i`'s address (without its prefix length).
    addrs: Vec<String>,
}

impl Lan {
    /// The address of member `i`.
    pub fn addr(&self, i: usize) -> String {
        assert!(i < self.n);
        self.addrs[i].clone()
    }

    /// `program` run inside member `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.ns.command(i, program)
    }

    /// `n` members on an Ethernet bridge (multicast works: mDNS).
    pub fn bridge(n: usize) -> Result<Lan, String> {
        let cidrs: Vec<String> = (0..n).map(|i| format!("10.99.0.{}/24", i + 1)).collect();
        Lan::bridge_at(&cidrs)
    }

    /// Members on an Ethernet bridge at the addresses given (`ADDR/LEN`,
    /// one a member): one link, so members in different /24s under a
    /// shorter mask still reach each other directly, while each connection
    /// is observed from its own /24.
    pub fn bridge_at(cidrs: &[String]) -> Result<Lan, String> {
        let n = cidrs.len();
        let ns = Namespaces::new(n + 1)?;
        let switch = ns.name(n).to_string();
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, cidr) in cidrs.iter().enumerate() {
            let (a, b) = (format!("{}a{i}", ns.tag), format!("{}b{i}", ns.tag));
            // Made in the switch namespace, one end moved to the member.
            ip(&[
                "-n", &switch, "link", "add", &a, "type", "veth", "peer", "name", &b,
            ])?;
            ip(&["-n", &switch, "link", "set", &a, "netns", ns.name(i)])?;
            ip(&["-n", &switch, "link", "set", &b, "master", "br0", "up"])?;
            let m = ns.name(i);
            ip(&["-n", m, "addr", "add", cidr, "dev", &a])?;
            ip(&["-n", m, "link", "set", &a, "up"])?;
            // Multicast (mDNS) goes out of this interface.
            ip(&["-n", m, "route", "add", "224.0.0.0/4", "dev", &a])?;
        }
        let addrs = cidrs
            .iter()
            .map(|c| c.split('/').next().unwrap_or(c).to_string())
            .collect();
        Ok(Lan {
            wire: None,
            ns,
            n,
            addrs,
        })
    }

    /// `n` members joined by a wire that delays every packet by `delay`
    /// (so the round trip is twice that) and drops a `loss` fraction of
    /// them, each way, at random from `seed`.
    pub fn wire(n: usize, delay: Duration, loss: f64, seed: u64) -> Result<Lan, String> {
        assert!(n < 250);
        let ns = Namespaces::new(n)?;
        let mut tuns = Vec::new();
        for i in 0..n {
            let name = format!("{}t{i}", ns.tag);
            // Made here (down, unaddressed: nothing is ever sent on it in
            // this namespace), then moved into the member; the file stays
            // attached to it.
            tuns.push(open_tun(&name)?);
            ip(&["link", "set", &name, "netns", ns.name(i)])?;
            let m = ns.name(i);
            ip(&[
                "-n",
                m,
                "addr",
                "add",
                &format!("10.99.0.{}/24", i + 1),
                "dev",
                &name,
            ])?;
            ip(&["-n", m, "link", "set", &name, "up"])?;
        }
        let wire = Wire::start(tuns, delay, loss, seed);
        Ok(Lan {
            wire: Some(wire),
            ns,
            n,
            addrs: (0..n).map(|i| format!("10.99.0.{}", i + 1)).collect(),
        })
    }

    /// Packets forwarded and dropped by the wire so far.
    pub fn wire_counts(&self) -> (u64, u64) {
        self.wire.as_ref().map_or((0, 0), |w| {
            (
                w.forwarded.load(Ordering::Relaxed) as u64,
                w.dropped.load(Ordering::Relaxed) as u64,
            )
        })
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        drop(self.wire.take());
    }
}

/// Opens a new TUN device (IPv4 packets without the packet-info header),
/// non-blocking.
#[allow(unsafe_code)]
fn open_tun(name: &str) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TUN: i16 = 0x0001;
    const IFF_NO_PI: i16 = 0x1000;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    // struct ifreq: the name (16 bytes), then a union whose first member
    // here is the flags (short); 40 bytes in all.
    let mut ifr = [0u8; 40];
    assert!(name.len() < 16);
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, and `ifr` is a
    // live, writable buffer of its size for the whole call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) };
    if r < 0 {
        return Err(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(f)
}

/// The thread that carries packets between the TUN devices.
struct Wire {
    stop: Arc<AtomicBool>,
    forwarded: Arc<AtomicU32>,
    dropped: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A packet on the wire, due at `due`, for member `to`.
struct InFlight {
    due: Instant,
    seq: u64,
    to: usize,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    // Earliest first from a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

impl Wire {
    fn start(mut tuns: Vec<File>, delay: Duration, loss: f64, seed: u64) -> Wire {
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicU32::new(0));
        let (s, f, d) = (stop.clone(), forwarded.clone(), dropped.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut queue = BinaryHeap::<InFlight>::new();
            let mut buf = vec![0u8; 65536];
            let mut seq = 0u64;
            let n = tuns.len();
            while !s.load(Ordering::Relaxed) {
                let mut got = false;
                for t in tuns.iter_mut() {
                    // A bounded drain per device per round, so one busy
                    // member cannot starve the others.
                    for _ in 0..256 {
                        let Ok(len) = t.read(&mut buf) else { break };
                        got = true;
                        let p = &buf[..len];
                        // IPv4 to a member; everything else (IPv6 router
                        // solicitations, strays) goes nowhere.
                        if len < 20 || p[0] >> 4 != 4 || p[16..19] != [10, 99, 0] {
                            continue;
                        }
                        let to = usize::from(p[19]).wrapping_sub(1);
                        if to >= n {
                            continue;
                        }
                        if rng.random_bool(loss) {
                            d.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        seq += 1;
                        queue.push(InFlight {
                            due: Instant::now() + delay,
                            seq,
                            to,
                            bytes: p.to_vec(),
                        });
                    }
                }
                let now = Instant::now();
                while queue.peek().is_some_and(|p| p.due <= now) {
                    let p = queue.pop().expect("peeked");
                    // Counted before it is written, so whoever saw the
                    // packet arrive also sees it counted (the thread may
                    // be preempted between the two). A member whose device
                    // is gone just loses the packet, uncounted.
                    f.fetch_add(1, Ordering::Relaxed);
                    if tuns[p.to].write(&p.bytes).is_err() {
                        f.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                if !got {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
        });
        Wire {
            stop,
            forwarded,
            dropped,
            thread: Some(thread),
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn namespaces_are_private_and_the_wire_delays() {
    if !required("namespaces_are_private_and_the_wire_delays") {
        return;
    }
    let delay = Duration::from_millis(25);
    let lan = Lan::wire(2, delay, 0.0, 1).expect("a wire of two namespaces");
    // A connection to a closed port of member 1: the SYN and the RST each
    // cross the wire once, so the refusal takes at least the round trip.
    let t = Instant::now();
    let out = lan
        .command(0, "bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/{}/9", lan.addr(1))])
        .output()
        .expect("bash");
    let rtt = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused"), "no answer from member 1: {err}");
    assert!(
        rtt >= 2 * delay,
        "answered in {rtt:?}, under twice the delay"
    );
    assert!(lan.wire_counts().0 >= 2);
    // The namespace sees only its own interfaces: no route to the outside.
    let out = lan
        .command(0, "ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&out.stdout);
    assert_eq!(links.lines().count(), 2, "lo and the wire only: {links}");
    let name = lan.ns.name(0).to_string();
    drop(lan);
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&name),
        "namespace {name} left behind"
    );
}
