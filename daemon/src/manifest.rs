//! The manifest: the signed description of an update, and the checks made on
//! it before a single byte is written.
//!
//! Owns the manifest JSON format (format version 1, below), its strict parsing
//! (unknown fields and duplicate keys refused) and the policy checks that do
//! not need I/O: compatible, expiry, anti-rollback floor, deny-list, slot size,
//! internal consistency of the chunk table. Pure: time and device facts are
//! arguments. Must only ever be given bytes that [`crate::trust`] verified.
//!
//! ```json
//! {
//!   "format": 1,
//!   "compatible": "raspberrypi4-64",
//!   "version": "1.4.0",
//!   "security_version": 7,
//!   "created": "2026-11-21T16:00:00Z",
//!   "expires": "2027-05-21T16:00:00Z",
//!   "targets": { "devices": ["pi-0042"], "groups": ["canary"] },
//!   "images": [{
//!     "slot_class": "rootfs",
//!     "size": 536870912,
//!     "sha256": "<64 hex>",
//!     "chunk_size": 1048576,
//!     "chunks": [{ "sha256": "<64 hex>", "stored_size": 123456 }, ...],
//!     "compression": "zstd",
//!     "payload_offset": 0,
//!     "payload_size": 70312345,
//!     "payload_file": "rootfs.payload",
//!     "blocks": {
//!       "block_size": 4096,
//!       "index_file": "rootfs.index",
//!       "index_size": 734001,
//!       "index_sha256": "<64 hex>",
//!       "store_file": "rootfs.blocks",
//!       "store_size": 68123456
//!     }
//!   }]
//! }
//! ```
//! `payload_file` and `blocks` appear only in the network layout. `blocks`
//! names the content-addressed block store of the same image (see
//! [`crate::blocks`]) that delta installs read; the chunk digests above still
//! decide what may be written.
//! `chunks[i]` covers image bytes `[i*chunk_size, min((i+1)*chunk_size, size))`;
//! its `sha256` is over those uncompressed bytes and `stored_size` is the
//! length of its stored form (one zstd frame, or the raw bytes). Chunks are
//! stored back to back from `payload_offset` within the bundle's payload, so
//! any chunk can be fetched alone with an HTTP Range request and checked.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Manifest format version written and accepted.
pub const FORMAT_VERSION: u32 = 1;
/// Smallest allowed chunk size in bytes.
pub const MIN_CHUNK_SIZE: u64 = 4096;
/// Largest allowed chunk size in bytes (bounds memory per chunk).
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Largest payload offset or size accepted, bytes (1 TiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 40;
/// The only slot class of this format: the root filesystem.
pub const SLOT_CLASS_ROOTFS: &str = "rootfs";
/// Bytes per block of a delta block store (`images[].blocks.block_size`
/// must be this; see [`crate::blocks`]).
pub const BLOCK_SIZE: u64 = 4096;

/// Errors found in a (verified) manifest or when checking it against a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not valid manifest JSON (syntax, unknown field, duplicate key, bad type).
    #[error("malformed manifest: {0}")]
    Malformed(String),
    /// A format version this build does not understand.
    #[error("unsupported manifest format {0} (this seesaw reads format {FORMAT_VERSION})")]
    UnsupportedFormat(u32),
    /// Fields that parse but contradict each other or the format's bounds.
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
    /// Made for another board.
    #[error("bundle is for {found:?}, this device is {expected:?}")]
    WrongCompatible {
        /// The manifest's compatible.
        found: String,
        /// The device's compatible.
        expected: String,
    },
    /// Past its expiry time.
    #[error("bundle expired at {expires} (now {now})")]
    Expired {
        /// RFC 3339 expiry.
        expires: String,
        /// RFC 3339 current time.
        now: String,
    },
    /// Anti-rollback: the security version is below the device's floor.
    #[error("security_version {found} is below this device's floor {floor}")]
    BelowFloor {
        /// The manifest's security_version.
        found: u64,
        /// The stored floor.
        floor: u64,
    },
    /// The version rolled back before and is deny-listed.
    #[error("version {0} failed on this device before and is deny-listed")]
    DenyListed(String),
    /// Targeting excludes this device.
    #[error("bundle is not targeted at this device")]
    NotTargeted,
    /// The image does not fit the slot.
    #[error("image of {image} bytes does not fit slot {slot} of {slot_size} bytes")]
    TooLarge {
        /// Image size in bytes.
        image: u64,
        /// Slot name.
        slot: String,
        /// Slot size in bytes.
        slot_size: u64,
    },
}

