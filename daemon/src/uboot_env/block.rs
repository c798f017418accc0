//! One copy of the U-Boot environment as raw bytes, and the choice between
//! two redundant copies.
//!
//! Owns the on-media layout (U-Boot `include/env_internal.h` `env_t`, read
//! and written by `tools/env/fw_env.c` and libubootenv `src/uboot_env.c`):
//!
//! ```text
//! single:    | crc32 LE (4) | data ...                                   |
//! redundant: | crc32 LE (4) | flag (1) | data ...                        |
//! data:      name=value\0 name=value\0 ... \0 padding up to envsize
//! ```
//!
//! The CRC32 (IEEE, zlib's `crc32(0, ..)`) covers the whole data area,
//! padding included. Pure: no I/O here.

use super::EnvError;

/// CRC-32 as U-Boot's `crc32(0, ..)` and zlib compute it: the reflected
/// polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF. One
/// 256-entry table (1 KiB), built at compile time: an environment is a few
/// KiB and read a few times per operation, so the byte-at-a-time loop is
/// fast enough and keeps the binary small.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &b| {
        CRC32_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Whether a copy carries the redundant flag byte after its CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvLayout {
    /// One copy: CRC32, then data.
    Single,
    /// One of two copies: CRC32, flag byte (write counter), then data.
    Redundant,
}

impl EnvLayout {
    /// Bytes before the data area: 4 (single) or 5 (redundant).
    pub fn header_len(self) -> usize {
        match self {
            EnvLayout::Single => 4,
            EnvLayout::Redundant => 5,
        }
    }
}

/// Which of two redundant copies is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyIndex {
    /// The first location in `fw_env.config` (U-Boot `ENV_VALID`).
    First,
    /// The second location (U-Boot `ENV_REDUND`).
    Second,
}

impl CopyIndex {
    /// 0 or 1, the position in `FwEnvConfig::copies`.
    pub fn index(self) -> usize {
        match self {
            CopyIndex::First => 0,
            CopyIndex::Second => 1,
        }
    }

    /// The other copy: where the next write goes.
    pub fn other(self) -> CopyIndex {
        match self {
            CopyIndex::First => CopyIndex::Second,
            CopyIndex::Second => CopyIndex::First,
        }
    }
}

/// One raw copy of the environment: exactly `envsize` bytes as stored.
///
/// Accessors read the fields in place; [`EnvBlock::build`] and
/// [`EnvBlock::with_updates`] make new blocks with a correct CRC. A block
/// is only trusted once [`EnvBlock::is_valid`] says its CRC matches.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvBlock {
    bytes: Vec<u8>,
    layout: EnvLayout,
}

impl std::fmt::Debug for EnvBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvBlock")
            .field("layout", &self.layout)
            .field("size", &self.bytes.len())
            .field("crc", &format_args!("{:#010x}", self.crc()))
            .field("flag", &self.flag())
            .field("valid", &self.is_valid())
            .finish()
    }
}

impl EnvBlock {
    /// Wraps `bytes` (one whole copy, `envsize` bytes) read from storage.
    ///
    /// Errors: [`EnvError::BlockTooSmall`] if there is no room for the
    /// header and at least the terminating NUL.
    pub fn from_bytes(bytes: Vec<u8>, layout: EnvLayout) -> Result<EnvBlock, EnvError> {
        let minimum = layout.header_len() + 1;
        if bytes.len() < minimum {
            return Err(EnvError::BlockTooSmall {
                size: bytes.len(),
                minimum,
            });
        }
        Ok(EnvBlock { bytes, layout })
    }

