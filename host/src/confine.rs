//! The host confines itself, so that a guest that escapes wasmtime finds
//! nothing to take: defence in depth behind the sandbox.
//!
//! Three layers, all inherited by every thread the host ever starts:
//! - **no_new_privs**, so that no later `execve` could gain privileges (and
//!   so that the two layers below may be installed without privileges);
//! - **Landlock**: file access only beneath the data dir (read-write, no
//!   execute) and a few read-only system files the host truly reads after
//!   start (the resolver's files for DNS, `/proc/self`, CPU and cgroup facts
//!   for thread counts, `/dev/null` and `/dev/urandom`). Best effort: on an
//!   older kernel it does what the kernel can and [`Report`] says which
//!   level it got. Signals and abstract unix sockets are scoped to the host
//!   where the kernel has Landlock ABI 6;
//! - **seccomp**: a deny list of system calls a host never makes (`execve`,
//!   `ptrace`, `mount`, `bpf`, `process_vm_*`, module loading, namespaces,
//!   `io_uring`, raw and packet sockets, ...). They fail with `EPERM`, so a
//!   probe is refused and the host goes on serving. Installed with TSYNC,
//!   so it covers every thread even if one existed.
//!
//! Sandbox worker threads, where guests run, add a layer of their own when
//! they start ([`enter_task_thread`]): Landlock limits them to the scratch
//! dirs and the compiled-code cache, and seccomp takes sockets away (no
//! `socket`, `socketpair`, `connect`, `bind`, `listen`, `accept`, `send*`).
//!
//! Why before the first thread rather than after the listeners: Landlock
//! below ABI 8 (Linux 7.0) restricts only the calling thread and the threads
//! it starts later. Applied once tokio, sled and the workers run, it would
//! leave them free. So [`confine_host`] runs in the main thread after the
//! data dir and config are read and before the runtime exists; binding the
//! listeners needs nothing that is denied. The seccomp layers must also come
//! in this order (process first, workers on top): TSYNC refuses to install
//! a filter over threads whose own filters the caller does not share.
//!
//! Only `biop2p host` calls [`confine_host`]; in-process hosts (the tests,
//! `demo`'s own process) stay unconfined, and [`enter_task_thread`] does
//! nothing until [`confine_host`] has run.

use std::path::{Path, PathBuf};

/// Errors of confining the host.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Threads already run, so a per-thread Landlock domain would leave
    /// them unconfined: a bug in the caller's ordering.
    #[error(
        "{threads} threads already run; confinement must come before the first thread is started"
    )]
    Threaded {
        /// Threads of the process at the time.
        threads: usize,
    },
    /// A path to confine to could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] std::io::Error),
    /// The Landlock ruleset could not be built or enforced.
    #[cfg(target_os = "linux")]
    #[error("landlock")]
    Landlock(#[from] landlock::RulesetError),
    /// The seccomp filter could not be compiled (a bug in its rules).
    #[cfg(target_os = "linux")]
    #[error("seccomp filter does not compile")]
    SeccompBuild(#[from] seccompiler::BackendError),
    /// The seccomp filter could not be installed (a kernel without
    /// `CONFIG_SECCOMP_FILTER`, say).
    #[cfg(target_os = "linux")]
    #[error("cannot install the seccomp filter")]
    SeccompApply(#[from] seccompiler::Error),
}

/// How far Landlock got on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockLevel {
    /// Every requested restriction is enforced.
    FullyEnforced,
    /// Some are (an older kernel: e.g. no `Refer`, `Truncate` or scopes).
    PartiallyEnforced,
    /// None: Landlock is not built in or not enabled at boot.
    NotEnforced,
}

/// What confinement the host got, printed at start (`event: confined`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The Landlock level reached.
    pub landlock: LandlockLevel,
    /// The Landlock ABI used (0: none). The kernel's may be newer; this is
    /// the newest both it and this build know.
    pub landlock_abi: u32,
    /// `no_new_privs` is set.
    pub no_new_privs: bool,
    /// The process-wide seccomp deny list is installed.
    pub seccomp: bool,
    /// Sandbox worker threads will add their own layer when they start.
    pub task_threads: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.landlock {
            LandlockLevel::FullyEnforced => "fully enforced",
            LandlockLevel::PartiallyEnforced => "partially enforced",
            LandlockLevel::NotEnforced => "not enforced",
        };
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "landlock {level} (ABI {}), seccomp {}, no_new_privs {}, task threads {}",
            self.landlock_abi,
            on(self.seccomp),
            on(self.no_new_privs),
            if self.task_threads {
                "confined further"
            } else {
                "as the host"
            }
        )
    }
}