impl crate::failure::Classify for ManifestError {
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Rejected
    }
}

/// How chunks are stored in the payload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Raw bytes.
    None,
    /// One zstd frame per chunk (RFC 8878).
    Zstd,
}

/// One chunk of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// SHA-256 of the uncompressed chunk bytes, 64 lowercase hex characters.
    pub sha256: String,
    /// Bytes of its stored form in the payload.
    pub stored_size: u64,
}

/// One image of the bundle, written to one slot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Which class of slot receives it; only `rootfs` in format 1.
    pub slot_class: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// SHA-256 of the whole uncompressed image, 64 lowercase hex characters.
    pub sha256: String,
    /// Bytes per chunk (the last chunk may be shorter); a multiple of 4096.
    pub chunk_size: u64,
    /// The chunk table, in image order.
    pub chunks: Vec<Chunk>,
    /// Storage of every chunk.
    pub compression: Compression,
    /// Offset of the first chunk within the payload, bytes.
    pub payload_offset: u64,
    /// Sum of the chunks' stored sizes, bytes.
    pub payload_size: u64,
    /// In the network layout: the payload file's name, relative to the
    /// envelope's URL. Absent in a one-file bundle, whose payload follows
    /// the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_file: Option<String>,
    /// In the network layout: the block store for delta installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<BlockStore>,
}

/// The block store of an image (network layout only): the files and the
/// digest that tie the block index to this signed manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlockStore {
    /// Bytes per block; 4096 (the only size of this format).
    pub block_size: u64,
    /// The block index file's name, relative to the envelope's URL.
    pub index_file: String,
    /// Size of the block index file, bytes.
    pub index_size: u64,
    /// SHA-256 of the block index file, 64 lowercase hex characters.
    pub index_sha256: String,
    /// The block store file's name (zstd frames of distinct blocks).
    pub store_file: String,
    /// Size of the block store file, bytes.
    pub store_size: u64,
}

/// Largest block index accepted, bytes (an index is about 1/900 of its image).
pub const MAX_INDEX_BYTES: u64 = 1 << 30;

fn plain_file_name(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 255
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !f.starts_with('.')
}

/// Optional targeting: if present, the device must match a listed id or group.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Device ids.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A manifest, format 1 (see the module documentation for the JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The board this bundle is for; must equal the device's `compatible`.
    pub compatible: String,
    /// Semantic version, for people and the deny-list.
    pub version: String,
    /// Monotonic anti-rollback counter.
    pub security_version: u64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Expiry time, RFC 3339; `null` for none.
    #[serde(default)]
    pub expires: Option<String>,
    /// Targeting; `null` for every device.
    #[serde(default)]
    pub targets: Option<Targets>,
    /// Exactly one image in format 1, of class `rootfs`.
    pub images: Vec<Image>,
}

/// Facts about the device a manifest is checked against.
#[derive(Debug, Clone)]
pub struct DeviceFacts<'a> {
    /// The device's compatible string.
    pub compatible: &'a str,
    /// The device id, if known (for targeting).
    pub device_id: Option<&'a str>,
    /// Groups the device belongs to (for targeting).
    pub groups: &'a [String],
    /// The anti-rollback floor.
    pub floor: u64,
    /// Versions that rolled back on this device.
    pub deny_list: &'a [String],
    /// Size of the slot to be written, bytes.
    pub slot_size: u64,
    /// The slot's name, for messages.
    pub slot_name: &'a str,
    /// Current time.
    pub now: OffsetDateTime,
}

pub(crate) fn parse_time(what: &str, s: &str) -> Result<OffsetDateTime, ManifestError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ManifestError::Malformed(format!("{what} {s:?} is not RFC 3339: {e}")))
}