    /// Builds a block of `size` bytes holding `entries` (each `name=value`
    /// without its NUL), in order, followed by the terminating NUL and zero
    /// padding (U-Boot's `hexport_r` zero-fills too), with `flag` in the
    /// flag byte for [`EnvLayout::Redundant`] (ignored for single) and a
    /// freshly computed CRC.
    ///
    /// Errors: [`EnvError::BlockTooSmall`], or [`EnvError::TooLarge`] if the
    /// entries and the terminator do not fit the data area.
    pub fn build<'a>(
        layout: EnvLayout,
        size: usize,
        flag: u8,
        entries: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<EnvBlock, EnvError> {
        let mut block = EnvBlock::from_bytes(vec![0u8; size], layout)?;
        let data_len = size - layout.header_len();
        let mut data = Vec::with_capacity(data_len);
        for entry in entries {
            data.extend_from_slice(entry);
            data.push(0);
        }
        data.push(0);
        if data.len() > data_len {
            return Err(EnvError::TooLarge {
                needed: data.len(),
                size: data_len,
            });
        }
        let header = layout.header_len();
        block.bytes[header..header + data.len()].copy_from_slice(&data);
        if layout == EnvLayout::Redundant {
            block.bytes[4] = flag;
        }
        let crc = block.computed_crc();
        block.bytes[..4].copy_from_slice(&crc.to_le_bytes());
        Ok(block)
    }

    /// Builds a block from `(name, value)` pairs, validating each name and
    /// value as [`EnvBlock::with_updates`] does.
    pub fn from_vars(
        layout: EnvLayout,
        size: usize,
        flag: u8,
        vars: &[(&str, &str)],
    ) -> Result<EnvBlock, EnvError> {
        let mut entries = Vec::with_capacity(vars.len());
        for (name, value) in vars {
            validate_name(name)?;
            validate_value(name, value)?;
            entries.push(entry_bytes(name, value));
        }
        EnvBlock::build(layout, size, flag, entries.iter().map(Vec::as_slice))
    }

    /// The layout this block was read or built with.
    pub fn layout(&self) -> EnvLayout {
        self.layout
    }

    /// The whole copy, `envsize` bytes, as written to storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The CRC32 stored in the first 4 bytes (little-endian).
    pub fn crc(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// The CRC32 of the data area as it is now.
    pub fn computed_crc(&self) -> u32 {
        crc32(self.data())
    }

    /// The flag byte (write counter) of a redundant copy; `None` for single.
    pub fn flag(&self) -> Option<u8> {
        match self.layout {
            EnvLayout::Single => None,
            EnvLayout::Redundant => Some(self.bytes[4]),
        }
    }

    /// The data area: everything after the header, padding included.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.layout.header_len()..]
    }

    /// True if the stored CRC matches the data area.
    pub fn is_valid(&self) -> bool {
        self.crc() == self.computed_crc()
    }

    /// The raw entries (`name=value`, without NUL) in block order, up to the
    /// empty entry that ends the environment. Entries are returned as
    /// stored, even ones without `=` (which U-Boot and libubootenv skip).
    ///
    /// Errors: [`EnvError::Malformed`] if the data area has no terminating
    /// empty entry (libubootenv refuses such a block too). `device` is only
    /// used in the error.
    pub fn entries(&self, device: &std::path::Path) -> Result<Vec<&[u8]>, EnvError> {
        let data = self.data();
        let mut entries = Vec::new();
        let mut pos = 0;
        loop {
            match data.get(pos) {
                Some(0) => return Ok(entries),
                Some(_) => {}
                None => break,
            }
            match data[pos..].iter().position(|&b| b == 0) {
                Some(len) => {
                    entries.push(&data[pos..pos + len]);
                    pos += len + 1;
                }
                None => break,
            }
        }
        Err(EnvError::Malformed {
            path: device.to_path_buf(),
            reason: "the variable list has no terminating empty entry".to_string(),
        })
    }

