//! Running transfers: the job-wide [`Scheduler`] (bounded requests and memory), the per-request
//! [`RetryPolicy`], the process-wide [`Bandwidth`] limit, and the per-endpoint [`Pacer`].

mod bandwidth;
mod buffers;
mod pacer;
mod retry;
mod scheduler;

pub(crate) use buffers::BufferPool;

pub use bandwidth::{paced, Bandwidth, OSS_TRAFFIC_LIMIT};
pub use pacer::{Pacer, PacerStats, Turn};
pub use retry::RetryPolicy;
pub use scheduler::{MemoryPermit, RequestPermit, Scheduler};
