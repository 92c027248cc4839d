//! Group commit: concurrent callers' writes gathered into one transaction.
//!
//! A caller [`submit`](GroupCommit::submit)s an item and waits for its answer.
//! One dispatcher task takes a writer permit, then the first waiting item and
//! whatever else is already queued (up to `max_batch`), and hands that batch to
//! the write function on a task of its own. While every writer is busy new
//! items queue, so batches grow with the load by themselves and a lone caller
//! waits for nothing but its own write: no timer, no linger. The write function
//! answers each item of its batch, in order; what it commits is its business
//! (one transaction for the batch is the point).

use std::{future::Future, sync::Arc};

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Items queued beyond the batches being written; `submit` waits when full.
const QUEUE: usize = 4096;

/// The write path shared by concurrent callers; cheap to clone.
pub struct GroupCommit<T, R> {
    queue: mpsc::Sender<(T, oneshot::Sender<R>)>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the dispatcher: at most `writers` batches are written at once,
    /// each of at most `max_batch` items. `write` answers every item of a batch,
    /// in order (an item it does not answer sees [`Closed`]). The dispatcher
    /// stops when the last handle is dropped, after the batches in hand.
    pub fn start<F, Fut>(writers: usize, max_batch: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (queue, mut rx) = mpsc::channel::<(T, oneshot::Sender<R>)>(QUEUE);
        let permits = Arc::new(Semaphore::new(writers.max(1)));
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            loop {
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                if rx.recv_many(&mut batch, max_batch).await == 0 {
                    return;
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.drain(..).unzip();
                let written = write(items);
                tokio::spawn(async move {
                    for (answer, reply) in written.await.into_iter().zip(replies) {
                        // The caller may have given up (its request was cancelled).
                        let _ = reply.send(answer);
                    }
                    drop(permit);
                });
            }
        });
        Self { queue }
    }

    /// Queues `item` for the next batch and waits for its answer.
    pub async fn submit(&self, item: T) -> Result<R, Closed> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.map_err(|_| Closed)?;
        answer.await.map_err(|_| Closed)
    }
}

/// The item was not answered: the dispatcher is gone, or the write function
/// failed without answering it (it panicked, or returned too few answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the group commit did not answer this item")]
pub struct Closed;

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn a_lone_caller_is_written_at_once_and_answered() {
        let group = GroupCommit::start(2, 64, |items: Vec<u32>| async move { items.iter().map(|i| i * 10).collect() });
        assert_eq!(group.submit(4).await, Ok(40));
    }

    /// A group with one writer whose first batch is held until `release` is
    /// notified; `batches` records every batch written. Answers item + 100.
    struct Held {
        group: GroupCommit<u32, u32>,
        release: Arc<Notify>,
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
    }

    impl Held {
        fn start(max_batch: usize) -> Self {
            let release = Arc::new(Notify::new());
            let batches = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
            let group = {
                let (release, batches) = (release.clone(), batches.clone());
                GroupCommit::start(1, max_batch, move |items: Vec<u32>| {
                    let (release, batches) = (release.clone(), batches.clone());
                    async move {
                        let first = batches.lock().unwrap().is_empty();
                        batches.lock().unwrap().push(items.clone());
                        if first {
                            release.notified().await;
                        }
                        items.iter().map(|i| i + 100).collect::<Vec<_>>()
                    }
                })
            };
            Self { group, release, batches }
        }

        fn submit(&self, item: u32) -> tokio::task::JoinHandle<Result<u32, Closed>> {
            let group = self.group.clone();
            tokio::spawn(async move { group.submit(item).await })
        }

        /// Submits 0, waits until the writer holds it, then submits `rest`
        /// and waits until all of them are queued behind it.
        async fn hold_then_queue(
            &self,
            rest: std::ops::RangeInclusive<u32>,
        ) -> Vec<tokio::task::JoinHandle<Result<u32, Closed>>> {
            let mut tasks = vec![self.submit(0)];
            while self.batches.lock().unwrap().is_empty() {
                tokio::task::yield_now().await;
            }
            let queued = rest.clone().count();
            tasks.extend(rest.map(|i| self.submit(i)));
            while self.group.queue.capacity() > QUEUE - queued {
                tokio::task::yield_now().await;
            }
            tasks
        }
    }

    #[tokio::test]
    async fn callers_that_wait_behind_a_busy_writer_share_the_next_batch() {
        let held = Held::start(64);
        let tasks = held.hold_then_queue(1..=5).await;
        held.release.notify_one();
        for (i, task) in (0..).zip(tasks) {
            assert_eq!(task.await.unwrap(), Ok(100 + i), "each answer goes to its own caller");
        }
        assert_eq!(*held.batches.lock().unwrap(), vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn batches_are_cut_at_max_batch() {
        let held = Held::start(3);
        let tasks = held.hold_then_queue(1..=7).await;
        held.release.notify_one();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let sizes: Vec<usize> = held.batches.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 3, 3, 1]);
    }

    #[tokio::test]
    async fn a_write_that_panics_or_answers_short_leaves_no_caller_waiting() {
        let group = GroupCommit::start(1, 64, |items: Vec<u32>| async move {
            assert!(!items.contains(&13), "unlucky");
            if items.contains(&1) { Vec::new() } else { items }
        });
        assert_eq!(group.submit(13).await, Err(Closed));
        assert_eq!(group.submit(1).await, Err(Closed));
        // The one writer permit came back both times: the group still writes.
        assert_eq!(group.submit(2).await, Ok(2));
    }
}
