//! The submitter's side of the long-lived job stream: one task per host
//! opens the stream once, writes requests as they are queued (coalesced into
//! one write when several are ready) and reads answers in whatever order the
//! host sends them. When the stream ends, every request still unanswered
//! fails with the reason, so no caller waits for an answer that cannot come.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
    let stream = match control.open_stream(peer, JOB_STREAM_PROTOCOL).await {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("cannot open the job stream: {e}");
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
