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
    /// `BOOT_ORDER` names a slot twice or names something else.
    #[error("invalid BOOT_ORDER {0:?}")]
    InvalidBootOrder(String),
    /// `BOOT_x_LEFT` is not a number from 0 to 255.
    #[error("invalid {var} value {value:?} (expected a number of tries)")]
    InvalidTries {
        /// The variable name.
        var: &'static str,
        /// The value found.
        value: String,
    },
    /// The kernel command line has no `seesaw.slot=` argument.
    #[error("kernel command line has no seesaw.slot= argument")]
    NoSlotArgument,
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

/// Reads the booted slot from a kernel command line (`/proc/cmdline` format:
/// space-separated arguments; the last `seesaw.slot=` wins, as in the kernel).
///
/// Errors: [`SlotError::NoSlotArgument`], [`SlotError::UnknownSlot`].
pub fn booted_slot_from_cmdline(cmdline: &str) -> Result<Slot, SlotError> {
    let mut found = None;
    for arg in cmdline.split_ascii_whitespace() {
        if let Some(v) = arg.strip_prefix("seesaw.slot=") {
            found = Some(v.parse::<Slot>()?);
        }
    }
    found.ok_or(SlotError::NoSlotArgument)
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
    /// Reads the contract variables from environment variables, applying the
    /// boot script's defaults for unset ones (`BOOT_ORDER="A B"`, 3 tries).
    ///
    /// Errors: [`SlotError::InvalidBootOrder`], [`SlotError::InvalidTries`].
    pub fn from_vars<'a>(
        mut get: impl FnMut(&str) -> Option<&'a str>,
    ) -> Result<BootState, SlotError> {
        let order = match get(VAR_BOOT_ORDER) {
            None => vec![Slot::A, Slot::B],
            Some(text) => parse_order(text)?,
        };
        let tries = |var: &'static str, v: Option<&str>| -> Result<u8, SlotError> {
            match v {
                None => Ok(DEFAULT_TRIES),
                // The boot script only knows the counts 0..=3 (it decrements
                // without arithmetic); any larger count it treats as 0.
                Some(v) => match v.trim().parse::<u8>() {
                    Ok(n) if n <= DEFAULT_TRIES => Ok(n),
                    Ok(_) => Ok(0),
                    Err(_) => Err(SlotError::InvalidTries {
                        var,
                        value: v.to_string(),
                    }),
                },
            }
        };
        let a_left = tries(Slot::A.left_var(), get(Slot::A.left_var()))?;
        let b_left = tries(Slot::B.left_var(), get(Slot::B.left_var()))?;
        Ok(BootState {
            order,
            a_left,
            b_left,
        })
    }

    /// [`BootState::from_vars`] over `name=value` pairs as an environment
    /// lists them (the first pair of a name wins).
    pub fn from_pairs(vars: &[(String, String)]) -> Result<BootState, SlotError> {
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

fn parse_order(text: &str) -> Result<Vec<Slot>, SlotError> {
    let mut order = Vec::new();
    for word in text.split_ascii_whitespace() {
        let slot = word
            .parse::<Slot>()
            .map_err(|_| SlotError::InvalidBootOrder(text.to_string()))?;
        if order.contains(&slot) {
            return Err(SlotError::InvalidBootOrder(text.to_string()));
        }
        order.push(slot);
    }
    Ok(order)
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

    fn from(map: &[(&str, &str)]) -> Result<BootState, SlotError> {
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
        assert_eq!(from(&[]).unwrap(), state(&[Slot::A, Slot::B], 3, 3));
        assert_eq!(
            from(&[
                ("BOOT_ORDER", "B A"),
                ("BOOT_A_LEFT", "0"),
                ("BOOT_B_LEFT", "2")
            ])
            .unwrap(),
            state(&[Slot::B, Slot::A], 0, 2)
        );
        assert_eq!(
            from(&[("BOOT_ORDER", "B")]).unwrap(),
            state(&[Slot::B], 3, 3)
        );
        assert_eq!(from(&[("BOOT_ORDER", "")]).unwrap(), state(&[], 3, 3));
        // Counts the script cannot decrement count as no tries left.
        assert_eq!(
            from(&[("BOOT_A_LEFT", "4"), ("BOOT_B_LEFT", "255")]).unwrap(),
            state(&[Slot::A, Slot::B], 0, 0)
        );
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(matches!(
            from(&[("BOOT_ORDER", "A A")]),
            Err(SlotError::InvalidBootOrder(_))
        ));
        assert!(matches!(
            from(&[("BOOT_ORDER", "A C")]),
            Err(SlotError::InvalidBootOrder(_))
        ));
        assert!(matches!(
            from(&[("BOOT_A_LEFT", "-1")]),
            Err(SlotError::InvalidTries {
                var: "BOOT_A_LEFT",
                ..
            })
        ));
        assert!(matches!(
            from(&[("BOOT_B_LEFT", "x")]),
            Err(SlotError::InvalidTries {
                var: "BOOT_B_LEFT",
                ..
            })
        ));
        assert!(matches!(
            from(&[("BOOT_B_LEFT", "256")]),
            Err(SlotError::InvalidTries { .. })
        ));
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
        assert_eq!(BootState::from_vars(|k| m.get(k).copied()).unwrap(), s);
    }
}
