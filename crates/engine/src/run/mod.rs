//! Running transfers: the job-wide [`Scheduler`] (bounded requests and memory), the per-request
//! [`RetryPolicy`], and the process-wide [`Bandwidth`] limit.

mod bandwidth;
mod buffers;
mod retry;
mod scheduler;

pub(crate) use buffers::BufferPool;

pub use bandwidth::Bandwidth;
pub use retry::RetryPolicy;
pub use scheduler::{MemoryPermit, RequestPermit, Scheduler};
