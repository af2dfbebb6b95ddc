//! Running transfers: the job-wide [`Scheduler`] (bounded requests and memory) and the per-request
//! [`RetryPolicy`].

mod buffers;
mod retry;
mod scheduler;

pub(crate) use buffers::BufferPool;

pub use retry::RetryPolicy;
pub use scheduler::{MemoryPermit, RequestPermit, Scheduler};
