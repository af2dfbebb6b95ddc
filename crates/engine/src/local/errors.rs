//! The service errors the local store answers with, in OSS's words (codes, messages, EC numbers, extra elements
//! and headers), so the store in process, behind `transfer serve` and a real OSS endpoint fail alike.

use crate::error::{Error, ServiceError};

fn with_ec(status: u16, code: &str, message: &str, ec: &str) -> Error {
    Error::service(ServiceError {
        status,
        code: code.to_owned(),
        message: message.to_owned(),
        ec: Some(ec.to_owned()),
        ..Default::default()
    })
}

pub(crate) fn no_such_bucket(bucket: &str) -> Error {
    Error::code(404, "NoSuchBucket", "The specified bucket does not exist.").with_context("bucket", bucket)
}

pub(crate) fn bucket_not_empty(bucket: &str) -> Error {
    Error::code(409, "BucketNotEmpty", "The bucket you tried to delete is not empty.").with_context("bucket", bucket)
}

pub(crate) fn no_such_key(key: &str) -> Error {
    Error::code(404, "NoSuchKey", "The specified key does not exist.").with_context("key", key)
}

pub(crate) fn no_such_version(key: &str, version_id: &str) -> Error {
    Error::code(404, "NoSuchVersion", "The specified version does not exist.")
        .with_context("key", key)
        .with_context("version id", version_id)
}

/// A read of a delete marker by its version id.
pub(crate) fn delete_marker_version(key: &str, version_id: &str) -> Error {
    Error::code(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        .with_context("key", key)
        .with_context("version id", version_id)
        .with_header("x-oss-delete-marker", "true")
}

pub(crate) fn no_such_upload(upload_id: &str) -> Error {
    Error::code(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
    .with_context("upload id", upload_id)
}

pub(crate) fn file_already_exists(key: &str, ec: &str) -> Error {
    with_ec(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.", ec)
        .with_context("key", key)
}

pub(crate) fn invalid_range(first: u64, size: u64) -> Error {
    Error::code(416, "InvalidRange", "The requested range cannot be satisfied")
        .with_context("first byte", first)
        .with_context("object size", size)
}

pub(crate) fn precondition_failed(condition: &str) -> Error {
    Error::code(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        .with_extra("Condition", condition)
}

pub(crate) fn invalid_part(part_number: u32) -> Error {
    Error::code(
        400,
        "InvalidPart",
        "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.",
    )
    .with_context("part number", part_number)
}

pub(crate) fn invalid_part_order() -> Error {
    with_ec(
        400,
        "InvalidPartOrder",
        "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        "0042-00000209",
    )
}

pub(crate) fn entity_too_small(part_number: u32, size: u64) -> Error {
    with_ec(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.", "0042-00000213")
        .with_context("part number", part_number)
        .with_context("part size", size)
}

pub(crate) fn entity_too_large(size: u64, limit: u64) -> Error {
    Error::code(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
        .with_context("size", size)
        .with_context("limit", limit)
}

pub(crate) fn malformed_xml(why: &str) -> Error {
    Error::code(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema.",
    )
    .with_context("reason", why)
}

pub(crate) fn position_not_equal(position: u64, size: u64) -> Error {
    with_ec(409, "PositionNotEqualToLength", "Position is not equal to file length", "0026-00000016")
        .with_header("x-oss-next-append-position", size.to_string())
        .with_context("position", position)
}

pub(crate) fn not_appendable(key: &str) -> Error {
    Error::code(409, "ObjectNotAppendable", "The operation is not valid for the current state of the object.")
        .with_context("key", key)
}

pub(crate) fn not_symlink(key: &str) -> Error {
    Error::code(400, "NotSymlink", "The specified object is not a symlink.").with_context("key", key)
}

pub(crate) fn symlink_target_missing(target: &str) -> Error {
    Error::code(404, "SymlinkTargetNotExist", "The symlink target object does not exist.")
        .with_context("target", target)
}

/// A write refused because the store's disk is full (507 `InsufficientStorage`; see `space.rs`): the message
/// names the disk by the store's root and says how to get writes going again.
pub(crate) fn insufficient_storage(root: &std::path::Path, needed: u64) -> Error {
    Error::code(
        507,
        "InsufficientStorage",
        format!(
            "The store's disk at {} is full: writes are refused until at least {needed} bytes are free there. Free \
             space on that disk, or delete objects or abort multipart uploads through this server (those still \
             work); writes resume by themselves once there is room.",
            root.display()
        ),
    )
}

/// A read of an archived object that is not restored.
pub(crate) fn invalid_object_state(key: &str) -> Error {
    Error::code(403, "InvalidObjectState", "The operation is not valid for the object's state").with_context("key", key)
}

/// RestoreObject of an object in no archive class.
pub(crate) fn not_archived(key: &str) -> Error {
    Error::code(400, "OperationNotSupported", "The operation is not supported for this resource")
        .with_context("key", key)
}