/// Confines this process to `data_dir` (see the module docs). Call once,
/// from the main thread, before any other thread is started.
pub fn confine_host(data_dir: &Path) -> Result<Report, ConfineError> {
    imp::confine_host(data_dir)
}

/// Adds the sandbox workers' own layer to the calling thread, if the host
/// confined itself; does nothing otherwise. Called by each worker before it
/// takes its first task; a worker whose call fails must run no task.
pub fn enter_task_thread() -> Result<(), ConfineError> {
    imp::enter_task_thread()?;
    probe::on_task_thread();
    Ok(())
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    use landlock::{
        ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, RulesetAttr,
        RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
    };
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    use super::{ConfineError, LandlockLevel, Report};

    /// The newest Landlock ABI this code was written and tested against;
    /// newer kernels are used at this level (the crate's advice: never ask
    /// the kernel which ABI it has and follow it blindly).
    const ABI_USED: ABI = ABI::V7;

    /// Read-only system paths the host reads after start. Missing ones are
    /// skipped; symlinks are followed (the rule lands on the target).
    /// - the resolver: libp2p's DNS (hickory) reads `resolv.conf` and
    ///   `hosts`, glibc's `getaddrinfo` also the other three;
    /// - `/proc/self`, `/sys/fs/cgroup`, `/sys/devices/system/cpu`: thread
    ///   counts (`available_parallelism`, `num_cpus` read cgroup quotas);
    /// - `/dev/urandom` for RNGs that do not use `getrandom`.
    const READ_ONLY: &[&str] = &[
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/host.conf",
        "/etc/gai.conf",
        "/proc/self",
        "/sys/fs/cgroup",
        "/sys/devices/system/cpu",
        "/dev/urandom",
    ];
    /// Read-write system files.
    const READ_WRITE: &[&str] = &["/dev/null"];

    /// The dirs beneath the data dir where sandbox workers work: task
    /// scratch dirs and their spares (`sandbox/scratch.rs`) and the
    /// compiled-code cache (`sandbox/cache.rs`).
    const TASK_DIRS: &[&str] = &["scratch", "scratch-spare", "code-cache"];

    /// The workers' layer, prepared by `confine_host`.
    struct TaskLayer {
        dirs: Vec<PathBuf>,
        filter: BpfProgram,
    }

    static TASK: OnceLock<TaskLayer> = OnceLock::new();

    /// What a file owner may do beneath a dir: everything but executing and
    /// making devices, fifos, sockets or symlinks.
    fn read_write() -> BitFlags<AccessFs> {
        AccessFs::from_all(ABI_USED)
            & !(AccessFs::Execute
                | AccessFs::MakeChar
                | AccessFs::MakeBlock
                | AccessFs::MakeFifo
                | AccessFs::MakeSock
                | AccessFs::MakeSym
                | AccessFs::IoctlDev)
    }

    fn read_only() -> BitFlags<AccessFs> {
        AccessFs::ReadFile | AccessFs::ReadDir
    }

    pub(super) fn confine_host(data_dir: &Path) -> Result<Report, ConfineError> {
        let threads = thread_count()?;
        if threads > 1 {
            return Err(ConfineError::Threaded { threads });
        }
        rustix::thread::set_no_new_privs(true).map_err(|e| ConfineError::NoNewPrivs(e.into()))?;
        let data_dir = data_dir.canonicalize().map_err(|source| ConfineError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;

        let status = landlock::Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(ABI_USED))?
            .scope(Scope::from_all(ABI_USED))?
            .create()?
            .add_rules(path_beneath_rules([&data_dir], read_write()))?
            .add_rules(path_beneath_rules(READ_ONLY, read_only()))?
            .add_rules(path_beneath_rules(
                READ_WRITE,
                AccessFs::ReadFile | AccessFs::WriteFile,
            ))?
            .restrict_self()?;
        let landlock = match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockLevel::FullyEnforced,
            RulesetStatus::PartiallyEnforced => LandlockLevel::PartiallyEnforced,
            _ => LandlockLevel::NotEnforced,
        };
        let landlock_abi = match status.landlock {
            LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
            _ => 0,
        };

        let arch = target_arch()?;
        for filter in host_filters(arch)? {
            seccompiler::apply_filter_all_threads(&filter)?;
        }
        let task = TaskLayer {
            dirs: TASK_DIRS.iter().map(|d| data_dir.join(d)).collect(),
            filter: task_filter(arch)?,
        };
        let task_threads = TASK.set(task).is_ok();
        let no_new_privs =
            rustix::thread::no_new_privs().map_err(|e| ConfineError::NoNewPrivs(e.into()))?;
        let report = Report {
            landlock,
            landlock_abi,
            no_new_privs,
            seccomp: true,
            task_threads,
        };
        if landlock == LandlockLevel::FullyEnforced {
            tracing::info!(%report, "host confined");
        } else {
            tracing::warn!(%report, "host only partly confined: this kernel lacks Landlock features");
        }
        Ok(report)
    }

    pub(super) fn enter_task_thread() -> Result<(), ConfineError> {
        let Some(task) = TASK.get() else {
            return Ok(());
        };
        landlock::Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(ABI_USED))?
            .create()?
            .add_rules(path_beneath_rules(&task.dirs, read_write()))?
            .restrict_self()?;
        seccompiler::apply_filter(&task.filter)?;
        tracing::debug!(thread = ?std::thread::current().name(), "sandbox worker confined");
        Ok(())
    }

    fn thread_count() -> Result<usize, ConfineError> {
        let path = Path::new("/proc/self/task");
        let io = |source| ConfineError::Io {
            path: path.to_path_buf(),
            source,
        };
        Ok(std::fs::read_dir(path).map_err(io)?.count())
    }

    fn target_arch() -> Result<TargetArch, ConfineError> {
        Ok(TargetArch::try_from(std::env::consts::ARCH)?)
    }

    /// x86-64 also accepts the x32 ABI's numbers (this bit set) with the same
    /// audit arch; a deny list must name them too, or `execve` would simply
    /// be called by its x32 number on kernels built with x32.
    #[cfg(target_arch = "x86_64")]
    const X32: i64 = 0x4000_0000;

    /// System calls a host never makes.
    fn host_denied() -> Vec<i64> {
        let mut v = vec![
            // Running other programs; reading or writing other processes.
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_process_madvise,
            libc::SYS_pidfd_getfd,
            libc::SYS_kcmp,
            // Mounts, namespaces, chroot.
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_mount_setattr,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_unshare,
            libc::SYS_setns,
            // Kernel attack surface a host has no use for.
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            // io_uring would run socket and file operations unseen by seccomp.
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            // File handles bypass path checks (CAP_DAC_READ_SEARCH escapes).
            libc::SYS_open_by_handle_at,
            libc::SYS_name_to_handle_at,
            // Kernel modules, kexec, reboot, swap, accounting, logs.
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_acct,
            libc::SYS_syslog,
            libc::SYS_quotactl,
            // The clock and the host's names.
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_clock_adjtime,
            libc::SYS_adjtimex,
            libc::SYS_sethostname,
            libc::SYS_setdomainname,
            // Changing identity.
            libc::SYS_setuid,
            libc::SYS_setgid,
            libc::SYS_setreuid,
            libc::SYS_setregid,
            libc::SYS_setresuid,
            libc::SYS_setresgid,
            libc::SYS_setgroups,
            libc::SYS_setfsuid,
            libc::SYS_setfsgid,
        ];
        #[cfg(target_arch = "x86_64")]
        {
            v.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
            // x32 numbers: the native ones with the bit, and the x32-only
            // entry points of calls whose arguments differ.
            let native: Vec<i64> = v.iter().map(|n| n | X32).collect();
            v.extend(native);
            // execve, ptrace, process_vm_readv, process_vm_writev, execveat.
            v.extend([520, 521, 539, 540, 545].map(|n| n | X32));
        }
        v
    }

    /// System calls sandbox workers never make: making, binding or
    /// connecting a socket, and sending to an address (which would let a
    /// stolen fd of the host's UDP socket reach anyone). Receiving stays:
    /// wasmtime-wasi starts its own tokio runtime from the first worker that
    /// needs one, its threads inherit this layer, and its signal driver
    /// reads tokio's self-pipe (a unix socket pair) with `recvfrom`; denied,
    /// it panicked on SIGTERM. (That runtime also needs tokio's signal
    /// globals, a `socketpair`; they already exist, made by the host's own
    /// runtime in the main thread before any worker starts.)
    fn task_denied() -> Vec<i64> {
        let mut v = vec![
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_sendmmsg,
        ];
        #[cfg(target_arch = "x86_64")]
        {
            let native: Vec<i64> = v.iter().map(|n| n | X32).collect();
            v.extend(native);
            // sendmsg, sendmmsg: the x32-only entry points.
            v.extend([518, 538].map(|n| n | X32));
        }
        v
    }

    fn eq(arg: u8, value: u64) -> Result<SeccompCondition, ConfineError> {
        Ok(SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            value,
        )?)
    }

    fn has_bits(arg: u8, mask: u64, value: u64) -> Result<SeccompCondition, ConfineError> {
        Ok(SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )?)
    }

    fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, ConfineError> {
        Ok(SeccompRule::new(conds)?)
    }

    /// The process-wide filters: the deny list (`EPERM`), and `clone3`
    /// answered `ENOSYS` so that glibc falls back to `clone`, whose flags
    /// (unlike `clone3`'s, behind a pointer) the filter can see.
    fn host_filters(arch: TargetArch) -> Result<Vec<BpfProgram>, ConfineError> {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            host_denied().into_iter().map(|n| (n, Vec::new())).collect();

        // Raw and packet sockets: sniffing and forging traffic (a root host
        // has CAP_NET_RAW). Netlink (mDNS's interface watcher) stays.
        const TYPE_MASK: u64 = 0xf;
        let af_inet = libc::AF_INET as u64;
        let af_inet6 = libc::AF_INET6 as u64;
        let raw = libc::SOCK_RAW as u64;
        let socket_rules = vec![
            rule(vec![eq(0, libc::AF_PACKET as u64)?])?,
            rule(vec![eq(0, af_inet)?, has_bits(1, TYPE_MASK, raw)?])?,
            rule(vec![eq(0, af_inet6)?, has_bits(1, TYPE_MASK, raw)?])?,
            // SOCK_PACKET (10), the obsolete packet socket type.
            rule(vec![has_bits(1, TYPE_MASK, 10)?])?,
        ];
        // New namespaces through clone's flags (threads never ask for one).
        let namespaces = [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
        ];
        let clone_rules = namespaces
            .iter()
            .map(|&f| rule(vec![has_bits(0, f as u64, f as u64)?]))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(libc::SYS_socket, socket_rules.clone());
        rules.insert(libc::SYS_clone, clone_rules.clone());
        #[cfg(target_arch = "x86_64")]
        {
            rules.insert(libc::SYS_socket | X32, socket_rules);
            rules.insert(libc::SYS_clone | X32, clone_rules);
        }
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )?;
        let mut clone3 = BTreeMap::new();
        clone3.insert(libc::SYS_clone3, Vec::new());
        #[cfg(target_arch = "x86_64")]
        clone3.insert(libc::SYS_clone3 | X32, Vec::new());
        let clone3 = SeccompFilter::new(
            clone3,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )?;
        Ok(vec![deny.try_into()?, clone3.try_into()?])
    }

    fn task_filter(arch: TargetArch) -> Result<BpfProgram, ConfineError> {
        let rules = task_denied().into_iter().map(|n| (n, Vec::new())).collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )?;
        Ok(filter.try_into()?)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The filters compile on this architecture and stay far below the
        /// kernel's 4096-instruction limit.
        #[test]
        fn filters_compile() {
            let arch = target_arch().unwrap();
            for f in host_filters(arch).unwrap() {
                assert!(f.len() < 4096, "{} instructions", f.len());
            }
            assert!(task_filter(arch).unwrap().len() < 4096);
        }

        /// No call is on both lists by mistake of the x32 arithmetic, and no
        /// number the host itself needs is denied.
        #[test]
        fn deny_lists_spare_what_the_host_uses() {
            let host = host_denied();
            for needed in [
                libc::SYS_read,
                libc::SYS_write,
                libc::SYS_openat,
                libc::SYS_mmap,
                libc::SYS_futex,
                libc::SYS_epoll_wait,
                libc::SYS_socket,
                libc::SYS_clone,
                libc::SYS_memfd_create,
                libc::SYS_landlock_restrict_self,
                libc::SYS_seccomp,
            ] {
                assert!(!host.contains(&needed), "{needed} is denied");
            }
            assert!(host.contains(&libc::SYS_execve));
            assert!(task_denied().contains(&libc::SYS_socket));
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::path::Path;

    use super::{ConfineError, LandlockLevel, Report};

    pub(super) fn confine_host(_data_dir: &Path) -> Result<Report, ConfineError> {
        tracing::warn!("this platform has no Landlock or seccomp: the host runs unconfined");
        Ok(Report {
            landlock: LandlockLevel::NotEnforced,
            landlock_abi: 0,
            no_new_privs: false,
            seccomp: false,
            task_threads: false,
        })
    }

    pub(super) fn enter_task_thread() -> Result<(), ConfineError> {
        Ok(())
    }
}