    /// The variables as U-Boot would see them: entries without `=` skipped,
    /// a name given twice keeps its first position and its last value
    /// (U-Boot's hash table and libubootenv both let the later one win).
    /// Bytes that are not UTF-8 are replaced with U+FFFD; writes never
    /// round-trip through this, so such values stay untouched on storage.
    pub fn vars(&self, device: &std::path::Path) -> Result<Vec<(String, String)>, EnvError> {
        let mut vars: Vec<(String, String)> = Vec::new();
        for entry in self.entries(device)? {
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            let name = String::from_utf8_lossy(&entry[..eq]).into_owned();
            let value = String::from_utf8_lossy(&entry[eq + 1..]).into_owned();
            match vars.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1 = value,
                None => vars.push((name, value)),
            }
        }
        Ok(vars)
    }

    /// A new block of the same size and layout with `updates` applied
    /// (`Some(value)` = set, `None` = delete) and `flag` in the flag byte.
    ///
    /// Every entry whose name is not updated keeps its bytes and position.
    /// A set replaces the first entry of that name in place (dropping later
    /// duplicates) or appends a new entry at the end; a delete removes every
    /// entry of that name. Updates apply in order, so the last one for a
    /// name wins.
    ///
    /// Errors: [`EnvError::InvalidName`], [`EnvError::InvalidValue`],
    /// [`EnvError::Malformed`] (this block's list is unterminated),
    /// [`EnvError::TooLarge`].
    pub fn with_updates(
        &self,
        updates: &[(&str, Option<&str>)],
        flag: u8,
        device: &std::path::Path,
    ) -> Result<EnvBlock, EnvError> {
        let mut entries: Vec<Vec<u8>> = self
            .entries(device)?
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        apply_updates(&mut entries, updates)?;
        EnvBlock::build(
            self.layout,
            self.bytes.len(),
            flag,
            entries.iter().map(Vec::as_slice),
        )
    }
}

/// Applies `updates` to raw `name=value` entries; see
/// [`EnvBlock::with_updates`].
fn apply_updates(
    entries: &mut Vec<Vec<u8>>,
    updates: &[(&str, Option<&str>)],
) -> Result<(), EnvError> {
    for (name, value) in updates {
        validate_name(name)?;
        if let Some(value) = value {
            validate_value(name, value)?;
        }
    }
    for (name, value) in updates {
        let name_bytes = name.as_bytes();
        let is_this = |entry: &Vec<u8>| {
            entry.len() > name_bytes.len()
                && entry.starts_with(name_bytes)
                && entry[name_bytes.len()] == b'='
        };
        match value {
            None => entries.retain(|entry| !is_this(entry)),
            Some(value) => {
                let new_entry = entry_bytes(name, value);
                match entries.iter().position(is_this) {
                    Some(first) => {
                        let mut index = 0;
                        entries.retain(|entry| {
                            let keep = index <= first || !is_this(entry);
                            index += 1;
                            keep
                        });
                        entries[first] = new_entry;
                    }
                    None => entries.push(new_entry),
                }
            }
        }
    }
    Ok(())
}

fn entry_bytes(name: &str, value: &str) -> Vec<u8> {
    let mut entry = Vec::with_capacity(name.len() + 1 + value.len());
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    entry
}

