//! One client connection: read frames, run each request's first stage in arrival order, and write
//! responses in request order while later stages (durability waits, long polls) run concurrently.
//!
//! The reader decodes a frame and calls [`crate::handlers::handle`], which does what must happen in
//! order right away (a produce is appended here) and returns a [`Pending`] response. Pending
//! responses go through a bounded queue (`queued.max.requests`) to the writer, which awaits them
//! one by one, so responses leave in request order. A full queue stops the reader: backpressure.
//!
//! Memory per connection is bounded too: before a Fetch is handled, the reader takes
//! `fetch.max.bytes` from the connection's response budget (twice that in all), in arrival order,
//! and the writer gives it back once the response is written. A client that pipelines fetches and
//! never reads its socket therefore holds at most two fetch responses in the broker. Taking the
//! budget in the reader, in order, is what keeps this free of deadlock: a later fetch can never hold
//! budget that an earlier one, which must be written first, is waiting for.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use caudal_protocol::frame::frame_codec;
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// What a request produces for the writer.
pub enum Pending {
    /// The response is ready; `None` means the request gets no response (produce with acks=0).
    Ready(Option<Bytes>),
    /// The response is being computed by a task.
    Later(JoinHandle<Outcome>),
    /// The connection must close (a request that cannot be answered in its protocol).
    Close(String),
}

/// The final result of one request: a response, no response, or closing the connection.
pub type Outcome = Result<Option<Bytes>, String>;

/// Serves one connection until the client closes it, it misbehaves, or the broker shuts down.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    tracing::debug!(%peer, "connection opened");
    let (reader, writer) = stream.into_split();
    let mut frames = FramedRead::new(reader, frame_codec(broker.config.request_bytes_max));
    let (sender, receiver) = mpsc::channel::<Queued>(broker.config.queued_requests_max);
    // Cancelled when the connection is gone for good: pending work is abandoned, not awaited.
    let closed = CancellationToken::new();
    let writer_task = tokio::spawn(write_responses(writer, receiver, peer, closed.clone()));
    let fetch_budget = broker.config.fetch_bytes_max;
    let response_budget = Arc::new(Semaphore::new(2 * fetch_budget as usize));
    let shutdown = broker.shutdown.clone();
    let mut abandon = true;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => { abandon = false; break }
            frame = frames.next() => frame,
        };
        match frame {
            None => break,
            Some(Err(error)) => {
                tracing::warn!(%peer, %error, "closing connection: unreadable frame");
                break;
            }
            Some(Ok(frame)) => {
                let budget = if is_fetch(&frame) {
                    tokio::select! {
                        _ = shutdown.cancelled() => { abandon = false; break }
                        permit = response_budget.clone().acquire_many_owned(fetch_budget) => {
                            match permit {
                                Ok(permit) => Some(permit),
                                Err(_) => break,
                            }
                        }
                    }
                } else {
                    None
                };
                let pending = crate::handlers::handle(&broker, frame.freeze(), peer);
                if let Pending::Close(reason) = &pending {
                    tracing::warn!(%peer, %reason, "closing connection");
                }
                let closing = matches!(pending, Pending::Close(_));
                let sent = tokio::select! {
                    _ = shutdown.cancelled() => { abandon = false; break }
                    sent = sender.send((pending, budget)) => sent.is_ok(),
                };
                if !sent {
                    break;
                }
                if closing {
                    // The writer sends what came before, then closes.
                    abandon = false;
                    break;
                }
            }
        }
    }
    if abandon {
        // The client left (or sent bytes we cannot read): nobody will read the responses, so
        // long polls and other pending work are cancelled instead of awaited.
        closed.cancel();
    }
    drop(sender);
    if let Err(error) = writer_task.await {
        tracing::error!(%peer, %error, "response writer failed");
    }
    tracing::debug!(%peer, "connection closed");
}

/// A pending response and the response budget it holds until written.
type Queued = (Pending, Option<OwnedSemaphorePermit>);

/// True when the frame is a Fetch request (API key 1).
fn is_fetch(frame: &[u8]) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == 1
}

async fn write_responses(
    writer: OwnedWriteHalf,
    mut receiver: mpsc::Receiver<Queued>,
    peer: SocketAddr,
    closed: CancellationToken,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    loop {
        let next = tokio::select! {
            _ = closed.cancelled() => None,
            next = receiver.recv() => next,
        };
        let Some((pending, _budget)) = next else {
            break;
        };
        let outcome = match pending {
            Pending::Ready(response) => Ok(response),
            Pending::Later(task) => {
                // Responses written so far go out before waiting on one that is not ready.
                if !task.is_finished() && writer.flush().await.is_err() {
                    task.abort();
                    break;
                }
                let abort = task.abort_handle();
                tokio::select! {
                    _ = closed.cancelled() => {
                        abort.abort();
                        break;
                    }
                    joined = task => match joined {
                        Ok(outcome) => outcome,
                        Err(error) => Err(format!("request task failed: {error}")),
                    },
                }
            }
            Pending::Close(_) => break,
        };
        match outcome {
            Ok(Some(response)) => {
                if let Err(error) = writer.write_all(&response).await {
                    tracing::debug!(%peer, %error, "client went away");
                    break;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
        }
        if receiver.is_empty()
            && let Err(error) = writer.flush().await
        {
            tracing::debug!(%peer, %error, "client went away");
            break;
        }
    }
    // Whatever is still queued will never be written: stop its work.
    receiver.close();
    while let Ok((pending, _)) = receiver.try_recv() {
        if let Pending::Later(task) = pending {
            task.abort();
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}
