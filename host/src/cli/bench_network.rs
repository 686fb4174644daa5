//! `biop2p bench network`: a host and a submitter in two processes over
//! loopback TCP (Noise, Yamux), echo workload, module cached, connection
//! open. Measures signed job → sandbox → signed receipt verified.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::{Client, verify_response};
use biop2p::proto::{InlineBlob, JobRequest, JobResponse};
use biop2p::workloads;

/// The figures (field names are an interface).
#[derive(serde::Serialize)]
struct Figures {
    job_latency_us_median: f64,
    job_latency_us_p99: f64,
    jobs_per_sec: f64,
    blob_mib_per_sec: f64,
    /// Round trip of a request the host answers without work (`Fetch` of
    /// an unknown job): the protocol's share of the job latency.
    request_rtt_us_median: f64,
    /// Job latency when every job has an input the host has not seen (the
    /// blob is checked and stored on the job's path); `job_latency_us_*`
    /// reuse one input.
    job_latency_fresh_input_us_median: f64,
    /// CPU time of both processes (user + system) per job during the
    /// throughput run: on 2 cores, 5,000 jobs/s needs ≤ 400.
    cpu_us_per_job: f64,
    jobs_measured: usize,
    in_flight: usize,
}

/// Jobs in flight for the throughput figure.
const IN_FLIGHT: usize = 64;

