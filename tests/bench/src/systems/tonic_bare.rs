//! The bare tonic ceiling: a bidirectional-stream broadcast server with no
//! ids, no log and no migration, and its clients. What one session sends is
//! forwarded to every subscribed session through a tokio broadcast channel
//! (a lagging subscriber skips what it missed).
//!
//! Started with a log (scenario G), the server also keeps every frame and
//! replays them all, in order, to a session that asks (`x-replay: 1`)
//! before following the broadcast: the least a server of history does.

use crate::pb::broadcast_client::BroadcastClient;
use crate::pb::broadcast_server::{Broadcast, BroadcastServer};
use crate::pb::Frame;
use crate::stats::Probe;
use crate::{BenchError, Result};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Frames the server buffers for its slowest subscriber.
const CHANNEL_CAPACITY: usize = 65_536;
/// Metadata key by which a publisher declines to receive.
const SUBSCRIBE_KEY: &str = "x-subscribe";
/// Metadata key by which a subscriber asks for the log first.
const REPLAY_KEY: &str = "x-replay";
/// Frames of the log cloned per lock while replaying.
const REPLAY_CHUNK: usize = 128;

/// Every frame received, in order (only when started with a log).
type Log = Arc<RwLock<Vec<Frame>>>;

/// The broadcast service.
struct Hub {
    tx: broadcast::Sender<Frame>,
    log: Option<Log>,
}

/// The log from the start, a chunk per read lock, ending where the log
/// ended when the replay started.
fn replay(log: Log) -> FrameStream {
    let end = log.read().map_or(0, |l| l.len());
    let chunks = futures_util::stream::unfold(0usize, move |at| {
        let log = log.clone();
        async move {
            if at >= end {
                return None;
            }
            let upto = (at + REPLAY_CHUNK).min(end);
            let chunk: Vec<Frame> = log.read().ok()?.get(at..upto)?.to_vec();
            Some((futures_util::stream::iter(chunk.into_iter().map(Ok)), upto))
        }
    });
    Box::pin(futures_util::StreamExt::flatten(chunks))
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Broadcast for Hub {
    type SessionStream = FrameStream;

    async fn session(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<FrameStream>, Status> {
        let subscribe = req
            .metadata()
            .get(SUBSCRIBE_KEY)
            .is_none_or(|v| v.as_bytes() != b"0");
        // Subscribe before answering: once the client has the response, it
        // receives everything sent after.
        let replayed = match (&self.log, req.metadata().get(REPLAY_KEY)) {
            (Some(log), Some(v)) if v.as_bytes() == b"1" => Some(replay(log.clone())),
            _ => None,
        };
        let rx = subscribe.then(|| self.tx.subscribe());
        let tx = self.tx.clone();
        let log = self.log.clone();
        let mut inbound = req.into_inner();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = inbound.message().await {
                if let Some(log) = &log {
                    if let Ok(mut log) = log.write() {
                        log.push(frame.clone());
                    }
                }
                // No subscriber is not an error.
                let _ = tx.send(frame);
            }
            let _ = done_tx.send(());
        });
        let out: FrameStream = match rx {
            Some(rx) => {
                let live = BroadcastStream::new(rx).filter_map(|r| r.ok().map(Ok));
                match replayed {
                    Some(old) => Box::pin(old.chain(live)),
                    None => Box::pin(live),
                }
            }
            // A publisher's response ends once everything it sent is in.
            None => Box::pin(futures_util::stream::once(done_rx).filter_map(|_| None)),
        };
        Ok(Response::new(out))
    }
}

/// Serves the broadcast service on `listener` until `shutdown` completes,
/// with tonic's default socket options (`TCP_NODELAY` on accepted
/// connections, as `Server::serve` would set); with `keep_log`, every frame
/// is kept for replays.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    keep_log: bool,
) -> Result<()> {
    let hub = Hub {
        tx: broadcast::channel(CHANNEL_CAPACITY).0,
        log: keep_log.then(Log::default),
    };
    tonic::transport::Server::builder()
        .add_service(BroadcastServer::new(hub))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

pub(crate) async fn connect(addr: &str) -> Result<BroadcastClient<Channel>> {
    Ok(BroadcastClient::connect(format!("http://{addr}")).await?)
}

/// Opens a subscribing session (its own connection); returns once the
/// server has subscribed it.
pub async fn subscribe(
    addr: &str,
    mut probe: Probe,
    cancel: CancellationToken,
) -> Result<JoinHandle<Probe>> {
    let mut client = connect(addr).await?;
    let (tx, rx) = mpsc::channel::<Frame>(1);
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    Ok(tokio::spawn(async move {
        let _open = tx;
        loop {
            tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(frame)) => probe.on_payload(&frame.payload),
                    _ => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        probe
    }))
}

/// Opens a session that first receives the server's log (it must have
/// been started with one), then the broadcast.
pub async fn replaying(addr: &str) -> Result<(mpsc::Sender<Frame>, Streaming<Frame>)> {
    let mut client = connect(addr).await?;
    let (tx, rx) = mpsc::channel::<Frame>(1);
    let mut req = Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert(REPLAY_KEY, tonic::metadata::MetadataValue::from_static("1"));
    let inbound = client.session(req).await?.into_inner();
    Ok((tx, inbound))
}

/// A publishing session that receives nothing.
pub struct TonicPublisher {
    tx: mpsc::Sender<Frame>,
    inbound: Streaming<Frame>,
}

impl TonicPublisher {
    /// Opens the session (its own connection).
    pub async fn connect(addr: &str) -> Result<Self> {
        let mut client = connect(addr).await?;
        let (tx, rx) = mpsc::channel(1024);
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut().insert(
            SUBSCRIBE_KEY,
            tonic::metadata::MetadataValue::from_static("0"),
        );
        let inbound = client.session(req).await?.into_inner();
        Ok(TonicPublisher { tx, inbound })
    }

    /// Sends one payload.
    pub async fn publish(&mut self, payload: String) -> Result<()> {
        self.send(Frame {
            payload: payload.into(),
            signed: None,
        })
        .await
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: Frame) -> Result<()> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| BenchError::Setup("tonic publisher stream closed".into()))
    }

    /// Ends the stream and waits until the server has every frame.
    pub async fn close(self) {
        let TonicPublisher { tx, mut inbound } = self;
        drop(tx);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), inbound.message()).await;
    }
}
