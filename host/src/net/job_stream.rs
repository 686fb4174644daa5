//! `/biop2p/jobs/1.0.0`: the job protocol on one long-lived stream per
//! submitter and host, with its own framing, request ids and pipelining.
//!
//! Request-response opens a fresh stream per request, and each stream costs
//! a multistream-select round trip before its first byte: about 200 µs of
//! the job latency on loopback. A stream opened once per connection pays it
//! once; after that a job costs one frame each way.
//!
//! A frame is a 4-byte little-endian length, then an 8-byte little-endian
//! request id chosen by the submitter, then a postcard body ([`JobRequest`]
//! from the submitter, [`JobResponse`] from the host). Responses carry the
//! id of their request and may come in any order, so many jobs are in flight
//! on one stream. Sizes are checked before anything is read into memory; a
//! frame over the limit is answered (`too_large`) by id when its body is
//! small enough to skip, otherwise the stream is closed.
//!
//! [`JobRequest`]: crate::proto::JobRequest
//! [`JobResponse`]: crate::proto::JobResponse

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The long-lived job stream.
pub const JOB_STREAM_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/jobs/1.0.0");

/// Bytes of the request id at the start of every frame.
const ID_BYTES: usize = 8;

/// Oversized frames up to this length are skipped so the sender gets a
/// `too_large` answer; a larger announcement closes the stream (reading it
/// would let a peer make the host read without bound).
pub const DISCARD_MAX: u64 = 64 << 20;

/// A frame as it arrived.
#[derive(Debug)]
pub enum Frame {
    /// A frame within the limit: its id and body.
    Body {
        /// The request id.
        id: u64,
        /// The postcard body.
        body: Vec<u8>,
    },
    /// A frame over the limit, skipped unread-into-memory.
    TooLarge {
        /// The request id.
        id: u64,
        /// The announced length.
        len: u64,
    },
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    limit: usize,
) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match io.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u64::from(u32::from_le_bytes(len));
    if len < ID_BYTES as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is shorter than its {ID_BYTES}-byte id"),
        ));
    }
    let mut id = [0u8; ID_BYTES];
    io.read_exact(&mut id).await?;
    let id = u64::from_le_bytes(id);
    let body_len = len - ID_BYTES as u64;
    if body_len > limit as u64 {
        if len > DISCARD_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is far over the limit of {limit}"),
            ));
        }
        futures::io::copy(&mut io.take(body_len), &mut futures::io::sink()).await?;
        return Ok(Some(Frame::TooLarge { id, len: body_len }));
    }
    let mut body = vec![0u8; body_len as usize];
    io.read_exact(&mut body).await?;
    Ok(Some(Frame::Body { id, body }))
}

/// Encodes one frame (length, id, postcard body) into `buf`, checking the
/// body against `limit`.
pub fn encode_frame<M: serde::Serialize>(
    buf: &mut Vec<u8>,
    id: u64,
    msg: &M,
    limit: usize,
) -> io::Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4 + ID_BYTES]);
    let buf2 = std::mem::take(buf);
    let mut out = postcard::to_extend(msg, buf2).map_err(io::Error::other)?;
    let body = out.len() - start - 4 - ID_BYTES;
    if body > limit || body + ID_BYTES > u32::MAX as usize {
        out.truncate(start);
        *buf = out;
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {body} bytes is over the limit of {limit}"),
        ));
    }
    out[start..start + 4].copy_from_slice(&((body + ID_BYTES) as u32).to_le_bytes());
    out[start + 4..start + 4 + ID_BYTES].copy_from_slice(&id.to_le_bytes());
    *buf = out;
    Ok(())
}

/// Writes frames already encoded, and flushes.
pub async fn write_frames<T: AsyncWrite + Unpin>(io: &mut T, buf: &[u8]) -> io::Result<()> {
    io.write_all(buf).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_skipped_by_id() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            encode_frame(&mut buf, 7, &"hello".to_string(), 100).unwrap();
            encode_frame(&mut buf, 8, &vec![1u8; 300], 1000).unwrap();
            encode_frame(&mut buf, 9, &"after".to_string(), 100).unwrap();
            let mut io = futures::io::Cursor::new(buf);
            match read_frame(&mut io, 100).await.unwrap().unwrap() {
                Frame::Body { id, body } => {
                    assert_eq!(id, 7);
                    assert_eq!(postcard::from_bytes::<String>(&body).unwrap(), "hello");
                }
                f => panic!("{f:?}"),
            }
            assert!(matches!(
                read_frame(&mut io, 100).await.unwrap().unwrap(),
                Frame::TooLarge { id: 8, .. }
            ));
            assert!(matches!(
                read_frame(&mut io, 100).await.unwrap().unwrap(),
                Frame::Body { id: 9, .. }
            ));
            assert!(read_frame(&mut io, 100).await.unwrap().is_none());
        });
    }

    #[test]
    fn a_frame_shorter_than_its_id_or_far_too_long_is_an_error() {
        futures::executor::block_on(async {
            let mut io = futures::io::Cursor::new(3u32.to_le_bytes().to_vec());
            assert!(read_frame(&mut io, 100).await.is_err());
            let mut huge = u32::MAX.to_le_bytes().to_vec();
            huge.extend_from_slice(&[0; 8]);
            let mut io = futures::io::Cursor::new(huge);
            assert!(read_frame(&mut io, 100).await.is_err());
        });
    }

    #[test]
    fn a_message_over_the_limit_is_not_encoded() {
        let mut buf = vec![1, 2, 3];
        assert!(encode_frame(&mut buf, 1, &vec![0u8; 200], 100).is_err());
        assert_eq!(buf, vec![1, 2, 3], "nothing half-written");
    }
}
