//! A fixed pool of generation threads behind a bounded queue: the engine
//! is synchronous, so generations run here, never on the async runtime. A
//! full queue refuses at once (the caller answers 429).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Work for one worker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// Worker threads and their queue.
pub struct WorkerPool {
    sender: Mutex<Option<SyncSender<Job>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    counts: Arc<Counts>,
    workers: usize,
    queue: usize,
}

#[derive(Default)]
struct Counts {
    queued: AtomicUsize,
    busy: AtomicUsize,
}

impl WorkerPool {
    /// `workers` threads (at least one) taking jobs from a queue that holds
    /// at most `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let counts = Arc::new(Counts::default());
        let handles = (0..workers)
            .map(|i| {
                let receiver = Arc::clone(&receiver);
                let counts = Arc::clone(&counts);
                std::thread::Builder::new()
                    .name(format!("sqlagent-worker-{i}"))
                    .spawn(move || work(&receiver, &counts))
                    .expect("spawning a worker thread")
            })
            .collect();
        Self {
            sender: Mutex::new(Some(sender)),
            handles: Mutex::new(handles),
            counts,
            workers,
            queue,
        }
    }

    /// Queues `job`, or refuses at once when the queue is full (or the
    /// pool is shutting down).
    pub fn try_submit(&self, job: Job) -> Result<(), QueueFull> {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = sender.as_ref() else {
            return Err(QueueFull);
        };
        self.counts.queued.fetch_add(1, Ordering::SeqCst);
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.queued.fetch_sub(1, Ordering::SeqCst);
                Err(QueueFull)
            }
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.counts.queued.load(Ordering::SeqCst)
    }

    /// Workers running a job.
    pub fn busy(&self) -> usize {
        self.counts.busy.load(Ordering::SeqCst)
    }

    /// How many worker threads there are.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// How many jobs may wait.
    pub fn capacity(&self) -> usize {
        self.queue
    }

    /// Takes no more jobs, lets the workers finish what is queued, and
    /// waits for them.
    pub fn shutdown(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

fn work(receiver: &Mutex<Receiver<Job>>, counts: &Counts) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        // Busy before no longer queued: the two never both read zero
        // while a job is between them.
        counts.busy.fetch_add(1, Ordering::SeqCst);
        counts.queued.fetch_sub(1, Ordering::SeqCst);
        // A panicking job must not take its worker with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        counts.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn a_full_queue_refuses_and_every_accepted_job_runs() {
        let pool = WorkerPool::new(1, 1);
        let (release_tx, release_rx) = channel::<()>();
        let (done_tx, done_rx) = channel::<usize>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let job = |i: usize| -> Job {
            let release_rx = Arc::clone(&release_rx);
            let done_tx = done_tx.clone();
            Box::new(move || {
                let _ = release_rx.lock().unwrap().recv();
                let _ = done_tx.send(i);
            })
        };
        pool.try_submit(job(0)).unwrap();
        // Wait until the worker holds job 0, so job 1 waits in the queue.
        while pool.busy() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.try_submit(job(1)).unwrap();
        assert_eq!(pool.queued(), 1);
        assert_eq!(pool.try_submit(job(2)), Err(QueueFull));
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        let mut done: Vec<usize> = (0..2).map(|_| done_rx.recv().unwrap()).collect();
        done.sort();
        assert_eq!(done, [0, 1]);
        pool.shutdown();
        assert_eq!(pool.try_submit(job(3)), Err(QueueFull));
    }

    #[test]
    fn a_panicking_job_leaves_its_worker_running() {
        let pool = WorkerPool::new(1, 4);
        pool.try_submit(Box::new(|| panic!("boom"))).unwrap();
        let (tx, rx) = channel();
        pool.try_submit(Box::new(move || tx.send(7).unwrap()))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
        pool.shutdown();
    }
}
