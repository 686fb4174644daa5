//! Placing a job: which hosts, how many replicas, and what happens when a
//! host fails.
//!
//! Candidates come from adverts (filtered by what the job needs and the
//! submitter pays, then ranked) or from addresses the user gave. `n`
//! distinct hosts each get their own signed job (own nonce, own job id, so
//! none can tell who else runs it or fetch their output); a host that cannot be reached,
//! refuses, fails in transport (it disconnected or died) or misses the
//! deadline is replaced by the next candidate, up to a bound. Answers are
//! verified (signature, job, host, output hash) before they count; the
//! caller decides acceptance with [`Report::majority`]. What the replicas
//! revealed is fed to the submitter's Thermal [`Trails`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::client::{Client, ClientError};
use super::receipts::verify_response;
use super::trails::Trails;
use crate::proto::{Advert, Hash, InlineBlob, JobRequest, JobResponse, JobSpec, SignedJob};

/// Why a host cannot take a job, judged from its advert; `None` if it can.
pub fn unfit(a: &Advert, spec: &JobSpec) -> Option<String> {
    if a.price_per_mfuel > spec.max_price_per_mfuel {
        return Some(format!(
            "price {} per Mfuel is over the ceiling of {}",
            a.price_per_mfuel, spec.max_price_per_mfuel
        ));
    }
    if a.max_fuel < spec.fuel {
        return Some(format!("takes at most {} fuel", a.max_fuel));
    }
    if a.max_memory_bytes < spec.memory_bytes {
        return Some(format!(
            "takes at most {} bytes of memory",
            a.max_memory_bytes
        ));
    }
    if a.queue_room == 0 {
        return Some("its queue is full".into());
    }
    None
}

/// The Caste task class of a job: what kind of worker suits it. Jobs asking
/// for more memory than the default limit are `Memory`, for more fuel than
/// the default budget `Cpu`, the rest `Small` (latency-sensitive).
pub fn task_class(spec: &JobSpec) -> roles::TaskClass {
    let default = crate::sandbox::TaskLimits::DEFAULT;
    if spec.memory_bytes > default.memory_bytes {
        roles::TaskClass::Memory
    } else if spec.fuel > default.fuel {
        roles::TaskClass::Cpu
    } else {
        roles::TaskClass::Small
    }
}

/// A place a replica may run.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// A host known from its advert.
    Host(PeerId, Box<Advert>),
    /// An address the user gave.
    Addr(Multiaddr),
}

impl Candidate {
    fn label(&self) -> String {
        match self {
            Candidate::Host(p, _) => p.to_string(),
            Candidate::Addr(a) => a.to_string(),
        }
    }
}

/// How replicas are run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Distinct hosts to run on.
    pub replicas: usize,
    /// Replacements allowed in all (bounds the work a bad swarm can cause).
    pub max_replacements: usize,
    /// How long a host may take to answer before it is replaced.
    pub deadline: Duration,
    /// When the candidates run out, take more from the hosts the client
    /// has learned of since (by their adverts, ranked by the trails). Off
    /// when the user named the hosts.
    pub refill_from_adverts: bool,
}

/// A verified answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The host.
    pub peer: PeerId,
    /// The job it was sent (its own id).
    pub job: SignedJob,
    /// Its address.
    pub addr: Option<Multiaddr>,
    /// The output hash its receipt signs.
    pub output_hash: Hash,
    /// Done or Failed, verified.
    pub response: JobResponse,
}

/// A host that gave no usable answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Miss {
    /// Peer id or address.
    pub host: String,
    /// What went wrong.
    pub error: String,
}

/// What happened to a replicated job.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Verified answers.
    pub answers: Vec<Answer>,
    /// Hosts that were tried and gave nothing usable.
    pub missing: Vec<Miss>,
    /// Replicas placed again after a failure.
    pub replacements: usize,
}

impl Report {
    /// The output hash a strict majority of `n` replicas signed, with its
    /// count.
    pub fn majority(&self, n: usize) -> Option<(Hash, usize)> {
        let mut counts: HashMap<Hash, usize> = HashMap::new();
        for a in &self.answers {
            *counts.entry(a.output_hash).or_default() += 1;
        }
        counts.into_iter().find(|(_, c)| c * 2 > n)
    }

    /// Answers whose output differs from `winner`.
    pub fn disagreeing(&self, winner: Option<Hash>) -> Vec<&Answer> {
        self.answers
            .iter()
            .filter(|a| Some(a.output_hash) != winner)
            .collect()
    }
}

struct Placed {
    peer: PeerId,
    addr: Option<Multiaddr>,
    deadline: tokio::time::Instant,
    job: SignedJob,
}

