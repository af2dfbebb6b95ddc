//! Request signing and verification: OSS V1 (HMAC-SHA1) and V4 (`OSS4-HMAC-SHA256`).
