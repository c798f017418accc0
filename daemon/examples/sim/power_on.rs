//! One power-on of a simulated board, as the boot scripts in
//! `bootloader-scripts/` do it: shared by the `simulated_uboot` example and
//! the integration tests (`#[path]`-included), so the library carries no
//! bootloader simulation.

use seesaw::slot::{BootChoice, BootState};
use seesaw::uboot_env::{BootEnv, EnvError};

/// Plays one power-on on a real environment: chooses the slot
/// ([`BootState::select_boot`]) and saves the contract variables in one
/// write. On a board U-Boot does this itself. Returns the choice; the
/// caller passes `seesaw.slot=<slot>` to its simulated kernel.
///
/// Errors: those of [`BootEnv::read_vars`] and [`BootEnv::write_vars`].
pub fn power_on(env: &mut dyn BootEnv) -> Result<BootChoice, EnvError> {
    let mut boot = BootState::from_pairs(&env.read_vars()?);
    let choice = boot.select_boot();
    let updates = boot.to_updates();
    let pairs: Vec<(&str, Option<&str>)> = updates
        .iter()
        .map(|(k, v)| (*k, Some(v.as_str())))
        .collect();
    env.write_vars(&pairs)?;
    Ok(choice)
}
