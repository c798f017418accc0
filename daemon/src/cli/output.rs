//! The text `seesaw status` prints: one labelled line per fact (compatible,
//! operation, slots, pending commit, rollback floor, last result, failed
//! versions, the daemon's live state). `seesaw status --json` prints the
//! same [`crate::updater::Status`] as JSON instead.

use crate::slot::Slot;

/// Prints `s` on stdout as the text of `seesaw status`.
pub(super) fn print_status(s: &crate::updater::Status) {
    let opt = |o: Option<Slot>| o.map(|s| s.name()).unwrap_or("none");
    println!("compatible:     {}", s.compatible);
    println!("operation:      {}", s.operation);
    println!("booted slot:    {}", s.booted);
    println!("primary slot:   {}", opt(s.primary));
    println!("boot order:     {}", s.boot_order);
    for slot in &s.slots {
        let version = match (&slot.version, slot.intact) {
            (Some(v), Some(false)) => format!("{v} (recorded, but the slot no longer holds it)"),
            (Some(v), _) => v.clone(),
            (None, _) => "unknown (not written by seesaw)".into(),
        };
        println!(
            "slot {}:         {}tries left {}, version {}, {}",
            slot.slot,
            if slot.booted { "booted, " } else { "" },
            slot.tries_left,
            version,
            slot.device.display()
        );
    }
    match &s.pending {
        Some(p) if s.commit_pending => println!(
            "commit pending: yes, {} in slot {} (run mark-good)",
            p.version, p.slot
        ),
        Some(p) => println!(
            "commit pending: no; {} installed in slot {}, awaiting reboot",
            p.version, p.slot
        ),
        None => println!("commit pending: no"),
    }
    println!("rollback floor: {}", s.floor);
    if let Some(r) = &s.last_result {
        println!(
            "last result:    {} at {}: {}",
            r.kind.name(),
            r.at,
            r.message
        );
    }
    if !s.failed_versions.is_empty() {
        println!("failed versions: {}", s.failed_versions.join(", "));
    }
    match &s.daemon {
        Some(d) => {
            println!(
                "daemon:         {} {}% {}",
                d.operation, d.percent, d.message
            );
            if !d.last_error.is_empty() {
                println!("last error:     {}", d.last_error);
            }
        }
        None => println!("daemon:         not running (commands work standalone)"),
    }
}
