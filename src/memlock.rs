//! Memory locking for the daemons (pairbeatd's `realtime`, pairbeat-replicad's
//! supervisor): what they run is kept in RAM, so a loaded or swapping host cannot
//! make a keepalive or a watchdog wait on the disk, without making resident what
//! they never use.

/// Locks the running binary's own code and data in full, then every other page — the
/// libraries, the heap, the stacks, what is mapped later — as it is first touched.
///
/// Why not MCL_CURRENT | MCL_FUTURE alone, as Heartbeat does: that makes resident
/// every page of every mapping, used or not — all of libm and libc, and each new
/// thread's stack and malloc arena in full — most of the daemon's RSS for nothing.
/// With MCL_ONFAULT a page is locked the moment it is used and never paged out
/// after, which is what keeps a keepalive from waiting on the disk; our own code is
/// locked whole up front, so a failover path never run before is in memory too.
pub fn lock_memory() -> std::io::Result<()> {
    // SAFETY: mlockall takes flags only and touches no memory of ours.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        // A kernel older than 4.4 has no MCL_ONFAULT: everything in full, as Heartbeat.
        // SAFETY: as above.
        if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for (start, end) in own_mappings(&maps, &exe.to_string_lossy()) {
        // SAFETY: the range is one of our own mappings, as the kernel listed it;
        // mlock reads no memory, it faults the pages in and pins them.
        if unsafe { libc::mlock(start as *const libc::c_void, end - start) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The address ranges of /proc/self/maps lines that map the file `exe`.
fn own_mappings<'a>(maps: &'a str, exe: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    maps.lines().filter_map(move |line| {
        // "start-end perms offset dev inode   path"
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let path = fields.nth(4)?.trim_start();
        if path != exe {
            return None;
        }
        let (start, end) = range.split_once('-')?;
        Some((
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::own_mappings;

    #[test]
    fn own_mappings_are_the_lines_of_the_executable() {
        let maps = "\
5581d000-5581e000 r--p 00000000 fe:00 786 /usr/sbin/pairbeatd
5581e000-55a00000 r-xp 00001000 fe:00 786 /usr/sbin/pairbeatd
55a00000-55a01000 rw-p 00000000 00:00 0 
7f00000000-7f00001000 r-xp 00000000 fe:00 12 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd0000-7ffd1000 rw-p 00000000 00:00 0                          [stack]
";
        let got: Vec<_> = own_mappings(maps, "/usr/sbin/pairbeatd").collect();
        assert_eq!(got, vec![(0x5581d000, 0x5581e000), (0x5581e000, 0x55a00000)]);
        assert_eq!(own_mappings(maps, "/usr/sbin/other").count(), 0);
    }

    #[test]
    fn the_test_binary_finds_its_own_code_in_the_kernel_s_own_listing() {
        // The real format pads the path with spaces: parsed as the daemon will see it.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let ranges: Vec<_> = own_mappings(&maps, &exe.to_string_lossy()).collect();
        assert!(!ranges.is_empty(), "no mapping of {} in:\n{maps}", exe.display());
        let here = the_test_binary_finds_its_own_code_in_the_kernel_s_own_listing as *const () as usize;
        assert!(
            ranges.iter().any(|&(a, b)| a <= here && here < b),
            "this function's code is not in {ranges:x?}"
        );
    }
}