/// A name must be non-empty and contain neither `=` nor NUL (U-Boot's
/// `env_set` and libubootenv's `libuboot_set_env` refuse the same).
pub(super) fn validate_name(name: &str) -> Result<(), EnvError> {
    let reason = if name.is_empty() {
        "is empty"
    } else if name.contains('=') {
        "contains '='"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(EnvError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

/// A value must not contain NUL, which ends an entry.
pub(super) fn validate_value(name: &str, value: &str) -> Result<(), EnvError> {
    if value.contains('\0') {
        return Err(EnvError::InvalidValue {
            name: name.to_string(),
            reason: "contains a NUL byte",
        });
    }
    Ok(())
}

/// True if a redundant copy with flag `a` is newer than one with flag `b`.
///
/// The flag is a write counter incremented modulo 256 (U-Boot `env_save`,
/// libubootenv `FLAGS_INCREMENTAL`, used for files and block devices). As in
/// U-Boot's `env_import_redund` and libubootenv's `libuboot_load`, only the
/// wrap from 255 to 0 is special; otherwise the larger counter wins.
pub fn flag_is_newer(a: u8, b: u8) -> bool {
    match (a, b) {
        (0, 255) => true,
        (255, 0) => false,
        _ => a > b,
    }
}

/// Picks the current copy of a redundant pair, `None` if neither CRC is
/// valid.
///
/// Truth table (U-Boot `env_import_redund`, libubootenv `libuboot_load`):
/// only one valid → that one; both valid → the newer flag per
/// [`flag_is_newer`]; equal flags → the first copy. The boolean "obsolete"
/// flag of NOR flash is not handled: seesaw refuses MTD devices.
pub fn select_current(first: &EnvBlock, second: &EnvBlock) -> Option<CopyIndex> {
    match (first.is_valid(), second.is_valid()) {
        (false, false) => None,
        (true, false) => Some(CopyIndex::First),
        (false, true) => Some(CopyIndex::Second),
        (true, true) => {
            let a = first.flag().unwrap_or(0);
            let b = second.flag().unwrap_or(0);
            if flag_is_newer(b, a) {
                Some(CopyIndex::Second)
            } else {
                Some(CopyIndex::First)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const DEV: &str = "/dev/mmcblk0";

    fn dev() -> &'static Path {
        Path::new(DEV)
    }

    /// A hand-assembled redundant block: nothing from the builder.
    fn raw_redundant(flag: u8, data: &[u8], size: usize) -> Vec<u8> {
        let mut area = data.to_vec();
        area.resize(size - 5, 0);
        let mut bytes = crc32fast::hash(&area).to_le_bytes().to_vec();
        bytes.push(flag);
        bytes.extend_from_slice(&area);
        bytes
    }

    fn redundant(flag: u8, valid: bool) -> EnvBlock {
        let mut bytes = raw_redundant(flag, b"a=1\0\0", 64);
        if !valid {
            bytes[10] ^= 0xff;
        }
        EnvBlock::from_bytes(bytes, EnvLayout::Redundant).unwrap()
    }

    #[test]
    fn crc_is_little_endian_zlib_crc32_over_the_whole_data_area() {
        // "foo=bar\0\0" zero-padded to 0x4000 - 4 bytes; CRC from Python's
        // zlib.crc32, stored little-endian.
        let mut bytes = vec![0u8; 0x4000];
        bytes[4..12].copy_from_slice(b"foo=bar\0");
        bytes[..4].copy_from_slice(&[0xda, 0x76, 0x6c, 0x49]);
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Single).unwrap();
        assert_eq!(block.crc(), 0x496c_76da);
        assert!(block.is_valid());
        assert_eq!(block.flag(), None);
        assert_eq!(block.data().len(), 0x4000 - 4);
        assert_eq!(
            block.vars(dev()).unwrap(),
            vec![("foo".into(), "bar".into())]
        );
    }

    #[test]
    fn crc_covers_the_padding() {
        let mut bytes = raw_redundant(7, b"a=1\0\0", 64);
        let block = EnvBlock::from_bytes(bytes.clone(), EnvLayout::Redundant).unwrap();
        assert!(block.is_valid());
        assert_eq!(block.flag(), Some(7));
        assert_eq!(&block.as_bytes()[5..10], b"a=1\0\0");
        bytes[63] = 0xff;
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Redundant).unwrap();
        assert!(!block.is_valid());
    }

    #[test]
    fn flag_byte_is_not_covered_by_the_crc() {
        let mut bytes = raw_redundant(1, b"a=1\0\0", 64);
        bytes[4] = 2;
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Redundant).unwrap();
        assert!(block.is_valid());
        assert_eq!(block.flag(), Some(2));
    }

    #[test]
    fn builder_matches_hand_assembled_bytes() {
        let built = EnvBlock::from_vars(
            EnvLayout::Redundant,
            64,
            9,
            &[("bootcmd", "run x"), ("BOOT_ORDER", "A B")],
        )
        .unwrap();
        let want = raw_redundant(9, b"bootcmd=run x\0BOOT_ORDER=A B\0\0", 64);
        assert_eq!(built.as_bytes(), want.as_slice());
        let single = EnvBlock::from_vars(EnvLayout::Single, 16, 9, &[("a", "b")]).unwrap();
        assert_eq!(&single.as_bytes()[4..], b"a=b\0\0\0\0\0\0\0\0\0");
        assert!(single.is_valid());
    }

    #[test]
    fn empty_environment_is_a_single_nul() {
        let block = EnvBlock::build(EnvLayout::Single, 8, 0, []).unwrap();
        assert!(block.is_valid());
        assert_eq!(block.data(), &[0, 0, 0, 0]);
        assert!(block.vars(dev()).unwrap().is_empty());
    }

    #[test]
    fn too_large_counts_every_nul() {
        // data area of 10 bytes: "abc=1234\0" (9) + final NUL = 10 fits.
        let size = 4 + 10;
        assert!(EnvBlock::from_vars(EnvLayout::Single, size, 0, &[("abc", "1234")]).is_ok());
        match EnvBlock::from_vars(EnvLayout::Single, size, 0, &[("abc", "12345")]) {
            Err(EnvError::TooLarge { needed, size }) => assert_eq!((needed, size), (11, 10)),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn block_too_small_is_rejected() {
        assert!(matches!(
            EnvBlock::from_bytes(vec![0; 5], EnvLayout::Redundant),
            Err(EnvError::BlockTooSmall {
                size: 5,
                minimum: 6
            })
        ));
    }

    #[test]
    fn unterminated_list_is_malformed() {
        let mut area = vec![b'x'; 12];
        area[0] = b'a';
        let mut bytes = crc32fast::hash(&area).to_le_bytes().to_vec();
        bytes.extend_from_slice(&area);
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Single).unwrap();
        assert!(block.is_valid());
        assert!(matches!(block.vars(dev()), Err(EnvError::Malformed { .. })));
        // A list that fills the area but ends with "\0" and no empty entry.
        let area = b"a=1\0b=2\0".to_vec();
        let mut bytes = crc32fast::hash(&area).to_le_bytes().to_vec();
        bytes.extend_from_slice(&area);
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Single).unwrap();
        assert!(matches!(
            block.entries(dev()),
            Err(EnvError::Malformed { .. })
        ));
    }

    #[test]
    fn vars_skip_entries_without_equals_and_last_duplicate_wins() {
        let bytes = raw_redundant(0, b"a=1\0junk\0b=2\0a=3\0\0c=ignored\0", 64);
        let block = EnvBlock::from_bytes(bytes, EnvLayout::Redundant).unwrap();
        assert_eq!(
            block.vars(dev()).unwrap(),
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            block.entries(dev()).unwrap(),
            vec![&b"a=1"[..], b"junk", b"b=2", b"a=3"]
        );
    }

    #[test]
    fn updates_preserve_other_entries_byte_for_byte_and_in_order() {
        let data: &[u8] = b"zeta=1\0odd\xffbytes=\xfe\0junk\0BOOT_ORDER=B A\0alpha=x=y\0\0";
        let old = EnvBlock::from_bytes(raw_redundant(4, data, 128), EnvLayout::Redundant).unwrap();
        let new = old
            .with_updates(
                &[
                    ("BOOT_ORDER", Some("A B")),
                    ("BOOT_A_LEFT", Some("3")),
                    ("alpha", None),
                    ("missing", None),
                ],
                5,
                dev(),
            )
            .unwrap();
        let want = raw_redundant(
            5,
            b"zeta=1\0odd\xffbytes=\xfe\0junk\0BOOT_ORDER=A B\0BOOT_A_LEFT=3\0\0",
            128,
        );
        assert_eq!(new.as_bytes(), want.as_slice());
        assert!(new.is_valid());
    }

    #[test]
    fn set_replaces_first_duplicate_in_place_and_drops_the_rest() {
        let old = EnvBlock::from_bytes(
            raw_redundant(0, b"a=1\0b=2\0a=3\0c=4\0\0", 64),
            EnvLayout::Redundant,
        )
        .unwrap();
        let new = old.with_updates(&[("a", Some("9"))], 1, dev()).unwrap();
        assert_eq!(
            new.entries(dev()).unwrap(),
            vec![&b"a=9"[..], b"b=2", b"c=4"]
        );
        let new = old.with_updates(&[("a", None)], 1, dev()).unwrap();
        assert_eq!(new.entries(dev()).unwrap(), vec![&b"b=2"[..], b"c=4"]);
    }

    #[test]
    fn name_prefix_does_not_match() {
        let old = EnvBlock::from_bytes(
            raw_redundant(0, b"BOOT_A_LEFT=3\0BOOT=x\0\0", 64),
            EnvLayout::Redundant,
        )
        .unwrap();
        let new = old.with_updates(&[("BOOT_A", None)], 1, dev()).unwrap();
        assert_eq!(new.as_bytes()[5..], old.as_bytes()[5..]);
    }

    #[test]
    fn invalid_names_and_values_are_rejected() {
        let old = EnvBlock::from_vars(EnvLayout::Single, 64, 0, &[]).unwrap();
        for (name, value, want_name) in [
            ("", Some("1"), true),
            ("a=b", Some("1"), true),
            ("a\0b", None, true),
            ("a", Some("x\0y"), false),
        ] {
            match old.with_updates(&[("ok", Some("1")), (name, value)], 0, dev()) {
                Err(EnvError::InvalidName { .. }) if want_name => {}
                Err(EnvError::InvalidValue { .. }) if !want_name => {}
                other => panic!("{name:?}={value:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn empty_value_is_set_not_deleted() {
        let old = EnvBlock::from_vars(EnvLayout::Single, 64, 0, &[("a", "1")]).unwrap();
        let new = old.with_updates(&[("a", Some(""))], 0, dev()).unwrap();
        assert_eq!(new.entries(dev()).unwrap(), vec![&b"a="[..]]);
    }

    #[test]
    fn flag_comparison_wraps_only_from_255_to_0() {
        assert!(flag_is_newer(1, 0));
        assert!(flag_is_newer(255, 254));
        assert!(flag_is_newer(0, 255));
        assert!(!flag_is_newer(255, 0));
        assert!(!flag_is_newer(3, 3));
        // Not a general serial-number comparison: 255 beats 1.
        assert!(flag_is_newer(255, 1));
    }

    /// (flag, CRC valid) of one copy.
    type Copy = (u8, bool);

    #[test]
    fn redundant_selection_truth_table() {
        use CopyIndex::{First, Second};
        let cases: &[(Copy, Copy, Option<CopyIndex>)] = &[
            ((1, true), (2, true), Some(Second)),
            ((2, true), (1, true), Some(First)),
            ((5, true), (5, true), Some(First)),
            ((255, true), (0, true), Some(Second)),
            ((0, true), (255, true), Some(First)),
            ((254, true), (255, true), Some(Second)),
            ((9, true), (10, false), Some(First)),
            ((10, false), (9, true), Some(Second)),
            ((0, false), (0, false), None),
        ];
        for ((fa, va), (fb, vb), want) in cases {
            let got = select_current(&redundant(*fa, *va), &redundant(*fb, *vb));
            assert_eq!(got, *want, "first=({fa},{va}) second=({fb},{vb})");
        }
    }

    #[test]
    fn copy_index_other() {
        assert_eq!(CopyIndex::First.other(), CopyIndex::Second);
        assert_eq!(CopyIndex::Second.other().index(), 0);
    }

    #[test]
    fn crc32_matches_zlib_and_an_independent_implementation() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut data = vec![0u8; 0x4000 - 5];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1];
        }
        for len in [1, 7, 255, 4096, data.len()] {
            assert_eq!(crc32(&data[..len]), crc32fast::hash(&data[..len]), "{len}");
        }
    }
}
