//! One object's part tasks, for the part pipeline ([`super::pipeline`]).
//!
//! At most `limit` tasks run at once. The first failure halts the object: no new task starts, and a task that
//! was waiting for a request slot does not send (it checks [`Halt`] once it holds the slot). Every task already
//! sending finishes, so what the server acknowledges is recorded for the next run, and then the first error is
//! returned.

use crate::checkpoint::PartWriter;
use crate::error::{Error, ErrorKind, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::task::JoinSet;

/// The part tasks of one object.
#[derive(Debug)]
pub(super) struct PartTasks {
    tasks: JoinSet<Result<()>>,
    first_error: Option<Error>,
    limit: usize,
    halt: Halt,
}

/// Set once a part of the object failed; a task checks it before sending.
#[derive(Debug, Clone, Default)]
pub(super) struct Halt(Arc<AtomicBool>);

impl Halt {
    /// Fails once another part of the object failed.
    pub(super) fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Stopped, "another part of this object failed"));
        }
        Ok(())
    }
}

impl PartTasks {
    /// Tasks for one object, at most `limit` at once.
    pub(super) fn new(limit: usize) -> Self {
        Self { tasks: JoinSet::new(), first_error: None, limit: limit.max(1), halt: Halt::default() }
    }

    /// The flag the object's tasks check before sending.
    pub(super) fn halt(&self) -> Halt {
        self.halt.clone()
    }

    fn settle(&mut self, res: std::result::Result<Result<()>, tokio::task::JoinError>) {
        if let Err(e) = res.map_err(Error::from).and_then(|r| r) {
            self.halt.0.store(true, Ordering::Relaxed);
            self.first_error.get_or_insert(e);
        }
    }

    /// Waits until another task may start; false once a part failed (start no more).
    pub(super) async fn ready(&mut self) -> bool {
        while let Some(res) = self.tasks.try_join_next() {
            self.settle(res);
        }
        while self.first_error.is_none() && self.tasks.len() >= self.limit {
            if let Some(res) = self.tasks.join_next().await {
                self.settle(res);
            }
        }
        self.first_error.is_none()
    }

    /// Starts a part task.
    pub(super) fn spawn(&mut self, task: impl Future<Output = Result<()>> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Lets every started task finish and makes what they recorded durable (`writer` flushed, whatever
    /// happened); then the first error: a task's, else the taker's (`taking`: a stop, a failed read), else the
    /// flush's.
    pub(super) async fn finish_recorded(self, taking: Result<()>, writer: &PartWriter) -> Result<()> {
        let done = self.finish().await.and(taking);
        let flushed = writer.flush().await;
        done.and(flushed)
    }

    /// Lets every started task finish, then returns the first error, if any.
    pub(super) async fn finish(mut self) -> Result<()> {
        while let Some(res) = self.tasks.join_next().await {
            self.settle(res);
        }
        self.first_error.map_or(Ok(()), Err)
    }
}
