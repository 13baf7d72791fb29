//! What a process used, from `/proc` (Linux): peak resident memory and CPU seconds.

use std::path::Path;

/// `USER_HZ`: the unit of utime/stime in `/proc/<pid>/stat`; 100 on every Linux ABI.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Usage {
    /// `VmHWM`: the peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// User + system CPU time.
    pub cpu_seconds: f64,
}

/// Usage of process `pid` (`"self"` for this one); `None` where `/proc` is unavailable.
pub(super) fn usage(pid: &str) -> Option<Usage> {
    let proc_dir = Path::new("/proc").join(pid);
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    Some(Usage {
        peak_rss_bytes: vm_hwm(&status)?,
        cpu_seconds: cpu_seconds(&stat)?,
    })
}

fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fields 14 and 15 (utime, stime), counted after the `(comm)` field, which may hold spaces.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime is field 14.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peak_memory_and_cpu_time() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmHWM:\t  1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm(status), Some(1234 * 1024));
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        let own = usage("self").expect("this test runs on Linux");
        assert!(own.peak_rss_bytes > 0);
    }
}
