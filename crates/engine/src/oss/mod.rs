//! The OSS dialect HTTP client.
