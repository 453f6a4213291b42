//! Compression of large payloads (feature `compression`): an lz4 block
//! (`lz4_flex`, pure Rust) behind its uncompressed length, the envelope's
//! header left as it is, the version byte's bit 7 set.

use super::{payload_offset, CodecError, COMPRESSED};

/// Which payloads a cache compresses, and how: [`CacheBuilder::compress`](crate::CacheBuilder::compress).
///
/// ```
/// use cache_core::codec::{compress, open, seal, Compression, MsgPack};
/// let page = "lorem ipsum ".repeat(1000);
/// let sealed = seal(&MsgPack, &page).unwrap();
/// let stored = compress(sealed.clone(), Compression::lz4(1024));
/// assert!(stored.len() < sealed.len() / 10);
/// assert_eq!(open::<String>(&MsgPack, &stored).unwrap(), page);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    min_bytes: usize,
}

impl Compression {
    /// lz4 (block format, size prepended) for payloads of at least `min_bytes`
    /// bytes; a payload that does not shrink is stored as it is.
    pub const fn lz4(min_bytes: usize) -> Compression {
        Compression { min_bytes }
    }

    /// The smallest payload that is compressed.
    pub const fn min_bytes(&self) -> usize {
        self.min_bytes
    }
}

/// `entry` (a sealed entry, any format) with its payload compressed, when
/// the payload is at least `compression`'s threshold and compressing it
/// saves bytes; otherwise `entry` as it is. The header is not changed but
/// for the compression bit, so the entry's freshness and tags read as before.
pub fn compress(entry: Vec<u8>, compression: Compression) -> Vec<u8> {
    let Some(payload_at) = payload_offset(&entry) else {
        return entry;
    };
    if entry[1] & COMPRESSED != 0 {
        return entry;
    }
    let payload = &entry[payload_at..];
    // The length travels in 4 bytes: larger payloads are stored as they are.
    if payload.len() < compression.min_bytes || u32::try_from(payload.len()).is_err() {
        return entry;
    }
    let packed = lz4_flex::block::compress_prepend_size(payload);
    if packed.len() >= payload.len() {
        return entry;
    }
    let mut out = Vec::with_capacity(payload_at + packed.len());
    out.extend_from_slice(&entry[..payload_at]);
    out[1] |= COMPRESSED;
    out.extend_from_slice(&packed);
    out
}

/// The payload of a compressed entry, inflated: an error when it says it
/// is longer than `max_payload` (checked before allocating), when the block
/// is corrupt or truncated, or when it does not inflate to exactly the
/// length it says.
pub(super) fn inflate(packed: &[u8], max_payload: usize) -> Result<Vec<u8>, CodecError> {
    let Some(len) = packed.get(..4) else {
        return Err(CodecError(format!(
            "a compressed payload of {} bytes, shorter than its length prefix",
            packed.len()
        )));
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > max_payload {
        return Err(CodecError(format!(
            "a compressed payload that says it inflates to {len} bytes, over the limit of {max_payload} (CacheBuilder::max_value_size)"
        )));
    }
    let inflated = lz4_flex::block::decompress_size_prepended(packed)
        .map_err(|e| CodecError(format!("a corrupt compressed payload: {e}")))?;
    if inflated.len() != len {
        return Err(CodecError(format!(
            "a compressed payload that says {len} bytes inflated to {}",
            inflated.len()
        )));
    }
    Ok(inflated)
}
