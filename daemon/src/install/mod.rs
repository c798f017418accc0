//! The install pipeline: stored chunks → decompress → hash → compare with the
//! manifest → write at their offset in the inactive slot → read back from the
//! device and hash the whole image → flush → compare with the image SHA-256.
//!
//! Owns the order of writes and what is proven before the environment may be
//! flipped; does not decide policy (that is [`crate::manifest`] and
//! [`crate::trust`]) and never touches the bootloader environment.
//!
//! Guarantees:
//! - A chunk whose bytes do not hash to the manifest's digest is never written.
//! - Memory is bounded by a few chunks per worker thread, whatever the image size.
//! - Every byte of the slot region is read back from the device and the
//!   SHA-256 of what was read must equal the manifest's image SHA-256. The
//!   read-back bypasses the page cache (`O_DIRECT`, which also makes the
//!   kernel write the range out before reading it), so it proves what the
//!   storage returns, not what the kernel remembers. It runs behind the
//!   writers, chunk by chunk in image order, so it costs little extra time.
//! - The slot's first 4 KiB (where file system superblocks and partition
//!   headers live) are zeroed before anything else is written and again if
//!   the install fails, so a failed install leaves a slot that neither mounts
//!   nor matches its old record (see [`slot_holds_image`]).
//! - `fdatasync` makes everything durable before success is returned.
//!
//! Files:
//! - `pipeline` — [`write_image`]: the writers, the read-back behind them,
//!   the header wipe; [`Progress`], [`Phase`] and [`ChunkLog`];
//! - `source` — where chunk bytes come from ([`PayloadSource`],
//!   [`ChunkSource`], [`StoredChunks`]);
//! - `device` — the slot written ([`SlotDevice`], [`FileSlot`], direct I/O);
//! - `verify` — digest checks and [`slot_holds_image`];
//! - `error` — [`InstallError`].

mod device;
mod error;
mod pipeline;
mod source;
mod verify;

pub use device::{device_size, FileSlot, SlotDevice, IO_ALIGN};
pub use error::InstallError;
pub use pipeline::{
    worker_threads, write_image, ChunkLog, NoLog, NoProgress, Phase, Progress, WriteJob,
    HEADER_WIPE,
};
pub use source::{ChunkSource, FileSource, PayloadSource, Scratch, StoredChunks};
pub use verify::slot_holds_image;
