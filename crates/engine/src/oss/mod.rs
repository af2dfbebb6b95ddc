//! The OSS dialect HTTP client.

mod crc;
mod request;
mod response;
