//! Running transfers: the job-wide [`Scheduler`] (bounded requests and memory) and the per-request
//! [`RetryPolicy`].

mod retry;
mod scheduler;

pub use retry::RetryPolicy;
pub use scheduler::{MemoryPermit, RequestPermit, Scheduler};
