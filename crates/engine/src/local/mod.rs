//! The local filesystem store.
