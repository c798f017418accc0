//! The two root filesystem slots and the boot contract shared with U-Boot.
//!
//! Owns the meaning of `BOOT_ORDER`, `BOOT_A_LEFT` and `BOOT_B_LEFT` (the names
//! RAUC's U-Boot integration uses) and of the `seesaw.slot=` kernel argument.
//! Everything here is pure: functions take values and return values or the
//! variable updates to write. This module never touches the disk or the
//! environment; the caller writes what it returns in ONE environment write.
//!
//! The boot side of the contract is implemented by the scripts in
//! `bootloader-scripts/`; [`BootState::select_boot`] is the same algorithm in
//! Rust, used to simulate a reboot and to test the daemon side against it.

use std::fmt;
use std::str::FromStr;

/// Tries a slot gets when it is installed or committed (`BOOT_x_LEFT`).
pub const DEFAULT_TRIES: u8 = 3;

/// Name of the boot order variable: slots to try, space-separated, e.g. `A B`.
pub const VAR_BOOT_ORDER: &str = "BOOT_ORDER";

/// Name of the variable that keeps the anti-rollback floor (decimal) in the
/// bootloader environment, outside the data partition: a lost, damaged or
/// older `state.json` cannot lower it. U-Boot does not read it; the boot
/// scripts carry it through their own environment writes.
pub const VAR_FLOOR: &str = "SEESAW_FLOOR";

/// One of the two root filesystem slots (serialised as `"A"` / `"B"`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Slot {
    /// Slot A (bootname `A`).
    A,
    /// Slot B (bootname `B`).
    B,
}