/// Test only: a stand-in for an escaped guest. `biop2p host --escape-probe
/// FILE` (hidden) arms it; then the first sandbox worker, once confined, and
/// the host itself try what an escaped guest would, and report what the
/// kernel let through. Never armed in a normal run.
#[doc(hidden)]
pub mod probe {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    /// One attempt and what came of it.
    #[derive(Debug, Clone, serde::Serialize)]
    pub struct Attempt {
        /// `host` (a host thread) or `task` (a sandbox worker).
        pub thread: &'static str,
        /// What was tried.
        pub attempt: &'static str,
        /// The kernel let it through.
        pub allowed: bool,
        /// Why not, if not.
        pub error: Option<String>,
    }

    struct Armed {
        outside: PathBuf,
        data_dir: PathBuf,
        task: Mutex<Option<Vec<Attempt>>>,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();

    /// Arms the probe: `outside` is a file outside the data dir.
    pub fn arm(outside: PathBuf, data_dir: PathBuf) {
        let _ = ARMED.set(Armed {
            outside,
            data_dir,
            task: Mutex::new(None),
        });
    }

    /// Runs the task probe on the first worker that gets here (after its
    /// confinement); a no-op unless armed.
    pub(super) fn on_task_thread() {
        let Some(a) = ARMED.get() else { return };
        let mut slot = a.task.lock().expect("probe lock");
        if slot.is_none() {
            *slot = Some(attempts(a, "task"));
        }
    }

