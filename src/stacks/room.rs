//! The broadcast room of [`Service::Broadcast`]: every text or binary
//! message a connection sends goes to every connection of the room, the
//! sender included (its own copy is its acknowledgement), in the order the
//! room took the messages in.
//!
//! Two queueing structures, because the libraries' own examples show both,
//! and they decide what one slow consumer does to the rest:
//!
//! - [`Room`]: one unbounded queue per connection (tokio-tungstenite's
//!   examples/server.rs keeps a map of such senders). Publishing never
//!   waits; a connection that stops reading holds its messages until
//!   memory runs out.
//! - a [`tokio::sync::broadcast`] channel (axum's examples/chat): one ring
//!   of [`BROADCAST_CAPACITY`] messages (tokio rounds it up to a power of
//!   two: 128) shared by all; a connection that falls that far behind gets
//!   `Lagged` and is closed, as the example's `while let Ok(..) =
//!   rx.recv().await` does.
//!
//! Either way the message is cloned per connection, not serialized: each
//! library frames it again on every connection's write; where the
//! payload is `Bytes` the clone shares it.
//!
//! Each connection's writer follows [`EchoPolicy`]: flush-each sends and
//! flushes every message (`sink.send(msg).await`, as axum's chat example
//! does); batched feeds every message already queued and flushes when the
//! queue is empty (what `forward`, in tokio-tungstenite's server example,
//! does). [`write_queue`] and [`write_ring`] are those loops for a
//! library whose socket is a `futures` `Sink`.
//!
//! A stack's notes say which structure it uses, and why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{Sink, SinkExt};
use tokio::sync::{broadcast, mpsc};

use crate::settings::EchoPolicy;
#[cfg(doc)]
use crate::settings::Service;

/// Messages a broadcast channel holds for its slowest receiver before
/// that receiver lags: axum's chat example's 100 (which tokio rounds up to
/// 128).
pub const BROADCAST_CAPACITY: usize = 100;

/// Writes what `rx` brings to `sink` under `policy` until the room or the
/// sink ends.
pub async fn write_queue<S, M>(mut sink: S, mut rx: mpsc::UnboundedReceiver<M>, policy: EchoPolicy)
where
    S: Sink<M> + Unpin,
{
    while let Some(msg) = rx.recv().await {
        let written = match policy {
            EchoPolicy::FlushEach => sink.send(msg).await.is_ok(),
            EchoPolicy::Batched => {
                let mut fed = sink.feed(msg).await.is_ok();
                while let (true, Ok(more)) = (fed, rx.try_recv()) {
                    fed = sink.feed(more).await.is_ok();
                }
                fed && sink.flush().await.is_ok()
            }
        };
        if !written {
            return;
        }
    }
}

/// Writes what the broadcast channel brings to `sink` under `policy`;
/// ends, closing nothing itself, when the sink fails or the connection
/// lags behind the ring (the caller then drops the connection, as the
/// examples' `while let Ok(msg) = rx.recv().await` does). A `Lagged` from
/// `try_recv` ends it too: tokio reports a lag once, moving the receiver
/// past the lost messages, so the next `recv` would not.
pub async fn write_ring<S, M>(mut sink: S, mut rx: broadcast::Receiver<M>, policy: EchoPolicy)
where
    S: Sink<M> + Unpin,
    M: Clone,
{
    while let Ok(msg) = rx.recv().await {
        let written = match policy {
            EchoPolicy::FlushEach => sink.send(msg).await.is_ok(),
            EchoPolicy::Batched => {
                let mut fed = sink.feed(msg).await.is_ok();
                while fed {
                    match rx.try_recv() {
                        Ok(more) => fed = sink.feed(more).await.is_ok(),
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        Err(_) => return,
                    }
                }
                fed && sink.flush().await.is_ok()
            }
        };
        if !written {
            return;
        }
    }
}

/// A room with one unbounded queue per connection.
pub struct Room<M> {
    members: Mutex<Vec<(u64, mpsc::UnboundedSender<M>)>>,
    next_id: AtomicU64,
}

impl<M: Clone> Room<M> {
    pub fn new() -> Arc<Room<M>> {
        Arc::new(Room {
            members: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Adds a connection: its messages come out of the receiver, and
    /// dropping the member leaves the room.
    pub fn join(self: &Arc<Self>) -> (Member<M>, mpsc::UnboundedReceiver<M>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.members.lock().expect("room lock").push((id, tx));
        let member = Member {
            room: Arc::clone(self),
            id,
        };
        (member, rx)
    }

    /// Queues `msg` for every member, the sender included. The lock is
    /// held for the whole loop, so every member gets every message in the
    /// same order.
    pub fn publish(&self, msg: M) {
        let members = self.members.lock().expect("room lock");
        for (_, tx) in members.iter() {
            // A member whose writer has ended is leaving; its error is not
            // the sender's.
            let _ = tx.send(msg.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.members.lock().expect("room lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connection's place in a [`Room`].
pub struct Member<M> {
    room: Arc<Room<M>>,
    id: u64,
}

impl<M> Drop for Member<M> {
    fn drop(&mut self) {
        if let Ok(mut members) = self.room.members.lock() {
            members.retain(|(id, _)| *id != self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_gets_every_message_in_order_and_leaving_stops_it() {
        let room = Room::<u32>::new();
        let (_a, mut a_rx) = room.join();
        let (b, mut b_rx) = room.join();
        room.publish(1);
        room.publish(2);
        assert_eq!(b_rx.try_recv().ok(), Some(1));
        assert_eq!(b_rx.try_recv().ok(), Some(2));
        assert_eq!(a_rx.try_recv().ok(), Some(1));
        assert_eq!(a_rx.try_recv().ok(), Some(2));
        drop(b);
        assert_eq!(room.len(), 1);
        room.publish(3);
        assert_eq!(a_rx.try_recv().ok(), Some(3));
        assert!(b_rx.try_recv().is_err());
    }
}