impl Slot {
    /// Both slots, in order.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot: the one that is written while this one runs.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The bootname as used in `BOOT_ORDER`, `seesaw.slot=` and the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The environment variable holding this slot's tries left (`BOOT_A_LEFT`).
    pub fn left_var(self) -> &'static str {
        match self {
            Slot::A => "BOOT_A_LEFT",
            Slot::B => "BOOT_B_LEFT",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the boot contract: values found in the environment or on the
/// kernel command line that do not follow it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    /// A slot name other than `A` or `B`.
    #[error("unknown slot name {0:?} (expected A or B)")]
    UnknownSlot(String),
    /// The kernel command line has no `seesaw.slot=` argument.
    #[error("kernel command line has no seesaw.slot= argument")]
    NoSlotArgument,
}

impl crate::failure::Classify for SlotError {
    /// The boot contract's values come from the environment and the
    /// command line the bootloader wrote.
    fn kind(&self) -> crate::failure::Kind {
        crate::failure::Kind::Environment
    }
}

impl FromStr for Slot {
    type Err = SlotError;
    fn from_str(s: &str) -> Result<Slot, SlotError> {
        match s {
            "A" => Ok(Slot::A),
            "B" => Ok(Slot::B),
            other => Err(SlotError::UnknownSlot(other.to_string())),
        }
    }
}

/// Reads the booted slot from a kernel command line (`/proc/cmdline`).
///
/// The line is split into parameters exactly as the kernel's `next_arg()`
/// (`lib/cmdline.c`) splits it: whitespace separates parameters except
/// inside double quotes, a quoted value (`seesaw.slot="B"`) or a quoted
/// whole parameter (`"seesaw.slot=B"`) loses its quotes, and a
/// `seesaw.slot=` inside another parameter's quoted value is not a
/// parameter. Parsing stops at `--`, after which the kernel hands the
/// arguments to init. The last `seesaw.slot=` wins, as in the kernel.
///
/// Errors: [`SlotError::NoSlotArgument`], [`SlotError::UnknownSlot`].
pub fn booted_slot_from_cmdline(cmdline: &str) -> Result<Slot, SlotError> {
    let mut found = None;
    for (param, value) in kernel_params(cmdline) {
        if param == "--" && value.is_none() {
            break;
        }
        if param == "seesaw.slot" {
            found = Some(value.unwrap_or_default().parse::<Slot>()?);
        }
    }
    found.ok_or(SlotError::NoSlotArgument)
}

/// The kernel's `isspace()` (`lib/ctype.c`) on ASCII.
fn kernel_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits a kernel command line into `(param, value)` pairs as the
/// kernel's `next_arg()` does (`value` is `None` without `=`).
fn kernel_params(cmdline: &str) -> Vec<(String, Option<String>)> {
    let bytes = cmdline.as_bytes();
    let mut at = 0;
    while at < bytes.len() && kernel_space(bytes[at]) {
        at += 1;
    }
    let mut out = Vec::new();
    while at < bytes.len() {
        let mut arg = &bytes[at..];
        let mut quoted = false;
        let mut in_quote = false;
        if arg[0] == b'"' {
            arg = &arg[1..];
            quoted = true;
            in_quote = true;
        }
        let mut i = 0;
        let mut equals = None;
        while i < arg.len() {
            if kernel_space(arg[i]) && !in_quote {
                break;
            }
            if equals.is_none() && arg[i] == b'=' {
                equals = Some(i);
            }
            if arg[i] == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        let consumed = i + usize::from(quoted);
        // The parameter ends at i; a closing quote just before i is dropped
        // when the value or the whole parameter was opened with one.
        let mut end = i;
        let (param, value) = match equals {
            None => {
                if quoted && end > 0 && arg[end - 1] == b'"' {
                    end -= 1;
                }
                (&arg[..end], None)
            }
            Some(eq) => {
                let mut start = eq + 1;
                if start < end && arg[start] == b'"' {
                    start += 1;
                    if arg[end - 1] == b'"' {
                        end -= 1;
                    }
                } else if quoted && end > 0 && arg[end - 1] == b'"' {
                    end -= 1;
                }
                (&arg[..eq], Some(&arg[start..end.max(start)]))
            }
        };
        out.push((
            String::from_utf8_lossy(param).into_owned(),
            value.map(|v| String::from_utf8_lossy(v).into_owned()),
        ));
        at += consumed;
        while at < bytes.len() && kernel_space(bytes[at]) {
            at += 1;
        }
    }
    out
}

/// The boot contract variables, as the boot script sees them.
///
/// Built from plain values so every transition can be tested; read from an
/// environment with [`BootState::from_vars`], written back with the updates
/// each transition returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// Slots to try, in order (no duplicates; may be empty or one slot).
    pub order: Vec<Slot>,
    /// Tries left for A.
    pub a_left: u8,
    /// Tries left for B.
    pub b_left: u8,
}

/// A variable update for the environment: (name, new value).
pub type VarUpdate = (&'static str, String);

impl BootState {
    /// Reads the contract variables exactly as the boot scripts read them
    /// (`bootloader-scripts/*/boot.cmd`), so that seesaw never believes in a
    /// try or a slot that U-Boot would not boot:
    ///
    /// - `BOOT_x_LEFT`: unset or empty is 3 (the scripts' `test -z`
    ///   default); exactly `0`, `1`, `2` or `3` is that count (the scripts
    ///   compare strings); anything else (` 3`, `03`, `+3`, `4`, `x`) is 0.
    /// - `BOOT_ORDER`: unset or empty is `A B`; otherwise the words split on
    ///   space, tab and newline as hush splits `${BOOT_ORDER}`, each `A` or
    ///   `B` in order, anything else skipped, a repeated slot counted once
    ///   (the scripts' loop never gets to it).
    ///
    /// Never fails: every environment has one meaning for U-Boot.
    pub fn from_vars<'a>(mut get: impl FnMut(&str) -> Option<&'a str>) -> BootState {
        let order = match get(VAR_BOOT_ORDER) {
            None | Some("") => vec![Slot::A, Slot::B],
            Some(text) => parse_order(text),
        };
        let a_left = tries_as_scripts_read(get(Slot::A.left_var()));
        let b_left = tries_as_scripts_read(get(Slot::B.left_var()));
        BootState {
            order,
            a_left,
            b_left,
        }
    }

    /// [`BootState::from_vars`] over `name=value` pairs as an environment
    /// lists them (the first pair of a name wins).
    pub fn from_pairs(vars: &[(String, String)]) -> BootState {
        BootState::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()))
    }

    /// Tries left for `slot`.
    pub fn left(&self, slot: Slot) -> u8 {
        match slot {
            Slot::A => self.a_left,
            Slot::B => self.b_left,
        }
    }

    fn set_left(&mut self, slot: Slot, n: u8) {
        match slot {
            Slot::A => self.a_left = n,
            Slot::B => self.b_left = n,
        }
    }

    /// Whether `slot` is a fallback U-Boot turns to when the slot before it
    /// runs out of tries: it is in the boot order with tries left.
    pub fn is_fallback(&self, slot: Slot) -> bool {
        self.left(slot) > 0 && self.order.contains(&slot)
    }

    /// The slot U-Boot will try first: the first in the boot order with tries left.
    pub fn primary(&self) -> Option<Slot> {
        self.order.iter().copied().find(|s| self.left(*s) > 0)
    }

    /// `BOOT_ORDER` as written to the environment, e.g. `"B A"`.
    pub fn order_string(&self) -> String {
        let names: Vec<&str> = self.order.iter().map(|s| s.name()).collect();
        names.join(" ")
    }

    /// After writing `new`: try `new` first with full tries, the running slot
    /// second. Returns the updates for ONE environment write. Does not write.
    pub fn install(&mut self, new: Slot) -> Vec<VarUpdate> {
        self.order = vec![new, new.other()];
        self.set_left(new, DEFAULT_TRIES);
        vec![
            (VAR_BOOT_ORDER, self.order_string()),
            (new.left_var(), DEFAULT_TRIES.to_string()),
        ]
    }

    /// Before a byte is written to `target`: U-Boot must never boot it
    /// while it holds part of an image. A target with no tries left is out
    /// of U-Boot's reach already and nothing changes (so a refused bundle
    /// leaves the environment byte for byte as it was). A target with tries
    /// left loses them, and since a write is made anyway it also leaves
    /// the boot order (which keeps the running slot and is never empty: an
    /// empty `BOOT_ORDER` means `A B` to the scripts), so not even the
    /// scripts' last resort (every slot in `BOOT_ORDER` gets its tries back
    /// when none has any) reaches it. Does not write.
    pub fn begin_install(&mut self, target: Slot) -> Vec<VarUpdate> {
        if self.left(target) == 0 {
            return Vec::new();
        }
        let before = self.clone();
        self.order = vec![target.other()];
        self.set_left(target, 0);
        self.changes_from(&before)
    }

    /// On a boot of `booted` that is not a trial, i.e. of a committed slot:
    /// gives back the try the boot script took, so a committed slot boots
    /// again after any number of boots (what RAUC's mark-good service does
    /// on every boot). Returns the updates, empty when its tries are full.
    /// Does not write.
    pub fn give_back_tries(&mut self, booted: Slot) -> Vec<VarUpdate> {
        let before = self.clone();
        self.set_left(booted, DEFAULT_TRIES);
        self.changes_from(&before)
    }

    /// Puts `slot` first in the boot order, the other slot keeping its
    /// place after it. For a committed slot that booted when no install is
    /// waiting for the other one. Returns the updates, empty when it is
    /// first already. Does not write.
    pub fn put_first(&mut self, slot: Slot) -> Vec<VarUpdate> {
        let before = self.clone();
        self.order.retain(|s| *s != slot);
        self.order.insert(0, slot);
        self.changes_from(&before)
    }

    /// The updates that turn `before` into `self`: `BOOT_ORDER` if the
    /// order differs, each `BOOT_x_LEFT` whose count differs. Empty when
    /// U-Boot would see no difference.
    pub fn changes_from(&self, before: &BootState) -> Vec<VarUpdate> {
        let mut updates = Vec::new();
        if self.order != before.order {
            updates.push((VAR_BOOT_ORDER, self.order_string()));
        }
        for slot in Slot::ALL {
            if self.left(slot) != before.left(slot) {
                updates.push((slot.left_var(), self.left(slot).to_string()));
            }
        }
        updates
    }

    /// Commit `slot` (mark good): its tries are reset to full. The boot order is
    /// left as the install wrote it. Does not write.
    pub fn mark_good(&mut self, slot: Slot) -> Vec<VarUpdate> {
        self.set_left(slot, DEFAULT_TRIES);
        vec![(slot.left_var(), DEFAULT_TRIES.to_string())]
    }

    /// Mark `slot` bad: no tries left, so U-Boot skips it. Does not write.
    pub fn mark_bad(&mut self, slot: Slot) -> Vec<VarUpdate> {
        self.set_left(slot, 0);
        vec![(slot.left_var(), "0".to_string())]
    }

    /// What the boot script does at power-on, as a pure function: the first
    /// slot in the boot order with tries left is chosen and its tries are
    /// decremented. When none has tries left the script resets both to
    /// [`DEFAULT_TRIES`] and resets the board ([`BootChoice::ResetTries`]).
    pub fn select_boot(&mut self) -> BootChoice {
        match self.primary() {
            Some(slot) => {
                let left = self.left(slot) - 1;
                self.set_left(slot, left);
                BootChoice::Boot {
                    slot,
                    tries_left: left,
                }
            }
            None => {
                self.a_left = DEFAULT_TRIES;
                self.b_left = DEFAULT_TRIES;
                BootChoice::ResetTries
            }
        }
    }

    /// All three contract variables as the boot script saves them.
    pub fn to_updates(&self) -> Vec<VarUpdate> {
        vec![
            (VAR_BOOT_ORDER, self.order_string()),
            (Slot::A.left_var(), self.a_left.to_string()),
            (Slot::B.left_var(), self.b_left.to_string()),
        ]
    }
}

