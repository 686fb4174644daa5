//! The submitter's side of the long-lived job stream: one task per host
//! opens the stream once, writes requests as they are queued (coalesced into
//! one write when several are ready) and reads answers in whatever order the
//! host sends them. When the stream ends, every request still unanswered
//! fails with the reason, so no caller waits for an answer that cannot come.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::AsyncReadExt;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::client::{ClientError, RequestId};
use crate::net::JOB_STREAM_PROTOCOL;
use crate::net::job_stream::{Frame, encode_frame, read_frame, write_frames};
use crate::proto::{JobRequest, JobResponse};

/// Requests queued for one host's stream before `send` fails at once.
pub(super) const QUEUE: usize = 1024;

/// An answer (or failure) for the client.
pub(super) type Answer = (RequestId, Result<JobResponse, ClientError>);

/// Streams opened before one is answered; the wait before the next
/// doubles from [`REOPEN_PAUSE`].
const OPEN_ATTEMPTS: u32 = 4;
/// The first pause before opening a stream again.
const REOPEN_PAUSE: Duration = Duration::from_millis(10);
/// How long the host may take to answer a new stream's hello.
const HELLO_WAIT: Duration = Duration::from_secs(30);
/// The request id of the hello (the client's own ids count up from 0).
const HELLO_ID: u64 = u64::MAX;

/// Opens the job stream and sees it answered once ([`JobRequest::Hello`])
/// before any job is written on it. A host takes inbound streams one at a
/// time, and libp2p-stream drops a stream that arrives while another still
/// waits to be taken (a host taking many connections at once, or a loaded
/// one): such a stream is reset before the host has read anything from it,
/// so opening it again cannot run anything twice. Without the hello the
/// jobs written on it would fail, and count against an honest host. A host
/// that refuses every stream (too many from this peer) fails after
/// [`OPEN_ATTEMPTS`].
async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    response_limit: usize,
) -> Result<libp2p::Stream, String> {
    let mut hello = Vec::new();
    encode_frame(&mut hello, HELLO_ID, &JobRequest::Hello, usize::MAX)
        .map_err(|e| e.to_string())?;
    let mut why = String::new();
    for attempt in 0..OPEN_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(REOPEN_PAUSE * (1 << (attempt - 1))).await;
        }
        let mut stream = control
            .open_stream(peer, JOB_STREAM_PROTOCOL)
            .await
            .map_err(|e| format!("cannot open the job stream: {e}"))?;
        if let Err(e) = write_frames(&mut stream, &hello).await {
            why = e.to_string();
            continue;
        }
        match tokio::time::timeout(HELLO_WAIT, read_frame(&mut stream, response_limit)).await {
            Ok(Ok(Some(Frame::Body { id: HELLO_ID, .. }))) => return Ok(stream),
            Ok(Ok(Some(_))) => {
                return Err("the host answered a new job stream's hello with another id".into());
            }
            Ok(Ok(None)) => why = "closed at once".into(),
            Ok(Err(e)) => why = e.to_string(),
            Err(_) => {
                return Err(format!(
                    "the host did not answer a new job stream within {} s",
                    HELLO_WAIT.as_secs()
                ));
            }
        }
        tracing::debug!(%peer, attempt, %why, "job stream closed before its hello was answered");
    }
    Err(format!(
        "the host closed the job stream {OPEN_ATTEMPTS} times before answering it (the last: {why})"
    ))
}

/// Runs one host's job stream until the client drops its sender or the
/// stream breaks.
pub(super) async fn run(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    mut rx: mpsc::Receiver<(RequestId, JobRequest)>,
    out: mpsc::UnboundedSender<Answer>,
    request_limit: usize,
    response_limit: usize,
) {
    let fail = |id: RequestId, reason: &str| {
        let _ = out.send((
            id,
            Err(ClientError::Request {
                peer,
                reason: reason.to_string(),
            }),
        ));
    };
    let stream = match open(&mut control, peer, response_limit).await {
        Ok(s) => s,
        Err(reason) => {
            rx.close();
            while let Some((id, _)) = rx.recv().await {
                fail(id, &reason);
            }
            return;
        }
    };
    let (mut rd, mut wr) = stream.split();
    let outstanding: Arc<Mutex<HashSet<RequestId>>> = Arc::default();
    let writer = async {
        let mut buf = Vec::new();
        while let Some(first) = rx.recv().await {
            buf.clear();
            let mut next = Some(first);
            while let Some((id, req)) = next {
                match encode_frame(&mut buf, id.0, &req, request_limit) {
                    Ok(()) => {
                        outstanding.lock().expect("outstanding").insert(id);
                    }
                    Err(e) => fail(id, &e.to_string()),
                }
                next = if buf.len() < 1 << 20 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if let Err(e) = write_frames(&mut wr, &buf).await {
                return format!("job stream write failed: {e}");
            }
        }
        "the client closed the stream".to_string()
    };
    let reader = async {
        loop {
            match read_frame(&mut rd, response_limit).await {
                Ok(Some(Frame::Body { id, body })) => {
                    let id = RequestId(id);
                    if !outstanding.lock().expect("outstanding").remove(&id) {
                        return format!("the host answered request {} twice or unasked", id.0);
                    }
                    let r = postcard::from_bytes(&body).map_err(|e| ClientError::Request {
                        peer,
                        reason: format!("garbled response: {e}"),
                    });
                    let _ = out.send((id, r));
                }
                Ok(Some(Frame::TooLarge { id, len })) => {
                    let id = RequestId(id);
                    if outstanding.lock().expect("outstanding").remove(&id) {
                        fail(
                            id,
                            &format!(
                                "response of {len} bytes is over the limit of {response_limit}"
                            ),
                        );
                    }
                }
                Ok(None) => return "the host closed the job stream".to_string(),
                Err(e) => return format!("job stream: {e}"),
            }
        }
    };
    let reason = tokio::select! {
        r = writer => r,
        r = reader => r,
    };
    tracing::debug!(%peer, %reason, "job stream ended");
    rx.close();
    while let Ok((id, _)) = rx.try_recv() {
        fail(id, &reason);
    }
    for id in outstanding.lock().expect("outstanding").drain() {
        fail(id, &reason);
    }
}
