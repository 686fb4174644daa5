//! The request-response codec of both protocols: a 4-byte little-endian
//! length, then a postcard body. Sizes are checked before anything is read
//! into memory.
//!
//! An inbound request that is too large or does not decode is not an I/O
//! error: it reaches the host as [`Inbound::TooLarge`] or
//! [`Inbound::Malformed`], so the host can answer with a specific refusal on
//! the same stream and keep serving.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A request as it arrived.
#[derive(Debug, Clone)]
pub enum Inbound<T> {
    /// Decoded.
    Ok(T),
    /// Announced more bytes than the limit; the body was not read.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The body did not decode.
    Malformed(String),
}

/// Size limits of one protocol.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body in bytes.
    pub request: usize,
    /// Largest response body in bytes.
    pub response: usize,
}

/// The codec, generic over the message types.
pub struct Codec<Req, Resp> {
    limits: Limits,
    _p: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec with these limits.
    pub fn new(limits: Limits) -> Self {
        Codec {
            limits,
            _p: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Codec::new(self.limits)
    }
}

/// Oversized bodies up to this length are read and dropped so the sender
/// gets a `too_large` answer; a larger announcement resets the stream.
const DISCARD_MAX: u64 = 64 << 20;

enum Frame {
    Body(Vec<u8>),
    TooLarge(u64),
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Frame> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as u64;
    if len > limit as u64 {
        // The sender is still writing the body and will not read our answer
        // until it is done. Drop up to DISCARD_MAX bytes unread-into-memory
        // so a specific refusal can go back; beyond that, reset the stream.
        if len > DISCARD_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("message of {len} bytes is far over the limit of {limit}"),
            ));
        }
        futures::io::copy(&mut io.take(len), &mut futures::io::sink()).await?;
        return Ok(Frame::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    io.read_exact(&mut body).await?;
    Ok(Frame::Body(body))
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    body: &[u8],
    limit: usize,
) -> io::Result<()> {
    if body.len() > limit || body.len() > u32::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is over the limit of {limit}",
                body.len()
            ),
        ));
    }
    io.write_all(&(body.len() as u32).to_le_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

impl<Req, Resp> libp2p::request_response::Codec for Codec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Inbound<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match read_frame(io, self.limits.request).await? {
            Frame::TooLarge(len) => Inbound::TooLarge {
                len,
                limit: self.limits.request as u64,
            },
            Frame::Body(b) => match postcard::from_bytes(&b) {
                Ok(r) => Inbound::Ok(r),
                Err(e) => Inbound::Malformed(e.to_string()),
            },
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.limits.response).await? {
            Frame::TooLarge(len) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "response of {len} bytes is over the limit of {}",
                    self.limits.response
                ),
            )),
            Frame::Body(b) => postcard::from_bytes(&b).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("garbled response: {e}"))
            }),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Inbound<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let Inbound::Ok(req) = req else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only decoded requests can be sent",
            ));
        };
        let body = postcard::to_stdvec(&req).map_err(io::Error::other)?;
        write_frame(io, &body, self.limits.request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = postcard::to_stdvec(&res).map_err(io::Error::other)?;
        write_frame(io, &body, self.limits.response).await
    }
}