/// What the boot script decided, see [`BootState::select_boot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootChoice {
    /// Boot this slot; its tries were decremented to `tries_left`.
    Boot {
        /// The slot booted (passed to the kernel as `seesaw.slot=`).
        slot: Slot,
        /// Tries left after the decrement.
        tries_left: u8,
    },
    /// No slot had tries left: both were reset to full and the board resets.
    ResetTries,
}

fn parse_order(text: &str) -> Vec<Slot> {
    let mut order = Vec::new();
    for word in text.split([' ', '\t', '\n']) {
        if let Ok(slot) = word.parse::<Slot>() {
            if !order.contains(&slot) {
                order.push(slot);
            }
        }
    }
    order
}

fn tries_as_scripts_read(value: Option<&str>) -> u8 {
    match value {
        None | Some("") => DEFAULT_TRIES,
        Some("3") => 3,
        Some("2") => 2,
        Some("1") => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn state(order: &[Slot], a: u8, b: u8) -> BootState {
        BootState {
            order: order.to_vec(),
            a_left: a,
            b_left: b,
        }
    }

    fn from(map: &[(&str, &str)]) -> BootState {
        let m: HashMap<String, String> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BootState::from_vars(|k| m.get(k).map(|s| s.as_str()))
    }

    #[test]
    fn other_and_names() {
        assert_eq!(Slot::A.other(), Slot::B);
        assert_eq!(Slot::B.other(), Slot::A);
        assert_eq!(Slot::A.left_var(), "BOOT_A_LEFT");
        assert_eq!(Slot::B.left_var(), "BOOT_B_LEFT");
        assert_eq!("B".parse::<Slot>(), Ok(Slot::B));
        assert!(matches!(
            "b".parse::<Slot>(),
            Err(SlotError::UnknownSlot(_))
        ));
    }

    #[test]
    fn cmdline_parsing() {
        assert_eq!(
            booted_slot_from_cmdline("console=ttyS0 root=/dev/vda2 seesaw.slot=A rw\n"),
            Ok(Slot::A)
        );
        assert_eq!(
            booted_slot_from_cmdline("seesaw.slot=A seesaw.slot=B"),
            Ok(Slot::B)
        );
        assert_eq!(
            booted_slot_from_cmdline("root=/dev/vda2"),
            Err(SlotError::NoSlotArgument)
        );
        assert_eq!(
            booted_slot_from_cmdline("seesaw.slot=C"),
            Err(SlotError::UnknownSlot("C".into()))
        );
        // A prefix-alike argument is not ours.
        assert_eq!(
            booted_slot_from_cmdline("xseesaw.slot=A"),
            Err(SlotError::NoSlotArgument)
        );
    }

    #[test]
    fn defaults_match_boot_script() {
        assert_eq!(from(&[]), state(&[Slot::A, Slot::B], 3, 3));
        assert_eq!(
            from(&[
                ("BOOT_ORDER", "B A"),
                ("BOOT_A_LEFT", "0"),
                ("BOOT_B_LEFT", "2")
            ]),
            state(&[Slot::B, Slot::A], 0, 2)
        );
        assert_eq!(from(&[("BOOT_ORDER", "B")]), state(&[Slot::B], 3, 3));
        // `test -z` in the scripts: empty is unset.
        assert_eq!(
            from(&[
                ("BOOT_ORDER", ""),
                ("BOOT_A_LEFT", ""),
                ("BOOT_B_LEFT", "1")
            ]),
            state(&[Slot::A, Slot::B], 3, 1)
        );
    }

    #[test]
    fn tries_are_read_as_the_scripts_compare_them() {
        // The scripts compare strings with "3", "2", "1": anything else is 0.
        for (value, tries) in [
            ("3", 3),
            ("2", 2),
            ("1", 1),
            ("0", 0),
            ("4", 0),
            ("255", 0),
            ("256", 0),
            ("-1", 0),
            ("x", 0),
            (" 3", 0),
            ("3 ", 0),
            ("03", 0),
            ("+3", 0),
            ("3\n", 0),
            ("\u{0663}", 0),
        ] {
            assert_eq!(from(&[("BOOT_A_LEFT", value)]).a_left, tries, "{value:?}");
            assert_eq!(from(&[("BOOT_B_LEFT", value)]).b_left, tries, "{value:?}");
        }
    }

    #[test]
    fn boot_order_is_read_as_hush_splits_it() {
        for (value, order) in [
            ("A B", vec![Slot::A, Slot::B]),
            ("B A", vec![Slot::B, Slot::A]),
            ("B\tA", vec![Slot::B, Slot::A]),
            ("  B   A  ", vec![Slot::B, Slot::A]),
            ("B\nA", vec![Slot::B, Slot::A]),
            ("A A", vec![Slot::A]),
            ("B A B", vec![Slot::B, Slot::A]),
            ("A C", vec![Slot::A]),
            ("a b", vec![]),
            ("C B", vec![Slot::B]),
            ("B,A", vec![]),
            ("\"B\" A", vec![Slot::A]),
            (" ", vec![]),
        ] {
            assert_eq!(from(&[("BOOT_ORDER", value)]).order, order, "{value:?}");
        }
    }

    #[test]
    fn begin_install_takes_the_target_out_of_reach() {
        for initial in [
            state(&[Slot::A, Slot::B], 3, 3),
            state(&[Slot::B, Slot::A], 2, 3),
            state(&[Slot::B], 3, 1),
        ] {
            let mut s = initial.clone();
            let updates = s.begin_install(Slot::B);
            assert_eq!(s.order, vec![Slot::A]);
            assert_eq!(s.b_left, 0);
            assert_eq!(s.a_left, initial.a_left);
            assert_eq!(s.changes_from(&initial), updates);
            // Whatever happens to A's tries, U-Boot never picks B.
            for a in 0..=3 {
                let mut t = s.clone();
                t.a_left = a;
                for _ in 0..10 {
                    if let BootChoice::Boot { slot, .. } = t.select_boot() {
                        assert_eq!(slot, Slot::A);
                    }
                }
            }
        }
        // No tries left: unreachable already, nothing written.
        for initial in [
            state(&[Slot::A, Slot::B], 3, 0),
            state(&[Slot::B, Slot::A], 3, 0),
        ] {
            let mut s = initial.clone();
            assert!(s.begin_install(Slot::B).is_empty());
            assert_eq!(s, initial);
        }
    }

    #[test]
    fn give_back_and_put_first() {
        let mut s = state(&[Slot::B, Slot::A], 2, 0);
        assert_eq!(
            s.give_back_tries(Slot::A),
            vec![("BOOT_A_LEFT", "3".to_string())]
        );
        assert!(s.give_back_tries(Slot::A).is_empty());
        assert_eq!(
            s.put_first(Slot::A),
            vec![("BOOT_ORDER", "A B".to_string())]
        );
        assert!(s.put_first(Slot::A).is_empty());
        assert_eq!(s, state(&[Slot::A, Slot::B], 3, 0));
        let mut one = state(&[Slot::B], 3, 3);
        assert_eq!(
            one.put_first(Slot::A),
            vec![("BOOT_ORDER", "A B".to_string())]
        );
    }

    #[test]
    fn kernel_command_line_as_the_kernel_splits_it() {
        for (line, slot) in [
            ("seesaw.slot=B", Some(Slot::B)),
            ("seesaw.slot=\"B\"", Some(Slot::B)),
            ("\"seesaw.slot=B\"", Some(Slot::B)),
            ("console=ttyS0\tseesaw.slot=A\n", Some(Slot::A)),
            ("x=\"a seesaw.slot=B\" seesaw.slot=A", Some(Slot::A)),
            ("x=\"a seesaw.slot=B\"", None),
            ("x=\"a b\" seesaw.slot=B", Some(Slot::B)),
            ("seesaw.slot=A -- seesaw.slot=B", Some(Slot::A)),
            ("-- seesaw.slot=B", None),
            ("seesaw.slot=A --x seesaw.slot=B", Some(Slot::B)),
            ("seesaw.slot=A\x0bseesaw.slot=B", Some(Slot::B)),
            ("xseesaw.slot=A", None),
            ("seesaw.slotx=A", None),
            ("", None),
            ("   ", None),
        ] {
            let got = booted_slot_from_cmdline(line).ok();
            assert_eq!(got, slot, "{line:?}");
        }
        assert_eq!(
            booted_slot_from_cmdline("seesaw.slot=\"B C\""),
            Err(SlotError::UnknownSlot("B C".into()))
        );
        assert_eq!(
            booted_slot_from_cmdline("seesaw.slot"),
            Err(SlotError::UnknownSlot(String::new()))
        );
        assert_eq!(
            kernel_params("a=\"x y\" \"b=1\" c"),
            vec![
                ("a".to_string(), Some("x y".to_string())),
                ("b".to_string(), Some("1".to_string())),
                ("c".to_string(), None)
            ]
        );
    }

    #[test]
    fn install_puts_new_slot_first_with_full_tries() {
        for (initial, new) in [
            (state(&[Slot::A, Slot::B], 3, 3), Slot::B),
            (state(&[Slot::A, Slot::B], 3, 0), Slot::B),
            (state(&[Slot::A], 2, 0), Slot::B),
            (state(&[Slot::B, Slot::A], 3, 3), Slot::A),
            (state(&[], 0, 0), Slot::A),
        ] {
            let mut s = initial.clone();
            let updates = s.install(new);
            assert_eq!(s.order, vec![new, new.other()]);
            assert_eq!(s.left(new), 3);
            assert_eq!(s.left(new.other()), initial.left(new.other()));
            assert_eq!(
                updates,
                vec![
                    ("BOOT_ORDER", format!("{} {}", new, new.other())),
                    (new.left_var(), "3".to_string())
                ]
            );
            assert_eq!(s.primary(), Some(new));
        }
    }

    #[test]
    fn mark_good_and_bad() {
        let mut s = state(&[Slot::B, Slot::A], 3, 2);
        assert_eq!(s.mark_good(Slot::B), vec![("BOOT_B_LEFT", "3".to_string())]);
        assert_eq!(s, state(&[Slot::B, Slot::A], 3, 3));
        assert_eq!(s.mark_bad(Slot::B), vec![("BOOT_B_LEFT", "0".to_string())]);
        assert_eq!(s, state(&[Slot::B, Slot::A], 3, 0));
        assert_eq!(s.primary(), Some(Slot::A));
        s.mark_bad(Slot::A);
        assert_eq!(s.primary(), None);
    }

    #[test]
    fn select_boot_every_cell() {
        // (order, a, b) -> (choice, a', b')
        type Cell<'a> = (&'a [Slot], u8, u8, BootChoice, u8, u8);
        let cases: &[Cell] = &[
            (&[Slot::A, Slot::B], 3, 3, boot(Slot::A, 2), 2, 3),
            (&[Slot::A, Slot::B], 1, 3, boot(Slot::A, 0), 0, 3),
            (&[Slot::A, Slot::B], 0, 3, boot(Slot::B, 2), 0, 2),
            (&[Slot::B, Slot::A], 3, 3, boot(Slot::B, 2), 3, 2),
            (&[Slot::B, Slot::A], 3, 0, boot(Slot::A, 2), 2, 0),
            (&[Slot::B, Slot::A], 0, 0, BootChoice::ResetTries, 3, 3),
            (&[Slot::B], 3, 0, BootChoice::ResetTries, 3, 3),
            (&[Slot::B], 0, 1, boot(Slot::B, 0), 0, 0),
            (&[], 3, 3, BootChoice::ResetTries, 3, 3),
        ];
        for (order, a, b, choice, a2, b2) in cases {
            let mut s = state(order, *a, *b);
            assert_eq!(s.select_boot(), *choice, "{order:?} {a} {b}");
            assert_eq!((s.a_left, s.b_left), (*a2, *b2), "{order:?} {a} {b}");
            assert_eq!(s.order, order.to_vec());
        }
    }

    fn boot(slot: Slot, tries_left: u8) -> BootChoice {
        BootChoice::Boot { slot, tries_left }
    }

    #[test]
    fn trial_boot_that_never_commits_falls_back_after_three_boots() {
        let mut s = state(&[Slot::A, Slot::B], 3, 3);
        s.install(Slot::B);
        let boots: Vec<BootChoice> = (0..4).map(|_| s.select_boot()).collect();
        assert_eq!(
            boots,
            vec![
                boot(Slot::B, 2),
                boot(Slot::B, 1),
                boot(Slot::B, 0),
                boot(Slot::A, 2)
            ]
        );
    }

    #[test]
    fn to_updates_round_trips() {
        let s = state(&[Slot::B, Slot::A], 1, 0);
        let updates = s.to_updates();
        let m: HashMap<&str, &str> = updates.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(BootState::from_vars(|k| m.get(k).copied()), s);
    }
}