/// Formats a time as RFC 3339 (UTC, seconds).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Manifest {
    /// Parses verified manifest bytes and checks internal consistency
    /// ([`Manifest::validate`]).
    ///
    /// Errors: [`ManifestError::Malformed`], [`ManifestError::UnsupportedFormat`],
    /// [`ManifestError::Inconsistent`].
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Serialises to compact JSON (the form that is signed).
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, numbers and vectors always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The rootfs image (format 1 has exactly one).
    pub fn rootfs(&self) -> &Image {
        // validate() guarantees exactly one image of class rootfs.
        &self.images[0]
    }

    /// Internal consistency: format, one rootfs image, version is semver,
    /// times are RFC 3339, digests are 64 lowercase hex, chunk size within
    /// bounds and a multiple of 4096, the chunk table covers exactly `size`
    /// bytes, stored sizes add up to `payload_size` and are non-zero and no
    /// larger than a chunk allows.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Inconsistent(s));
        if self.format != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedFormat(self.format));
        }
        if self.compatible.is_empty() {
            return bad("empty compatible".into());
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return bad(format!("version {:?} is not semver: {e}", self.version));
        }
        parse_time("created", &self.created)?;
        if let Some(e) = &self.expires {
            parse_time("expires", e)?;
        }
        if self.images.len() != 1 {
            return bad(format!(
                "expected exactly one image, found {}",
                self.images.len()
            ));
        }
        let img = &self.images[0];
        if img.slot_class != SLOT_CLASS_ROOTFS {
            return bad(format!("unknown slot class {:?}", img.slot_class));
        }
        if !is_sha256_hex(&img.sha256) {
            return bad(format!(
                "image sha256 {:?} is not 64 lowercase hex digits",
                img.sha256
            ));
        }
        if img.size == 0 {
            return bad("image size is 0".into());
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&img.chunk_size)
            || img.chunk_size % 4096 != 0
        {
            return bad(format!(
                "chunk size {} is not a multiple of 4096 between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}",
                img.chunk_size
            ));
        }
        let expected_chunks = img.size.div_ceil(img.chunk_size);
        if img.chunks.len() as u64 != expected_chunks {
            return bad(format!(
                "{} chunks listed, {} bytes in chunks of {} need {expected_chunks}",
                img.chunks.len(),
                img.size,
                img.chunk_size
            ));
        }
        // A zstd frame of incompressible data is at most a little larger than
        // the data; anything far beyond that is a lie meant to exhaust memory.
        let max_stored = match img.compression {
            Compression::None => img.chunk_size,
            Compression::Zstd => img.chunk_size + img.chunk_size / 128 + 1024,
        };
        let mut total: u64 = 0;
        for (i, c) in img.chunks.iter().enumerate() {
            if !is_sha256_hex(&c.sha256) {
                return bad(format!(
                    "chunk {i} sha256 {:?} is not 64 lowercase hex digits",
                    c.sha256
                ));
            }
            let len = img.chunk_len(i);
            if c.stored_size == 0 || c.stored_size > max_stored {
                return bad(format!(
                    "chunk {i} stored size {} is out of bounds",
                    c.stored_size
                ));
            }
            if img.compression == Compression::None && c.stored_size != len {
                return bad(format!(
                    "raw chunk {i} stored size {} != {len}",
                    c.stored_size
                ));
            }
            total = total.saturating_add(c.stored_size);
        }
        if let Some(f) = &img.payload_file {
            if !plain_file_name(f) {
                return bad(format!("payload file name {f:?} is not a plain file name"));
            }
        }
        if let Some(b) = &img.blocks {
            if img.payload_file.is_none() {
                return bad("a block store is only valid in the network layout".into());
            }
            if b.block_size != BLOCK_SIZE || img.chunk_size % b.block_size != 0 {
                return bad(format!(
                    "block size {} is not 4096 or does not divide the chunk size",
                    b.block_size
                ));
            }
            for f in [&b.index_file, &b.store_file] {
                if !plain_file_name(f) {
                    return bad(format!(
                        "block store file name {f:?} is not a plain file name"
                    ));
                }
            }
            if !is_sha256_hex(&b.index_sha256) {
                return bad(format!(
                    "block index sha256 {:?} is not 64 lowercase hex digits",
                    b.index_sha256
                ));
            }
            if b.index_size == 0
                || b.index_size > MAX_INDEX_BYTES
                || b.store_size == 0
                || b.store_size > MAX_PAYLOAD_BYTES
            {
                return bad(format!(
                    "block index size {} or store size {} is out of bounds",
                    b.index_size, b.store_size
                ));
            }
        }
        // Offsets and sizes fit a real file; far larger values only serve to
        // make arithmetic overflow.
        if img.payload_offset > MAX_PAYLOAD_BYTES || img.payload_size > MAX_PAYLOAD_BYTES {
            return bad(format!(
                "payload offset {} or size {} is beyond {MAX_PAYLOAD_BYTES} bytes",
                img.payload_offset, img.payload_size
            ));
        }
        if total != img.payload_size {
            return bad(format!(
                "chunk stored sizes add up to {total}, payload_size says {}",
                img.payload_size
            ));
        }
        Ok(())
    }

    /// The policy checks made before anything is written: compatible,
    /// targeting, expiry, anti-rollback floor, deny-list, slot size.
    pub fn check_for_device(&self, dev: &DeviceFacts<'_>) -> Result<(), ManifestError> {
        if self.compatible != dev.compatible {
            return Err(ManifestError::WrongCompatible {
                found: self.compatible.clone(),
                expected: dev.compatible.to_string(),
            });
        }
        if let Some(t) = &self.targets {
            let by_id = dev
                .device_id
                .is_some_and(|id| t.devices.iter().any(|d| d == id));
            let by_group = t.groups.iter().any(|g| dev.groups.contains(g));
            if !by_id && !by_group {
                return Err(ManifestError::NotTargeted);
            }
        }
        if let Some(e) = &self.expires {
            if parse_time("expires", e)? <= dev.now {
                return Err(ManifestError::Expired {
                    expires: e.clone(),
                    now: format_time(dev.now),
                });
            }
        }
        if self.security_version < dev.floor {
            return Err(ManifestError::BelowFloor {
                found: self.security_version,
                floor: dev.floor,
            });
        }
        if dev.deny_list.iter().any(|v| v == &self.version) {
            return Err(ManifestError::DenyListed(self.version.clone()));
        }
        let img = self.rootfs();
        if img.size > dev.slot_size {
            return Err(ManifestError::TooLarge {
                image: img.size,
                slot: dev.slot_name.to_string(),
                slot_size: dev.slot_size,
            });
        }
        Ok(())
    }
}

