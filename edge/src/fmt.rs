//! Logging shim: the macros forward to defmt on the firmware target with the `defmt` feature,
//! and otherwise only borrow their arguments (so they stay type-checked and host builds link).

macro_rules! log_at {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(all(feature = "defmt", target_os = "none"))]
        ::defmt::$level!($fmt $(, $arg)*);
        #[cfg(not(all(feature = "defmt", target_os = "none")))]
        {
            let _ = ($(&$arg,)*);
        }
    }};
}

macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}

macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}
