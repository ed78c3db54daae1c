//! Whether standard error is systemd's journal. systemd sets `$JOURNAL_STREAM` to the
//! `DEVICE:INODE` of the stream it connected to stderr; the variable alone is not enough (a
//! shell started from a service inherits it with its stderr pointing elsewhere), so the
//! stream is compared with what stderr is now, as `sd_journal_stream_fd(3)` advises.

/// The device and inode numbers in `$JOURNAL_STREAM` (`"DEVICE:INODE"`, both decimal).
pub fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (device, inode) = value.trim().split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// True when `$JOURNAL_STREAM` names the stream that standard error is.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = value.to_str().and_then(parse_stream) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr()) {
        Ok(stat) => stat.st_dev == device && stat.st_ino == inode,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_stream("8:123456\n"), Some((8, 123456)));
        for bad in ["", "8", "8:", ":1", "a:b", "8:1:2", "-1:5"] {
            assert_eq!(parse_stream(bad), None, "{bad}");
        }
    }
}