/// Jobs in flight for the throughput figure: `BIOP2P_BENCH_IN_FLIGHT`, to
/// see how throughput scales with concurrency; default [`IN_FLIGHT`].
fn in_flight() -> usize {
    std::env::var("BIOP2P_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IN_FLIGHT)
}

pub fn execute(json: bool, jobs: usize) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut host = Command::new(exe)
        .args([
            "host",
            "--json",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the host process")?;
    let mut out = BufReader::new(host.stdout.take().context("host stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    // Keep draining the host's events so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    let v: serde_json::Value = serde_json::from_str(&line).context("host did not start")?;
    let addr: libp2p::Multiaddr = v["addrs"][0].as_str().context("host address")?.parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    let figures = rt.block_on(measure(addr, jobs, host.id()));
    let _ = host.kill();
    let _ = host.wait();
    let f = figures?;
    if json {
        super::common::print_line(&serde_json::to_string(&f)?)?;
    } else {
        println!(
            "job latency (signed job → verified receipt)  median {:>8.1} µs   p99 {:>8.1} µs",
            f.job_latency_us_median, f.job_latency_us_p99
        );
        println!(
            "job latency, a fresh input each job          median {:>8.1} µs",
            f.job_latency_fresh_input_us_median
        );
        println!(
            "jobs per second ({} in flight, one host)     {:>12.0}",
            f.in_flight, f.jobs_per_sec
        );
        println!(
            "blob transfer (64 MiB, hash-verified)        {:>12.1} MiB/s",
            f.blob_mib_per_sec
        );
        println!(
            "CPU per job, both processes (throughput run) {:>12.1} µs",
            f.cpu_us_per_job
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// User + system CPU time of a process so far, in microseconds, from
/// `/proc/PID/stat` (clock ticks, 100 per second on Linux).
fn cpu_us(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) in parens.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks * 1e6 / 100.0)
}

async fn measure(addr: libp2p::Multiaddr, jobs: usize, host_pid: u32) -> Result<Figures> {
    let host_pid = host_pid.to_string();
    let seed: [u8; 32] = rand::random();
    let mut c = Client::new(
        Identity::from_seed(seed),
        &biop2p::config::NetworkConfig::direct(),
        16 << 20,
    )
    .await?;
    let peer = c.connect(&addr).await?;
    let module = workloads::ECHO;
    let module_hash = *blake3::hash(module).as_bytes();
    let p = JobParams::default();
    let input = b"hello, biop2p".to_vec();
    let submit_input = |c: &Client, with_module: bool, input: &[u8]| {
        let job = c.make_job(module, input, &p);
        let mut inline = vec![InlineBlob {
            hash: *blake3::hash(input).as_bytes(),
            data: input.to_vec(),
        }];
        if with_module {
            inline.push(InlineBlob {
                hash: module_hash,
                data: module.to_vec(),
            });
        }
        (
            job.clone(),
            JobRequest::Submit {
                job,
                inline,
                wait: true,
            },
        )
    };
    let submit = |c: &Client, with_module: bool| submit_input(c, with_module, &input);
    // A distinct input per job: the host has not seen it, so it is checked
    // and stored on the job's path.
    let fresh = |i: usize| format!("fresh input {i:08}").into_bytes();
    // Warm: the host caches the module (blob and compiled code).
    for i in 0..50 {
        let (job, req) = submit(&c, i == 0);
        let r = c.request(&peer, req).await?;
        verify_response(&r, &job.id(), &job.verify()?, &peer).context("warm-up job")?;
    }
    // The bare request-response round trip, for comparison.
    let mut rtt = Vec::with_capacity(jobs);
    for _ in 0..jobs.min(1000) {
        let t = Instant::now();
        c.request(
            &peer,
            JobRequest::Fetch {
                job_id: [0; 32],
                wait: false,
            },
        )
        .await?;
        rtt.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    rtt.sort_by(f64::total_cmp);
    // Latency: one job at a time, from signing to a verified receipt.
    let mut lat = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t = Instant::now();
        let (job, req) = submit(&c, false);
        let r = c.request(&peer, req).await?;
        let v = verify_response(&r, &job.id(), &job.verify()?, &peer)?;
        if v.output.as_deref() != Some(&input[..]) {
            bail!("wrong output");
        }
        lat.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let mut lat_fresh = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let t = Instant::now();
        let input = fresh(i);
        let (job, req) = submit_input(&c, false, &input);
        let r = c.request(&peer, req).await?;
        let v = verify_response(&r, &job.id(), &job.verify()?, &peer)?;
        if v.output.as_deref() != Some(&input[..]) {
            bail!("wrong output");
        }
        lat_fresh.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    lat_fresh.sort_by(f64::total_cmp);
    // Throughput: in_flight() jobs outstanding, each with its own input.
    let window = in_flight();
    let total = jobs.max(window * 4);
    let mut pending = std::collections::HashMap::new();
    let cpu0 = cpu_us("self")? + cpu_us(&host_pid)?;
    let t = Instant::now();
    let mut sent = 0;
    let mut done = 0;
    while done < total {
        while sent < total && pending.len() < window {
            let (job, req) = submit_input(&c, false, &fresh(jobs + sent));
            pending.insert(c.send(&peer, req), job);
            sent += 1;
        }
        let (rid, r) = c.next_response().await;
        let job = pending.remove(&rid).context("unexpected response")?;
        let r = r.with_context(|| format!("after {done} of {total} jobs ({sent} sent)"))?;
        if let JobResponse::Refused { reason, message } = &r {
            bail!("job refused during the throughput run: {reason}: {message}");
        }
        verify_response(&r, &job.id(), &job.verify()?, &peer)?;
        done += 1;
    }
    let jobs_per_sec = total as f64 / t.elapsed().as_secs_f64();
    let cpu_us_per_job = (cpu_us("self")? + cpu_us(&host_pid)? - cpu0) / total as f64;
    // Blob: the host fetches 64 MiB from us in chunks and verifies it.
    let blob: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let job = c.make_job(
        module,
        &blob,
        &JobParams {
            fuel: 1000,
            ..p.clone()
        },
    );
    c.offer_blob(Arc::new(blob));
    let t = Instant::now();
    let r = c
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline: vec![],
                wait: false,
            },
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    if !matches!(r, JobResponse::Accepted { .. }) {
        bail!("the 64 MiB job was not accepted: {r:?}");
    }
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(Figures {
        job_latency_us_median: pct(0.5),
        job_latency_us_p99: pct(0.99),
        jobs_per_sec,
        blob_mib_per_sec: 64.0 / secs,
        request_rtt_us_median: rtt[rtt.len() / 2],
        job_latency_fresh_input_us_median: lat_fresh[lat_fresh.len() / 2],
        cpu_us_per_job,
        jobs_measured: jobs,
        in_flight: window,
    })
}