    /// The host-thread probe and the task-thread one (waited for, bounded):
    /// nothing if not armed.
    pub fn run_on_host(wait: Duration) -> Vec<Attempt> {
        let Some(a) = ARMED.get() else {
            return Vec::new();
        };
        let mut out = attempts(a, "host");
        let deadline = Instant::now() + wait;
        loop {
            if let Some(t) = a.task.lock().expect("probe lock").clone() {
                out.extend(t);
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!("no sandbox worker ran the escape probe");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    }

    fn attempts(a: &Armed, thread: &'static str) -> Vec<Attempt> {
        let mut v = vec![
            attempt(thread, "read_outside", || {
                std::fs::read(&a.outside).map(drop)
            }),
            attempt(thread, "exec_sh", exec_sh),
            attempt(thread, "raw_socket", || {
                use socket2::{Domain, Protocol, Socket, Type};
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map(drop)
            }),
            attempt(thread, "packet_socket", packet_socket),
            attempt(thread, "tcp_socket", || {
                use socket2::{Domain, Socket, Type};
                Socket::new(Domain::IPV4, Type::STREAM, None).map(drop)
            }),
            attempt(thread, "read_data_dir", || read_key(&a.data_dir).map(drop)),
        ];
        if thread == "host" {
            v.push(attempt(thread, "resolve", || {
                use std::net::ToSocketAddrs;
                ("localhost", 80).to_socket_addrs().map(drop)
            }));
        }
        v
    }

    fn attempt(
        thread: &'static str,
        name: &'static str,
        f: impl FnOnce() -> std::io::Result<()>,
    ) -> Attempt {
        let r = f();
        Attempt {
            thread,
            attempt: name,
            allowed: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
        }
    }

    fn exec_sh() -> std::io::Result<()> {
        let s = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 0"])
            .status()?;
        if s.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("/bin/sh: {s}")))
        }
    }

    #[cfg(target_os = "linux")]
    fn packet_socket() -> std::io::Result<()> {
        use socket2::{Domain, Socket, Type};
        Socket::new(Domain::PACKET, Type::RAW, None).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn packet_socket() -> std::io::Result<()> {
        Err(std::io::Error::other("no packet sockets here"))
    }

    fn read_key(data_dir: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(data_dir.join(crate::identity::KEY_FILE))
    }
}
