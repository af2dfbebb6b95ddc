//! The OSS dialect HTTP client.

mod crc;
mod response;
