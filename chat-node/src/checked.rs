//! A stream read and checked in batches, off the loop that uses it.
//!
//! A task reads the stream, takes every item that has already arrived (up
//! to a bound), hands the batch to a check (signatures, one per run of a
//! sender's consecutive messages: see `chat_proto::runs`), and passes the
//! checked items on in order through a bounded queue. Under load batches
//! grow, so the cost per message of a check by runs falls as the rate
//! rises, and the loop that uses the items never waits behind a check.

use std::pin::Pin;
use std::task::Poll;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::task::AbortOnDropHandle;
use tonic::{Status, Streaming};

/// Most items checked together.
pub const MAX_BATCH: usize = 512;
/// Checked items buffered towards the loop that uses them.
const CHECKED_CAPACITY: usize = 1024;

/// What the stream yielded: an item, its end, or why it broke.
pub type Read<T> = Option<Result<T, Status>>;

/// The checked items of one stream; dropping it stops the reader and
/// drops the stream (ending the call at the other side).
pub struct Checked<U> {
    rx: mpsc::Receiver<U>,
    _reader: AbortOnDropHandle<()>,
}

impl<U: Send + 'static> Checked<U> {
    /// Starts reading `stream`: each batch of what has arrived goes through
    /// `check`, which returns what to pass on (in order). Reading stops
    /// after the stream's end or error, which `check` sees last in its batch.
    pub fn start<T, F>(stream: Streaming<T>, check: F) -> Self
    where
        T: Send + 'static,
        Streaming<T>: Stream<Item = Result<T, Status>>,
        F: FnMut(&mut Vec<Read<T>>) -> Vec<U> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHECKED_CAPACITY);
        let reader = tokio::spawn(read(stream, check, tx));
        Self {
            rx,
            _reader: AbortOnDropHandle::new(reader),
        }
    }

    /// The next checked item; `None` once the reader stopped and every
    /// item it passed on was taken.
    pub async fn next(&mut self) -> Option<U> {
        self.rx.recv().await
    }
}

/// The next item if it has already arrived: `None` if it has not.
async fn ready<S: Stream + Unpin>(stream: &mut S) -> Option<Option<S::Item>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *stream).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(Some(item)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

async fn read<T, U, F>(mut stream: Streaming<T>, mut check: F, tx: mpsc::Sender<U>)
where
    Streaming<T>: Stream<Item = Result<T, Status>>,
    F: FnMut(&mut Vec<Read<T>>) -> Vec<U>,
{
    // Grows with what arrives at once (an idle session holds next to
    // nothing), up to MAX_BATCH.
    let mut batch = Vec::new();
    loop {
        let first = stream.next().await;
        let mut ended = !matches!(first, Some(Ok(_)));
        batch.push(first);
        while !ended && batch.len() < MAX_BATCH {
            let Some(item) = ready(&mut stream).await else {
                break;
            };
            ended = !matches!(item, Some(Ok(_)));
            batch.push(item);
        }
        let checked = check(&mut batch);
        batch.clear();
        for item in checked {
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
    }
}