/// Runs one task on `plan.replicas` distinct hosts from `candidates` (in
/// order), replacing failed ones; each placement takes the next job of
/// `jobs` (the same task signed afresh each time: `plan.replicas +
/// plan.max_replacements` of them), and updates `trails` with the outcome
/// (agreeing with the strict majority: reinforced; anything else: punished).
/// `note` hears what happens, for people.
pub async fn run_replicas(
    client: &mut Client,
    jobs: Vec<SignedJob>,
    inline: &[InlineBlob],
    candidates: Vec<Candidate>,
    plan: &Plan,
    trails: &mut Trails,
    mut note: impl FnMut(&str),
) -> Result<Report, ClientError> {
    let spec = jobs
        .first()
        .ok_or_else(|| ClientError::Placement("no job to place".into()))?
        .verify()
        .map_err(|e| ClientError::Placement(e.to_string()))?;
    let mut jobs: VecDeque<SignedJob> = jobs.into();
    let mut queue: VecDeque<Candidate> = candidates.into();
    let mut used: HashSet<PeerId> = HashSet::new();
    let mut active: HashMap<super::client::RequestId, Placed> = HashMap::new();
    let mut report = Report::default();

    // Places one replica on the next candidate that is reachable.
    macro_rules! place_one {
        () => {{
            let mut placed = false;
            while let Some(c) = queue.pop_front() {
                let got = match &c {
                    Candidate::Host(p, a) if !used.contains(p) => client
                        .connect_host(*p, a)
                        .await
                        .map(|()| (*p, a.addrs.first().and_then(|s| s.parse().ok()))),
                    Candidate::Host(..) => continue,
                    Candidate::Addr(addr) => {
                        client.connect(addr).await.map(|p| (p, Some(addr.clone())))
                    }
                };
                match got {
                    Ok((peer, _)) if used.contains(&peer) => continue,
                    Ok((peer, addr)) => {
                        for m in client.take_notes() {
                            note(&m);
                        }
                        let Some(job) = jobs.pop_front() else {
                            break;
                        };
                        used.insert(peer);
                        let rid = client.send(
                            &peer,
                            JobRequest::Submit {
                                job: job.clone(),
                                inline: inline.to_vec(),
                                wait: true,
                            },
                        );
                        note(&format!("placed on {peer}"));
                        active.insert(
                            rid,
                            Placed {
                                peer,
                                addr,
                                deadline: tokio::time::Instant::now() + plan.deadline,
                                job,
                            },
                        );
                        placed = true;
                        break;
                    }
                    Err(e) => {
                        note(&format!(
                            "{} unreachable ({e}); trying the next host",
                            c.label()
                        ));
                        report.missing.push(Miss {
                            host: c.label(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            placed
        }};
    }

    for _ in 0..plan.replicas {
        if !place_one!() {
            break;
        }
    }
    if active.len() < plan.replicas {
        return Err(ClientError::Placement(format!(
            "{} replica(s) need as many reachable distinct hosts; found {}",
            plan.replicas,
            active.len()
        )));
    }
    while !active.is_empty() {
        let next_deadline = active
            .values()
            .map(|p| p.deadline)
            .min()
            .expect("non-empty");
        let problem = match tokio::time::timeout_at(next_deadline, client.next_response()).await {
            Ok((rid, r)) => {
                let Some(placed) = active.remove(&rid) else {
                    continue; // an answer after its deadline
                };
                let peer = placed.peer;
                let problem = match r {
                    Ok(resp @ (JobResponse::Done { .. } | JobResponse::Failed { .. })) => {
                        let spec = placed
                            .job
                            .verify()
                            .map_err(|e| ClientError::Placement(e.to_string()))?;
                        match verify_response(&resp, &placed.job.id(), &spec, &peer) {
                            Ok(v) => {
                                report.answers.push(Answer {
                                    peer,
                                    job: placed.job.clone(),
                                    addr: placed.addr,
                                    output_hash: v.receipt.output_hash,
                                    response: resp,
                                });
                                continue;
                            }
                            Err(e) => format!("answer failed verification: {e}"),
                        }
                    }
                    Ok(JobResponse::Refused { reason, message }) => {
                        client.forget_host(&peer);
                        format!("refused: {reason}: {message}")
                    }
                    Ok(other) => format!("unexpected answer {other:?}"),
                    Err(e) => e.to_string(),
                };
                (peer, problem)
            }
            Err(_) => {
                let rid = *active
                    .iter()
                    .find(|(_, p)| p.deadline == next_deadline)
                    .expect("the earliest deadline is active")
                    .0;
                let placed = active.remove(&rid).expect("present");
                (
                    placed.peer,
                    format!("missed the deadline of {:?}", plan.deadline),
                )
            }
        };
        let (peer, problem) = problem;
        note(&format!(
            "replica on {peer} gave no usable result: {problem}"
        ));
        report.missing.push(Miss {
            host: peer.to_string(),
            error: problem,
        });
        if queue.is_empty() && plan.refill_from_adverts {
            let fresh = trails
                .rank(client.known_hosts(), &spec, super::host::unix_now_ms())
                .into_iter()
                .filter(|(p, _)| !used.contains(p))
                .map(|(p, a)| Candidate::Host(p, Box::new(a)));
            queue.extend(fresh);
        }
        if report.replacements < plan.max_replacements && !queue.is_empty() {
            report.replacements += 1;
            note("placing that replica on another host");
            place_one!();
        }
    }
    // A single answer was compared with nothing: it must not reinforce a
    // trail as if it had been confirmed.
    if plan.replicas >= 2 {
        trails.learn(
            &report,
            report.majority(plan.replicas).map(|w| w.0),
            super::host::unix_now_ms(),
        );
    }
    Ok(report)
}

/// Blobs small enough to travel inside the request, in order, up to
/// `limit` bytes in all.
pub fn inline_blobs(blobs: &[&[u8]], limit: usize) -> Vec<InlineBlob> {
    let mut out = Vec::new();
    let mut total = 0;
    for data in blobs {
        if total + data.len() <= limit {
            total += data.len();
            out.push(InlineBlob {
                hash: *blake3::hash(data).as_bytes(),
                data: data.to_vec(),
            });
        }
    }
    out
}
