//! The request-response wire codec: one length-prefixed frame per request
//! and per response (a u32 big-endian length, then exactly that many bytes),
//! with the bytes passed through unchanged for the protocol crate to decode.
//!
//! A frame whose declared length exceeds its limit is refused from the
//! header alone, and the buffer grows only as bytes actually arrive, so a
//! peer that announces 8 MiB and sends nothing costs us nothing. Responses
//! pass through the node's [`Throttle`] in blocks: written ones at the upload
//! rate, read ones at the download rate.

use super::throttle::{RateLimit, Throttle, BLOCK_BYTES};
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::request_response;
use libp2p::StreamProtocol;
use std::io;
use waveguard_protocol::limits::{MAX_FRAME_BYTES, MAX_REQUEST_BYTES};

/// The request-response protocol name waveguard nodes speak.
pub const REQUEST_PROTOCOL: StreamProtocol = StreamProtocol::new("/waveguard/1/req");

/// Most bytes reserved up front for one frame: larger frames grow their
/// buffer as data arrives. 64 KiB covers every request and small response
/// in one allocation while bounding what a lying length prefix can cost.
pub const INITIAL_FRAME_CAPACITY: usize = 64 * 1024;

/// Reads and writes waveguard request and response frames.
///
/// The default limits are the protocol's: requests up to
/// [`MAX_REQUEST_BYTES`], responses up to [`MAX_FRAME_BYTES`]. Other limits
/// exist for tests that play a misbehaving peer.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_request: usize,
    max_response: usize,
    throttle: Throttle,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::with_limits(MAX_REQUEST_BYTES, MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    /// A codec refusing requests over `max_request` bytes and responses over
    /// `max_response` bytes, both when reading and when writing. Limits above
    /// `u32::MAX` act as `u32::MAX`, the most a length prefix can say.
    pub fn with_limits(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
            throttle: Throttle::default(),
        }
    }

    /// The same codec, pacing responses through `throttle`.
    pub fn with_throttle(self, throttle: Throttle) -> Self {
        Self { throttle, ..self }
    }

    /// The largest request this codec reads or writes.
    pub fn max_request(&self) -> usize {
        self.max_request
    }

    /// The largest response this codec reads or writes.
    pub fn max_response(&self) -> usize {
        self.max_response
    }
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<T>(io: &mut T, max: usize, kind: &str) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    read_paced_frame(io, max, kind, None).await
}

/// Reads one frame of at most `max` bytes, waiting for `pace` before each block.
pub async fn read_paced_frame<T>(
    io: &mut T,
    max: usize,
    kind: &str,
    pace: Option<&RateLimit>,
) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut header = [0u8; 4];
    io.read_exact(&mut header).await?;
    let declared = u32::from_be_bytes(header);
    // A length that does not fit usize certainly exceeds any limit.
    let len = usize::try_from(declared).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the peer announced a {kind} of {declared} bytes, over the limit of {max} bytes"
            ),
        ));
    }
    let mut data = Vec::with_capacity(len.min(INITIAL_FRAME_CAPACITY));
    // `take` stops at the declared length (and at each block when paced);
    // `read_to_end` grows the buffer only as bytes arrive.
    match pace {
        None => {
            io.take(u64::from(declared)).read_to_end(&mut data).await?;
        }
        Some(limit) => {
            while data.len() < len {
                let block = (len - data.len()).min(BLOCK_BYTES);
                limit.take(block).await;
                let before = data.len();
                (&mut *io).take(block as u64).read_to_end(&mut data).await?;
                if data.len() - before < block {
                    break; // the stream ended early; reported below
                }
            }
        }
    }
    if data.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the peer announced a {kind} of {len} bytes but closed the stream after {} bytes",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Writes one frame, refusing data over `max` bytes before writing anything.
pub async fn write_frame<T>(io: &mut T, data: &[u8], max: usize, kind: &str) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    write_paced_frame(io, data, max, kind, None).await
}