impl Image {
    /// Uncompressed length of chunk `i`, bytes.
    pub fn chunk_len(&self, i: usize) -> u64 {
        let start = i as u64 * self.chunk_size;
        self.chunk_size.min(self.size.saturating_sub(start))
    }

    /// Offset of chunk `i` in the image (and slot), bytes.
    pub fn chunk_offset(&self, i: usize) -> u64 {
        i as u64 * self.chunk_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Manifest {
        let h = "ab".repeat(32);
        Manifest {
            format: 1,
            compatible: "board".into(),
            version: "1.2.3".into(),
            security_version: 5,
            created: "2026-01-01T00:00:00Z".into(),
            expires: Some("2027-01-01T00:00:00Z".into()),
            targets: None,
            images: vec![Image {
                slot_class: "rootfs".into(),
                size: 10000,
                sha256: h.clone(),
                chunk_size: 4096,
                chunks: vec![
                    Chunk {
                        sha256: h.clone(),
                        stored_size: 100,
                    },
                    Chunk {
                        sha256: h.clone(),
                        stored_size: 100,
                    },
                    Chunk {
                        sha256: h,
                        stored_size: 50,
                    },
                ],
                compression: Compression::Zstd,
                payload_offset: 0,
                payload_size: 250,
                payload_file: None,
                blocks: None,
            }],
        }
    }

    fn store() -> BlockStore {
        BlockStore {
            block_size: 4096,
            index_file: "rootfs.index".into(),
            index_size: 100,
            index_sha256: "cd".repeat(32),
            store_file: "rootfs.blocks".into(),
            store_size: 1000,
        }
    }

    fn facts<'a>(deny: &'a [String], groups: &'a [String]) -> DeviceFacts<'a> {
        DeviceFacts {
            compatible: "board",
            device_id: Some("dev-1"),
            groups,
            floor: 5,
            deny_list: deny,
            slot_size: 10000,
            slot_name: "B",
            now: datetime!(2026-06-01 0:00 UTC),
        }
    }

    #[test]
    fn round_trip_and_validate() {
        let m = sample();
        m.validate().unwrap();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert_eq!(m.rootfs().chunk_len(2), 10000 - 8192);
        assert_eq!(m.rootfs().chunk_offset(2), 8192);
    }

    #[test]
    fn strict_json() {
        let json = String::from_utf8(sample().to_json()).unwrap();
        let unknown = json.replacen("{", "{\"foo\":1,", 1);
        assert!(matches!(
            Manifest::from_json(unknown.as_bytes()),
            Err(ManifestError::Malformed(_))
        ));
        let dup = json.replacen("{", "{\"version\":\"9.9.9\",", 1);
        assert!(matches!(
            Manifest::from_json(dup.as_bytes()),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            Manifest::from_json(b"{"),
            Err(ManifestError::Malformed(_))
        ));
        let nested = json.replacen("\"stored_size\":100", "\"stored_size\":100,\"x\":0", 1);
        assert!(matches!(
            Manifest::from_json(nested.as_bytes()),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn inconsistencies() {
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|m| m.version = "1.2".into()),
            Box::new(|m| m.created = "yesterday".into()),
            Box::new(|m| m.images[0].sha256 = "AB".repeat(32)),
            Box::new(|m| m.images[0].sha256 = "ab".repeat(31)),
            Box::new(|m| m.images[0].chunks[1].sha256 = "".into()),
            Box::new(|m| m.images[0].chunk_size = 1000),
            Box::new(|m| m.images[0].chunk_size = 128 * 1024 * 1024),
            Box::new(|m| m.images[0].size = 20000),
            Box::new(|m| m.images[0].size = 0),
            Box::new(|m| m.images[0].payload_size = 251),
            Box::new(|m| m.images[0].chunks[0].stored_size = 0),
            Box::new(|m| m.images[0].chunks[0].stored_size = 1 << 40),
            Box::new(|m| m.images[0].slot_class = "bootloader".into()),
            Box::new(|m| m.images.push(m.images[0].clone())),
            Box::new(|m| m.images.clear()),
            Box::new(|m| m.compatible.clear()),
            Box::new(|m| m.images[0].payload_file = Some("../etc/passwd".into())),
            Box::new(|m| m.images[0].payload_offset = u64::MAX),
            Box::new(|m| m.images[0].payload_file = Some("https://elsewhere/x".into())),
            Box::new(|m| m.images[0].blocks = Some(store())),
            Box::new(|m| {
                m.images[0].payload_file = Some("p".into());
                m.images[0].blocks = Some(BlockStore {
                    block_size: 512,
                    ..store()
                });
            }),
            Box::new(|m| {
                m.images[0].payload_file = Some("p".into());
                m.images[0].blocks = Some(BlockStore {
                    index_file: "../i".into(),
                    ..store()
                });
            }),
            Box::new(|m| {
                m.images[0].payload_file = Some("p".into());
                m.images[0].blocks = Some(BlockStore {
                    index_sha256: "x".into(),
                    ..store()
                });
            }),
            Box::new(|m| {
                m.images[0].payload_file = Some("p".into());
                m.images[0].blocks = Some(BlockStore {
                    index_size: 0,
                    ..store()
                });
            }),
            Box::new(|m| {
                m.images[0].payload_file = Some("p".into());
                m.images[0].blocks = Some(BlockStore {
                    store_size: u64::MAX,
                    ..store()
                });
            }),
        ];
        let mut ok = sample();
        ok.images[0].payload_file = Some("p".into());
        ok.images[0].blocks = Some(store());
        ok.validate().unwrap();
        for (i, f) in cases.iter().enumerate() {
            let mut m = sample();
            f(&mut m);
            assert!(
                matches!(
                    m.validate(),
                    Err(ManifestError::Inconsistent(_)) | Err(ManifestError::Malformed(_))
                ),
                "case {i}: {:?}",
                m.validate()
            );
        }
        let mut m = sample();
        m.format = 2;
        assert_eq!(m.validate(), Err(ManifestError::UnsupportedFormat(2)));
    }

    #[test]
    fn device_checks() {
        let none: Vec<String> = vec![];
        let m = sample();
        m.check_for_device(&facts(&none, &none)).unwrap();

        let mut f = facts(&none, &none);
        f.compatible = "other";
        assert!(matches!(
            m.check_for_device(&f),
            Err(ManifestError::WrongCompatible { .. })
        ));

        let mut f = facts(&none, &none);
        f.now = datetime!(2027-01-01 0:00 UTC);
        assert!(matches!(
            m.check_for_device(&f),
            Err(ManifestError::Expired { .. })
        ));

        let mut f = facts(&none, &none);
        f.floor = 6;
        assert_eq!(
            m.check_for_device(&f),
            Err(ManifestError::BelowFloor { found: 5, floor: 6 })
        );

        let deny = vec!["1.2.3".to_string()];
        assert_eq!(
            m.check_for_device(&facts(&deny, &none)),
            Err(ManifestError::DenyListed("1.2.3".into()))
        );

        let mut f = facts(&none, &none);
        f.slot_size = 9999;
        assert!(matches!(
            m.check_for_device(&f),
            Err(ManifestError::TooLarge { .. })
        ));

        let mut t = sample();
        t.targets = Some(Targets {
            devices: vec!["dev-2".into()],
            groups: vec!["canary".into()],
        });
        assert_eq!(
            t.check_for_device(&facts(&none, &none)),
            Err(ManifestError::NotTargeted)
        );
        let groups = vec!["canary".to_string()];
        t.check_for_device(&facts(&none, &groups)).unwrap();
        t.targets = Some(Targets {
            devices: vec!["dev-1".into()],
            groups: vec![],
        });
        t.check_for_device(&facts(&none, &none)).unwrap();
    }
}
