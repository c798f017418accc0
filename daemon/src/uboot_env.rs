//! U-Boot environment (placeholder until implemented).
