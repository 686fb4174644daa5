//! The host's side of the long-lived job stream (`/biop2p/jobs/1.0.0`): one
//! task per inbound stream reads frames, decodes them and hands them to the
//! host loop; the host's answers go back through a [`StreamReply`] and are
//! written, coalesced, by the same task. Nothing here touches the swarm, so
//! frame IO and decoding never run on the swarm task.
//!
//! Bounds, all per peer: at most [`StreamLimits::streams_per_peer`] job
//! streams at once (more are closed at once), and at most
//! [`StreamLimits::in_flight`] requests in flight per stream (the reader
//! stops reading until answers have gone out, so a flooding peer only slows
//! its own stream: TCP and Yamux flow control push back on it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{AsyncReadExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::net::Inbound;
use crate::net::job_stream::{Frame, encode_frame, read_frame, write_frames};
use crate::proto::{JobRequest, JobResponse, RefuseReason};

/// Bounds of the job streams.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Job streams one peer may have open at once. A submitter needs one
    /// per connection; 4 leaves room for reconnects.
    pub streams_per_peer: usize,
    /// Requests in flight per stream (answered or not yet). Each holds at
    /// most a request's bytes until answered.
    pub in_flight: usize,
    /// Largest request body (a signed job plus inline blobs).
    pub request_bytes: usize,
    /// Largest response body (an output plus its receipt).
    pub response_bytes: usize,
}

/// A request that arrived on a job stream, for the host loop.
pub struct StreamRequest {
    /// Who sent it (authenticated by the connection).
    pub peer: PeerId,
    /// The request as it arrived.
    pub request: Inbound<JobRequest>,
    /// For a `Submit`, its job's signature already checked here, on the
    /// stream's own task: the costliest check of admission stays off the
    /// host loop, and streams check in parallel.
    pub verified: Option<Result<crate::proto::JobSpec, crate::proto::ProtoError>>,
    /// Where its one answer goes.
    pub reply: StreamReply,
}

/// Where the answer to one request on a job stream goes. Exactly one
/// answer per request: `send` consumes it.
pub struct StreamReply {
    id: u64,
    tx: mpsc::Sender<(u64, JobResponse)>,
}

impl StreamReply {
    /// Queues the answer for the stream's writer. Never waits: the channel
    /// has room for every request in flight, and each request has one
    /// answer. A closed stream drops it (the submitter is gone).
    pub fn send(self, resp: JobResponse) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send((self.id, resp)) {
            tracing::error!("job stream reply channel full (a request answered twice?)");
        }
    }
}

/// Accepts job streams until `incoming` ends or the task is aborted (the
/// host's shutdown); every stream task lives in this task's `JoinSet`, so
/// they end with it.
pub async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    to_host: mpsc::Sender<StreamRequest>,
    limits: StreamLimits,
) {
    let open: Arc<Mutex<HashMap<PeerId, usize>>> = Arc::default();
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = streams.join_next() => {}
            s = incoming.next() => {
                let Some((peer, stream)) = s else { break };
                {
                    let mut open = open.lock().expect("stream counts");
                    let n = open.entry(peer).or_default();
                    if *n >= limits.streams_per_peer {
                        tracing::info!(%peer, limit = limits.streams_per_peer, "job stream refused: too many from this peer");
                        drop(stream);
                        continue;
                    }
                    *n += 1;
                }
                let open = open.clone();
                let to_host = to_host.clone();
                streams.spawn(async move {
                    serve(peer, stream, to_host, limits).await;
                    let mut open = open.lock().expect("stream counts");
                    if let Some(n) = open.get_mut(&peer) {
                        *n -= 1;
                        if *n == 0 {
                            open.remove(&peer);
                        }
                    }
                });
            }
        }
    }
}

/// Serves one stream: reads requests while fewer than `in_flight` are
/// unanswered, writes answers as they come.
async fn serve(
    peer: PeerId,
    stream: Stream,
    to_host: mpsc::Sender<StreamRequest>,
    limits: StreamLimits,
) {
    let (mut rd, mut wr) = stream.split();
    let (tx, mut rx) = mpsc::channel::<(u64, JobResponse)>(limits.in_flight);
    let permits = Arc::new(Semaphore::new(limits.in_flight));
    let reader = {
        let permits = permits.clone();
        async move {
            loop {
                let Ok(p) = permits.acquire().await else {
                    break;
                };
                p.forget();
                let frame = match read_frame(&mut rd, limits.request_bytes).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "job stream closed");
                        break;
                    }
                };
                let (id, request) = match frame {
                    Frame::Body { id, body } => match postcard::from_bytes(&body) {
                        // Answered here: it only shows the stream is read,
                        // and the permit it took bounds how fast.
                        Ok(JobRequest::Hello) => {
                            StreamReply { id, tx: tx.clone() }.send(JobResponse::Hello);
                            continue;
                        }
                        Ok(r) => (id, Inbound::Ok(r)),
                        Err(e) => (id, Inbound::Malformed(e.to_string())),
                    },
                    Frame::TooLarge { id, len } => (
                        id,
                        Inbound::TooLarge {
                            len,
                            limit: limits.request_bytes as u64,
                        },
                    ),
                };
                let verified = match &request {
                    Inbound::Ok(JobRequest::Submit { job, .. }) => Some(job.verify()),
                    _ => None,
                };
                let reply = StreamReply { id, tx: tx.clone() };
                if to_host
                    .send(StreamRequest {
                        peer,
                        request,
                        verified,
                        reply,
                    })
                    .await
                    .is_err()
                {
                    break; // the host is stopping
                }
            }
            // Dropping `tx` here lets the writer end once the host has
            // answered (or dropped) every request of this stream.
        }
    };
    let writer = async move {
        let mut buf = Vec::new();
        while let Some(first) = rx.recv().await {
            buf.clear();
            let mut n = 0;
            let mut next = Some(first);
            // Coalesce the answers that are ready into one write.
            while let Some((id, resp)) = next {
                n += 1;
                if encode_frame(&mut buf, id, &resp, limits.response_bytes).is_err() {
                    let refused = JobResponse::Refused {
                        reason: RefuseReason::TooLarge,
                        message: format!(
                            "the answer is over the stream's limit of {} bytes",
                            limits.response_bytes
                        ),
                    };
                    let _ = encode_frame(&mut buf, id, &refused, limits.response_bytes);
                }
                next = if buf.len() < 1 << 20 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if let Err(e) = write_frames(&mut wr, &buf).await {
                tracing::debug!(%peer, error = %e, "job stream write failed");
                permits.close();
                return;
            }
            permits.add_permits(n);
        }
    };
    tokio::join!(reader, writer);
}
