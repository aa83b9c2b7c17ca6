//! Frames one at a time, outside any measurement: what the probe and the
//! tests use to send fragments, pings, malformed input and close frames,
//! and to read whatever comes back. Every wait is bounded by the
//! connection's stall timeout.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, FrameReader};
use super::conn::Connection;
use super::error::{ClientError, ErrorKind};
use super::tokio_driver;
use super::wire;
use crate::stacks::Protocol;

/// The close code the client sends and expects back.
const CLOSE_NORMAL: u16 = 1000;

impl Connection {
    /// Sends one frame as given (tests and the probe use this to send
    /// fragments, pings and malformed frames). WebSocket only.
    pub async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let frame = wire::client_frame(fin, opcode, payload, self.mask);
        self.send_raw(&frame).await
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let r = tokio::time::timeout(self.stall_timeout, self.stream.write_all(bytes)).await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(self.err(ErrorKind::Send { seq: None, source })),
            Err(_) => Err(self.err(ErrorKind::SendBlocked {
                after: self.stall_timeout,
            })),
        }
    }

    /// Reads the next whole message or control frame (fragments joined),
    /// within the stall timeout. Returns its opcode (text or binary for a
    /// reassembled message) and payload.
    pub async fn recv_frame(&mut self) -> Result<(u8, Vec<u8>), ClientError> {
        let read = tokio_driver::recv_frame(
            &mut self.recv,
            &mut self.stream,
            FrameReader::new(self.protocol),
        );
        match tokio::time::timeout(self.stall_timeout, read).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(kind)) => Err(self.err(kind)),
            Err(_) => Err(self.err(ErrorKind::NothingReceived {
                after: self.stall_timeout,
            })),
        }
    }

    /// Sends a ping and waits for the matching pong.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        self.send_frame(true, wire::OP_PING, payload).await?;
        let (opcode, got) = self.recv_frame().await?;
        if opcode != wire::OP_PONG {
            return Err(self.err(ErrorKind::NotPong { opcode }));
        }
        if got != payload {
            return Err(self.err(ErrorKind::PongPayload));
        }
        Ok(())
    }

    /// Completes the close handshake: sends close 1000, waits for the
    /// server's close frame and then for the end of the stream. For raw TCP,
    /// shuts down writing and waits for the end of the stream.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.exchange_close_frames().await?;
        let mut rest = [0u8; 64];
        match tokio::time::timeout(self.stall_timeout, self.stream.read(&mut rest)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(_)) => Err(self.err(ErrorKind::DataAfterClose)),
            Err(_) => Err(self.err(ErrorKind::NoTcpClose)),
        }
    }

    /// The close handshake without waiting for the server to close TCP,
    /// for benches that close thousands of connections: some servers
    /// (actix-web) keep the socket open a second longer, which the tests
    /// and the probe report, but which is no reason to end a measurement.
    pub async fn close_handshake(mut self) -> Result<(), ClientError> {
        self.exchange_close_frames().await
    }

    async fn exchange_close_frames(&mut self) -> Result<(), ClientError> {
        if self.protocol == Protocol::WebSocket {
            self.send_frame(true, wire::OP_CLOSE, &CLOSE_NORMAL.to_be_bytes())
                .await?;
            loop {
                let (opcode, payload) = self.recv_frame().await?;
                if opcode == wire::OP_CLOSE {
                    match codec::close_code(&payload) {
                        Some(code) if code != CLOSE_NORMAL => {
                            return Err(self.err(ErrorKind::CloseCode { code }))
                        }
                        _ => break,
                    }
                }
            }
        } else {
            let _ = self.stream.shutdown().await;
        }
        Ok(())
    }
}