/// Writes one frame like [`write_frame`], waiting for `pace` before each block.
pub async fn write_paced_frame<T>(
    io: &mut T,
    data: &[u8],
    max: usize,
    kind: &str,
    pace: Option<&RateLimit>,
) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = match u32::try_from(data.len()) {
        Ok(len) if data.len() <= max => len,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refusing to send a {kind} of {} bytes, over the limit of {max} bytes",
                    data.len()
                ),
            ))
        }
    };
    io.write_all(&len.to_be_bytes()).await?;
    match pace {
        None => io.write_all(data).await?,
        Some(limit) => {
            for block in data.chunks(BLOCK_BYTES) {
                limit.take(block.len()).await;
                io.write_all(block).await?;
            }
        }
    }
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request, "request").await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_paced_frame(
            io,
            self.max_response,
            "response",
            self.throttle.download.as_ref(),
        )
        .await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_request, "request").await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_paced_frame(
            io,
            &res,
            self.max_response,
            "response",
            self.throttle.upload.as_ref(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;
    use proptest::prelude::*;

    /// A frame with the given declared length and body.
    fn frame(declared: u32, body: &[u8]) -> Vec<u8> {
        let mut out = declared.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn read(bytes: Vec<u8>, max: usize) -> io::Result<Vec<u8>> {
        block_on(read_frame(&mut Cursor::new(bytes), max, "request"))
    }

    fn write(data: &[u8], max: usize) -> io::Result<Vec<u8>> {
        let mut out = Cursor::new(Vec::new());
        block_on(write_frame(&mut out, data, max, "request"))?;
        Ok(out.into_inner())
    }

    #[test]
    fn frames_are_a_big_endian_length_then_the_bytes() {
        assert_eq!(write(b"hello", 16).unwrap(), frame(5, b"hello"));
        assert_eq!(write(b"", 16).unwrap(), vec![0, 0, 0, 0]);
    }

    #[test]
    fn a_frame_at_the_limit_is_read() {
        let body = vec![7u8; 1000];
        assert_eq!(read(frame(1000, &body), 1000).unwrap(), body);
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_from_the_header() {
        // Only the header is present: refusal must not wait for the body.
        let err = read(frame(1001, &[]), 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("1001 bytes"), "{err}");
        let err = read(frame(u32::MAX, &[]), MAX_FRAME_BYTES).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_short_body_is_an_unexpected_end() {
        let err = read(frame(10, b"abc"), 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read(vec![0, 0], 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn bytes_after_the_frame_are_not_read() {
        let mut cursor = Cursor::new(frame(3, b"abcdef"));
        let got = block_on(read_frame(&mut cursor, 10, "request")).unwrap();
        assert_eq!(got, b"abc");
        assert_eq!(cursor.position(), 7);
    }

    #[test]
    fn writing_over_the_limit_is_refused_before_any_byte() {
        let mut out = Cursor::new(Vec::new());
        let err = block_on(write_frame(&mut out, &[0; 11], 10, "response")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.into_inner().is_empty());
    }

    #[test]
    fn the_default_codec_uses_the_protocol_limits() {
        let mut codec = FrameCodec::default();
        assert_eq!(codec.max_request(), MAX_REQUEST_BYTES);
        assert_eq!(codec.max_response(), MAX_FRAME_BYTES);
        let big = frame(MAX_REQUEST_BYTES as u32 + 1, &[]);
        let err = block_on(codec.read_request(&REQUEST_PROTOCOL, &mut Cursor::new(big)));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A response may be much larger than a request.
        let body = vec![1u8; MAX_REQUEST_BYTES + 1];
        let ok = frame(body.len() as u32, &body);
        let got = block_on(codec.read_response(&REQUEST_PROTOCOL, &mut Cursor::new(ok)));
        assert_eq!(got.unwrap(), body);
        let over = frame(MAX_FRAME_BYTES as u32 + 1, &[]);
        let err = block_on(codec.read_response(&REQUEST_PROTOCOL, &mut Cursor::new(over)));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn paced_frames_round_trip_block_by_block() {
        let limit = RateLimit::new(std::num::NonZeroU64::new(1 << 30).unwrap());
        // Not a multiple of the block size, so the last block is short.
        let data: Vec<u8> = (0..(3 * BLOCK_BYTES + 777)).map(|i| i as u8).collect();
        let mut out = Cursor::new(Vec::new());
        block_on(write_paced_frame(
            &mut out,
            &data,
            1 << 20,
            "response",
            Some(&limit),
        ))
        .unwrap();
        let bytes = out.into_inner();
        assert_eq!(bytes, frame(data.len() as u32, &data));
        let got = block_on(read_paced_frame(
            &mut Cursor::new(bytes.clone()),
            1 << 20,
            "response",
            Some(&limit),
        ));
        assert_eq!(got.unwrap(), data);
        // A paced read of a short body is still an unexpected end.
        let short = bytes[..bytes.len() - 1].to_vec();
        let err = block_on(read_paced_frame(
            &mut Cursor::new(short),
            1 << 20,
            "response",
            Some(&limit),
        ));
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                       max in 0usize..5000) {
            match write(&data, max) {
                Ok(bytes) => {
                    prop_assert!(data.len() <= max);
                    prop_assert_eq!(bytes.len(), data.len() + 4);
                    prop_assert_eq!(read(bytes, max).unwrap(), data);
                }
                Err(_) => prop_assert!(data.len() > max),
            }
        }
    }
}
